"""Countdown: reach a target with given numbers, each used at most once, and + - * /.

Knobs: ``count`` (how many numbers, 2-6), ``max_number`` (numbers drawn from 1..max_number),
``ops`` (operators the generator's hidden expression may use). Every task is solvable: the
target is the value of a random expression over all the numbers. Reference:
``{"numbers": [...], "target": T}``. The teacher *solves* the task by depth-first search (so it
works for user-supplied tasks too) and writes one operation per line, then
``\\boxed{expression}``.
"""

from __future__ import annotations

import random
from typing import Any

DEFAULTS: dict[str, Any] = {"count": 3, "max_number": 10, "ops": ("+", "-", "*")}
OPS = ("+", "-", "*", "/")
MAX_COUNT = 6


def check_knobs(k: dict[str, Any]) -> None:
    if not 2 <= int(k["count"]) <= MAX_COUNT:
        raise ValueError(f"countdown knob count={k['count']!r}: must be in 2..{MAX_COUNT}")
    if int(k["max_number"]) < 2:
        raise ValueError(f"countdown knob max_number={k['max_number']!r}: must be >= 2")
    if not k["ops"] or set(k["ops"]) - set(OPS):
        raise ValueError(f"countdown knob ops={k['ops']!r}: choose from {OPS}")


def _combine(a: int, b: int, op: str) -> int | None:
    """Integer countdown arithmetic: no negatives, exact division only (None = not allowed)."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b if a >= b else None
    if op == "*":
        return a * b
    return a // b if b and a % b == 0 else None


def _random_target(rng: random.Random, nums: list[int], ops: tuple[str, ...]) -> int:
    vals = list(nums)
    while len(vals) > 1:
        a, b = (vals.pop(rng.randrange(len(vals))) for _ in range(2))
        a, b = max(a, b), min(a, b)
        res = _combine(a, b, rng.choice(ops))
        vals.append(a + b if res is None else res)
    return vals[0]


def make(rng: random.Random, k: dict[str, Any]) -> tuple[str, dict, dict]:
    while True:
        nums = [rng.randint(1, k["max_number"]) for _ in range(k["count"])]
        target = _random_target(rng, nums, tuple(k["ops"]))
        if target >= 1 and target not in nums:
            break
    shown = ", ".join(map(str, nums))
    prompt = (
        f"Use the numbers {shown} to make {target}. You may use + - * / and each number at "
        "most once. Put the expression in \\boxed{}."
    )
    return prompt, {"numbers": nums, "target": target}, {}


def _wrap(expr: str) -> str:
    return expr if expr.isdigit() else f"({expr})"


def solve(numbers: list[int], target: int) -> tuple[list[str], str] | None:
    """Depth-first search: (steps, expression) reaching ``target``, or None if unreachable."""
    seen: set[tuple[int, ...]] = set()

    def dfs(items: list[tuple[int, str]], steps: list[str]) -> tuple[list[str], str] | None:
        for val, expr in items:
            if val == target:
                return steps, expr
        key = tuple(sorted(v for v, _ in items))
        if len(items) < 2 or key in seen:
            return None
        seen.add(key)
        for i in range(len(items)):
            for j in range(len(items)):
                if i == j:
                    continue
                (a, ea), (b, eb) = items[i], items[j]
                rest = [it for t, it in enumerate(items) if t not in (i, j)]
                for op in OPS:
                    if (op in "+*" and i > j) or (op == "*" and 1 in (a, b)):
                        continue  # commutative duplicates; *1 never helps
                    res = _combine(a, b, op)
                    if res is None or (op == "/" and b == 1):
                        continue
                    found = dfs(rest + [(res, f"{_wrap(ea)} {op} {_wrap(eb)}")],
                                steps + [f"{a} {op} {b} = {res}"])
                    if found:
                        return found
        return None

    return dfs([(n, str(n)) for n in numbers], [])


def teacher(reference: dict, meta: dict) -> str:
    found = solve([int(x) for x in reference["numbers"]], int(reference["target"]))
    if found is None:
        raise ValueError(f"countdown task has no solution: {reference}")
    steps, expr = found
    return "<think>\n" + "\n".join(steps) + "\n</think>\n\\boxed{" + expr + "}"
