"""Math tasks: arithmetic word problems, bare expressions and linear equations.

Knobs (defaults = the easy setting): ``kinds`` (any of ``word``, ``expr``, ``linear``),
``ops`` (any of ``+ - *``), ``max_operand`` (largest number drawn), ``num_ops`` (operations per
word problem / expression). Reference: ``{"answer": "<integer>"}``; the teacher writes one
equation per line and ends with ``\\boxed{answer}``.
"""

from __future__ import annotations

import random
from typing import Any

DEFAULTS: dict[str, Any] = {
    "kinds": ("word",),
    "ops": ("+", "-"),
    "max_operand": 20,
    "num_ops": 1,
}
KINDS = ("word", "expr", "linear")
OPS = ("+", "-", "*")
SUFFIX = "Please reason step by step, and put your final answer within \\boxed{}."

_NAMES = (("Tom", "he"), ("Ann", "she"), ("Ben", "he"), ("Mia", "she"), ("Sam", "he"),
          ("Lily", "she"), ("Max", "he"), ("Zoe", "she"), ("Leo", "he"), ("Eva", "she"))
_ITEMS = ("apples", "marbles", "stickers", "books", "coins", "pencils", "cards", "stamps",
          "shells", "cookies")
_MORE = ("{P} buys {b} more.", "{P} finds {b} more.", "{P} gets {b} more.")
_LESS = ("{P} gives away {b}.", "{P} loses {b}.", "{P} sells {b}.")
_TIMES = ("Then the number of {items} is multiplied by {b}.",)


def check_knobs(k: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the knob if a value is out of range."""
    if not k["kinds"] or set(k["kinds"]) - set(KINDS):
        raise ValueError(f"math knob kinds={k['kinds']!r}: choose from {KINDS}")
    if not k["ops"] or set(k["ops"]) - set(OPS):
        raise ValueError(f"math knob ops={k['ops']!r}: choose from {OPS}")
    if int(k["max_operand"]) < 2:
        raise ValueError(f"math knob max_operand={k['max_operand']!r}: must be >= 2")
    if int(k["num_ops"]) < 1:
        raise ValueError(f"math knob num_ops={k['num_ops']!r}: must be >= 1")


def _word(rng: random.Random, k: dict[str, Any]) -> tuple[str, list[str], int]:
    name, pron = rng.choice(_NAMES)
    items = rng.choice(_ITEMS)
    cur = rng.randint(1, k["max_operand"])
    text, steps = [f"{name} has {cur} {items}."], []
    for _ in range(k["num_ops"]):
        op = rng.choice(k["ops"])
        if op == "-" and cur == 0:
            op = "+" if "+" in k["ops"] else "*"
        if op == "+":
            b = rng.randint(1, k["max_operand"])
            text.append(rng.choice(_MORE).format(P=pron.capitalize(), b=b))
            new = cur + b
        elif op == "-":
            b = rng.randint(1, min(cur, k["max_operand"]))
            text.append(rng.choice(_LESS).format(P=pron.capitalize(), b=b))
            new = cur - b
        else:
            b = rng.randint(2, max(2, min(5, k["max_operand"])))
            text.append(rng.choice(_TIMES).format(items=items, b=b))
            new = cur * b
        steps.append(f"{cur} {op} {b} = {new}")
        cur = new
    text.append(f"How many {items} does {name} have now?")
    return " ".join(text), steps, cur


def _expr(rng: random.Random, k: dict[str, Any]) -> tuple[str, list[str], int]:
    nums = [rng.randint(1, k["max_operand"]) for _ in range(k["num_ops"] + 1)]
    ops = [rng.choice(k["ops"]) for _ in range(k["num_ops"])]
    shown = " ".join(f"{x} {o}" for x, o in zip(nums, ops, strict=False)) + f" {nums[-1]}"
    steps: list[str] = []
    # Multiplications first (left to right), then + and - left to right.
    while "*" in ops:
        i = ops.index("*")
        val = nums[i] * nums[i + 1]
        steps.append(f"{nums[i]} * {nums[i + 1]} = {val}")
        nums[i : i + 2], ops[i : i + 1] = [val], []
    while ops:
        val = nums[0] + nums[1] if ops[0] == "+" else nums[0] - nums[1]
        steps.append(f"{nums[0]} {ops[0]} {nums[1]} = {val}")
        nums[0:2], ops[0:1] = [val], []
    return f"Compute {shown}.", steps, nums[0]


def _linear(rng: random.Random, k: dict[str, Any]) -> tuple[str, list[str], int]:
    m = k["max_operand"]
    a, x, b = rng.randint(2, max(2, min(m, 12))), rng.randint(0, m), rng.randint(1, m)
    if rng.random() < 0.5:
        c = a * x + b
        eq, mid = f"{a}x + {b} = {c}", f"{a}x = {c} - {b} = {c - b}"
    else:
        c = a * x - b
        eq, mid = f"{a}x - {b} = {c}", f"{a}x = {c} + {b} = {c + b}"
    steps = [eq, mid, f"x = {a * x} / {a} = {x}"]
    return f"Solve for x: {eq}.", steps, x


def make(rng: random.Random, k: dict[str, Any]) -> tuple[str, dict, dict]:
    kind = rng.choice(k["kinds"])
    text, steps, answer = {"word": _word, "expr": _expr, "linear": _linear}[kind](rng, k)
    return f"{text}\n{SUFFIX}", {"answer": str(answer)}, {"kind": kind, "steps": steps}


def teacher(reference: dict, meta: dict) -> str:
    """Equations one per line in the think block, then ``\\boxed{answer}``."""
    steps = meta.get("steps") or [f"The answer is {reference['answer']}."]
    return "<think>\n" + "\n".join(steps) + "\n</think>\n\\boxed{" + reference["answer"] + "}"
