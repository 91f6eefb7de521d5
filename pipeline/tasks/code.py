"""Code: write a tiny Python function from a parametrised family; graded by unit tests.

Knobs: ``families`` (which function families to draw from, see ``FAMILIES``), ``num_tests``
(asserts per task), ``max_len`` (longest list/string input), ``max_value`` (largest integer in
inputs, and the largest threshold a family may name). Each task draws a family, an entry-point
name, an argument name and the family's parameters (thresholds, comparisons, constants,
characters), and the prompt text carries all of them, ending with the exact signature the
answer must define ("Write a Python function that returns how many numbers in nums are greater
than 7. Use the signature `def count_greater(nums):` and put the function in a ```python
block."), so the easy default setting has tens of thousands of distinct prompts. Reference:
``{"entry_point": name, "tests": ["assert name(...) == ...", ...]}``; expected values come
from a plain-Python reference callable (``Family.ref(input, params)``), independent of the
code text the teacher writes. The teacher copies the signature, writes a one-line plan, then the function with that
signature and one statement (a loop for ``factorial``) in a ```python block: 25-50 whitespace
words.

Why the signature is spelled out: a small model fails a code task most often by not defining
the function the tests call (``no_entry_point``); with ``def name(arg):`` written in the
prompt, the answer's ``def`` line is a verbatim copy of a line it has just read.
"""

from __future__ import annotations

import math
import operator
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# comparison name -> (operator symbol, words in the prompt, entry-point tag, reference callable)
CMPS: dict[str, tuple[str, str, str, Callable[[int, int], bool]]] = {
    "gt": (">", "greater than", "greater", operator.gt),
    "lt": ("<", "less than", "less", operator.lt),
    "ge": (">=", "at least", "at_least", operator.ge),
    "le": ("<=", "at most", "at_most", operator.le),
    "eq": ("==", "equal to", "equal", operator.eq),
}
ARG_NAMES = {"xs": ("xs", "nums", "values", "items", "data", "arr"),
             "s": ("s", "text", "word", "w", "line"),
             "n": ("n", "num", "x", "count")}
LETTERS = "abcdefghijklmnopqrstuvwxyz"
LEADS = ("Write a Python function", "Define a Python function", "Implement a Python function")


@dataclass(frozen=True)
class Family:
    """One function family. Texts are ``str.format`` templates over the task's fields: ``{a}``
    (argument name) and the drawn parameters (see ``_draw``); ``names`` are entry-point choices."""

    key: str  # the family's name in the ``families`` knob
    kind: str  # input kind: "xs" (list of ints), "s" (string) or "n" (int)
    names: tuple[str, ...]
    params: tuple[str, ...]  # parameter kinds drawn per task (see _draw)
    desc: str
    plan: str
    body: str  # the function body the teacher writes (4-space indented, after the def line)
    ref: Callable[[Any, dict[str, Any]], Any]  # expected value for (input, params)


def _cmp(p: dict[str, Any]) -> Callable[[int, int], bool]:
    return CMPS[p["cmp"]][3]


def _last(s: str, k: int) -> str:
    chars = list(s)
    return "".join(chars[max(0, len(chars) - k):])


_F = Family
FAMILIES: dict[str, Family] = {f.key: f for f in (
    _F("count_if", "xs", ("count_{tag}", "how_many_{tag}", "tally_{tag}"), ("cmp", "k"),
       "returns how many numbers in {a} are {words} {k}",
       "Count the x in {a} with x {op} {k}.",
       "return sum(1 for x in {a} if x {op} {k})",
       lambda xs, p: len([x for x in xs if _cmp(p)(x, p["k"])])),
    _F("sum_if", "xs", ("sum_{tag}", "total_{tag}", "add_{tag}"), ("cmp", "k"),
       "returns the sum of the numbers in {a} that are {words} {k}",
       "Add up the x in {a} with x {op} {k}.",
       "return sum(x for x in {a} if x {op} {k})",
       lambda xs, p: sum([x for x in xs if _cmp(p)(x, p["k"])], 0)),
    _F("keep_if", "xs", ("keep_{tag}", "filter_{tag}", "only_{tag}"), ("cmp", "k"),
       "returns the numbers in {a} that are {words} {k}, in order",
       "Keep the x in {a} with x {op} {k}.",
       "return [x for x in {a} if x {op} {k}]",
       lambda xs, p: list(filter(lambda x: _cmp(p)(x, p["k"]), xs))),
    _F("any_if", "xs", ("any_{tag}", "has_{tag}", "some_{tag}"), ("cmp", "k"),
       "returns True if at least one number in {a} is {words} {k}, else False",
       "Check any x in {a} with x {op} {k}.",
       "return any(x {op} {k} for x in {a})",
       lambda xs, p: len([x for x in xs if _cmp(p)(x, p["k"])]) > 0),
    _F("all_if", "xs", ("all_{tag}", "every_{tag}", "all_are_{tag}"), ("cmp", "k"),
       "returns True if every number in {a} is {words} {k} (True for an empty list), else False",
       "Check all x in {a} with x {op} {k}.",
       "return all(x {op} {k} for x in {a})",
       lambda xs, p: len([x for x in xs if not _cmp(p)(x, p["k"])]) == 0),
    _F("first_if", "xs", ("first_{tag}", "find_{tag}"), ("cmp", "k"),
       "returns the first number in {a} that is {words} {k}, or -1 if there is none",
       "Return the first x in {a} with x {op} {k}, else -1.",
       "return next((x for x in {a} if x {op} {k}), -1)",
       lambda xs, p: ([x for x in xs if _cmp(p)(x, p["k"])] + [-1])[0]),
    _F("count_div", "xs", ("count_div", "count_multiples", "how_many_div"), ("div",),
       "returns how many numbers in {a} are divisible by {d}",
       "Count the x in {a} with x % {d} == 0.",
       "return sum(1 for x in {a} if x % {d} == 0)",
       lambda xs, p: len([x for x in xs if x - (x // p["d"]) * p["d"] == 0])),
    _F("keep_div", "xs", ("keep_div", "multiples_of", "keep_multiples"), ("div",),
       "returns the numbers in {a} that are divisible by {d}, in order",
       "Keep the x in {a} with x % {d} == 0.",
       "return [x for x in {a} if x % {d} == 0]",
       lambda xs, p: [x for x in xs if math.gcd(x, p["d"]) == p["d"]]),
    _F("sum_parity", "xs", ("sum_{parity}", "{parity}_total", "add_{parity}"), ("parity",),
       "returns the sum of the {parity} numbers in {a}",
       "Add up the x in {a} with x % 2 == {r}.",
       "return sum(x for x in {a} if x % 2 == {r})",
       lambda xs, p: sum([x for x in xs if (x & 1) == p["r"]], 0)),
    _F("add_k", "xs", ("add_k", "shift", "add_all", "plus_k"), ("c",),
       "returns a new list with {c} added to every number in {a}",
       "Build a list of x + {c} for x in {a}.",
       "return [x + {c} for x in {a}]",
       lambda xs, p: list(map(lambda x: x + p["c"], xs))),
    _F("sub_k", "xs", ("sub_k", "minus_k", "lower_all"), ("c",),
       "returns a new list with {c} subtracted from every number in {a}",
       "Build a list of x - {c} for x in {a}.",
       "return [x - {c} for x in {a}]",
       lambda xs, p: list(map(lambda x: x - p["c"], xs))),
    _F("scale", "xs", ("scale", "times_k", "multiply_all"), ("m",),
       "returns a new list with every number in {a} multiplied by {m}",
       "Build a list of x * {m} for x in {a}.",
       "return [x * {m} for x in {a}]",
       lambda xs, p: list(map(lambda x: sum([x] * p["m"]), xs))),
    _F("affine", "xs", ("affine", "transform", "scale_shift"), ("m", "c"),
       "multiplies each number in {a} by {m} and adds {c}, returning the new list",
       "Build a list of x * {m} + {c} for x in {a}.",
       "return [x * {m} + {c} for x in {a}]",
       lambda xs, p: list(map(lambda x: sum([x] * p["m"]) + p["c"], xs))),
    _F("square_all", "xs", ("square_all", "squares", "square_each"), (),
       "returns a new list with the square of every number in {a}",
       "Build a list of x * x for x in {a}.",
       "return [x * x for x in {a}]",
       lambda xs, p: list(map(lambda x: x ** 2, xs))),
    _F("top_k", "xs", ("top_k", "largest_k", "biggest"), ("small",),
       "returns the {j} largest numbers in {a}, largest first (all of them if there are fewer)",
       "Sort {a} in reverse and take the first {j}.",
       "return sorted({a}, reverse=True)[:{j}]",
       lambda xs, p: list(reversed(sorted(xs)))[:p["j"]]),
    _F("bottom_k", "xs", ("bottom_k", "smallest_k", "lowest"), ("small",),
       "returns the {j} smallest numbers in {a}, smallest first (all of them if there are fewer)",
       "Sort {a} and take the first {j}.",
       "return sorted({a})[:{j}]",
       lambda xs, p: [v for i, v in enumerate(sorted(xs)) if i < p["j"]]),
    _F("max_or", "xs", ("max_or", "largest", "max_or_default"), ("dflt",),
       "returns the largest number in {a}, or {e} if {a} is empty",
       "Use max with a default of {e}.",
       "return max({a}, default={e})",
       lambda xs, p: sorted(xs)[-1] if xs else p["e"]),
    _F("min_or", "xs", ("min_or", "smallest", "min_or_default"), ("dflt",),
       "returns the smallest number in {a}, or {e} if {a} is empty",
       "Use min with a default of {e}.",
       "return min({a}, default={e})",
       lambda xs, p: sorted(xs)[0] if xs else p["e"]),
    _F("index_of", "xs", ("index_of", "find", "position"), ("k",),
       "returns the index of the first {k} in {a}, or -1 if {k} is not in {a}",
       "Use index if {k} is in {a}, else -1.",
       "return {a}.index({k}) if {k} in {a} else -1",
       lambda xs, p: ([i for i, x in enumerate(xs) if x == p["k"]] + [-1])[0]),
    _F("count_char", "s", ("count_{ch}", "count_char", "how_many_{ch}"), ("ch",),
       "returns how many times the letter '{ch}' appears in {a}",
       "Count '{ch}' in {a}.",
       "return {a}.count('{ch}')",
       lambda s, p: len([c for c in s if c == p["ch"]])),
    _F("replace_char", "s", ("replace_{ch}", "swap_letters", "replace_char"), ("ch", "ch2"),
       "returns {a} with every '{ch}' replaced by '{ch2}'",
       "Replace '{ch}' with '{ch2}' in {a}.",
       "return {a}.replace('{ch}', '{ch2}')",
       lambda s, p: "".join(p["ch2"] if c == p["ch"] else c for c in s)),
    _F("remove_char", "s", ("remove_{ch}", "drop_{ch}", "strip_letter"), ("ch",),
       "returns {a} with every '{ch}' removed",
       "Replace '{ch}' with nothing in {a}.",
       "return {a}.replace('{ch}', '')",
       lambda s, p: "".join(c for c in s if c != p["ch"])),
    _F("wrap_text", "s", ("wrap", "wrap_text", "surround"), ("ch", "ch2"),
       "returns {a} with '{ch}' added at the start and '{ch2}' added at the end",
       "Join '{ch}', {a} and '{ch2}'.",
       "return '{ch}' + {a} + '{ch2}'",
       lambda s, p: "".join([p["ch"], *s, p["ch2"]])),
    _F("starts_with", "s", ("starts_with_{ch}", "begins_with", "starts_with"), ("ch",),
       "returns True if {a} starts with the letter '{ch}', else False",
       "Use startswith('{ch}') on {a}.",
       "return {a}.startswith('{ch}')",
       lambda s, p: len(s) > 0 and s[0] == p["ch"]),
    _F("ends_with", "s", ("ends_with_{ch}", "finishes_with", "ends_with"), ("ch",),
       "returns True if {a} ends with the letter '{ch}', else False",
       "Use endswith('{ch}') on {a}.",
       "return {a}.endswith('{ch}')",
       lambda s, p: len(s) > 0 and s[len(s) - 1] == p["ch"]),
    _F("first_k", "s", ("first_k", "head", "prefix"), ("small",),
       "returns the first {j} characters of {a} (all of {a} if it is shorter)",
       "Slice {a} up to {j}.",
       "return {a}[:{j}]",
       lambda s, p: "".join(list(s)[:p["j"]])),
    _F("last_k", "s", ("last_k", "tail", "suffix"), ("small",),
       "returns the last {j} characters of {a} (all of {a} if it is shorter)",
       "Slice {a} from -{j}.",
       "return {a}[-{j}:]",
       lambda s, p: _last(s, p["j"])),
    _F("repeat_text", "s", ("repeat_text", "repeat", "copies"), ("m",),
       "returns the string {a} repeated {m} times",
       "Multiply {a} by {m}.",
       "return {a} * {m}",
       lambda s, p: "".join(s for _ in range(p["m"]))),
    _F("reverse_text", "s", ("reverse_text", "reverse", "backwards"), (),
       "returns the string {a} reversed",
       "Slice {a} with step -1.",
       "return {a}[::-1]",
       lambda s, p: "".join(reversed(s))),
    _F("count_vowels", "s", ("count_vowels", "vowels", "num_vowels"), (),
       "returns how many characters of {a} are vowels (a, e, i, o, u)",
       "Count the characters of {a} that are in 'aeiou'.",
       "return sum(1 for ch in {a} if ch in 'aeiou')",
       lambda s, p: len([c for c in s if c in "aeiou"])),
    _F("is_palindrome", "s", ("is_palindrome", "palindrome", "reads_same"), (),
       "returns True if {a} reads the same backwards, else False",
       "Compare {a} with {a} reversed.",
       "return {a} == {a}[::-1]",
       lambda s, p: list(s) == list(reversed(s))),
    _F("factorial", "n", ("factorial", "fact"), (),
       "returns {a} factorial (the product 1 * 2 * ... * {a}; 1 for {a} = 0)",
       "Multiply the numbers 1 to {a}.",
       "out = 1\n    for i in range(2, {a} + 1):\n        out *= i\n    return out",
       lambda n, p: math.factorial(n)),
    _F("sum_to", "n", ("sum_to", "triangle", "sum_up_to"), (),
       "returns the sum 1 + 2 + ... + {a} (0 for {a} = 0)",
       "Add the numbers 1 to {a}.",
       "return sum(range({a} + 1))",
       lambda n, p: n * (n + 1) // 2),
    _F("sum_multiples", "n", ("sum_multiples", "sum_div", "multiples_total"), ("div",),
       "returns the sum of the multiples of {d} from 1 to {a}",
       "Add the i in 1 to {a} with i % {d} == 0.",
       "return sum(i for i in range(1, {a} + 1) if i % {d} == 0)",
       lambda n, p: p["d"] * (n // p["d"]) * (n // p["d"] + 1) // 2),
    _F("linear", "n", ("linear", "line", "apply"), ("m", "c"),
       "returns {a} multiplied by {m}, plus {c}",
       "Compute {a} * {m} + {c}.",
       "return {a} * {m} + {c}",
       lambda n, p: sum([n] * p["m"]) + p["c"]),
)}

DEFAULTS: dict[str, Any] = {
    "families": tuple(FAMILIES),
    "num_tests": 3,
    "max_len": 5,
    "max_value": 9,
}


def check_knobs(k: dict[str, Any]) -> None:
    if not k["families"] or set(k["families"]) - set(FAMILIES):
        raise ValueError(f"code knob families={k['families']!r}: choose from {tuple(FAMILIES)}")
    for key in ("num_tests", "max_len", "max_value"):
        if int(k[key]) < 1:
            raise ValueError(f"code knob {key}={k[key]!r}: must be >= 1")


def _draw(rng: random.Random, kind: str, k: dict[str, Any], p: dict[str, Any]) -> None:
    """Draw one parameter kind into ``p`` (the fields the family's texts use)."""
    if kind == "cmp":
        p["cmp"] = rng.choice(tuple(CMPS))
    elif kind == "k":
        p["k"] = rng.randint(0, k["max_value"])
    elif kind == "div":
        p["d"] = rng.randint(2, 5)
    elif kind == "parity":
        p["r"] = rng.randint(0, 1)
    elif kind == "c":
        p["c"] = rng.randint(1, 9)
    elif kind == "m":
        p["m"] = rng.randint(2, 5)
    elif kind == "small":
        p["j"] = rng.randint(1, 4)
    elif kind == "dflt":
        p["e"] = rng.randint(-1, 9)
    elif kind == "ch":
        p["ch"] = rng.choice(LETTERS)
    elif kind == "ch2":
        p["ch2"] = rng.choice(LETTERS.replace(p["ch"], ""))
    else:  # pragma: no cover - a typo in FAMILIES
        raise KeyError(kind)


def _fields(fam: Family, name: str, arg: str, p: dict[str, Any]) -> dict[str, Any]:
    """Template fields for a family's texts."""
    f: dict[str, Any] = {"a": arg, **p}
    if "cmp" in p:
        f["op"], f["words"], f["tag"], _ = CMPS[p["cmp"]]
    if "r" in p:
        f["parity"] = ("even", "odd")[p["r"]]
    f["name"] = name.format(**f)
    return f


def _input(rng: random.Random, fam: Family, k: dict[str, Any], p: dict[str, Any]) -> Any:
    if fam.kind == "xs":
        return [rng.randint(0, k["max_value"]) for _ in range(rng.randint(0, k["max_len"]))]
    if fam.kind == "s":
        alphabet = "abcde" + p.get("ch", "") + p.get("ch2", "")
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, k["max_len"])))
        if fam.key == "is_palindrome" and rng.random() < 0.5:
            s = s[: (len(s) + 1) // 2] + s[: len(s) // 2][::-1]
        return s
    return rng.randint(0, min(k["max_value"], 10))


def make(rng: random.Random, k: dict[str, Any]) -> tuple[str, dict, dict]:
    fam = FAMILIES[rng.choice(k["families"])]
    p: dict[str, Any] = {}
    for kind in fam.params:
        _draw(rng, kind, k, p)
    name, arg, lead = rng.choice(fam.names), rng.choice(ARG_NAMES[fam.kind]), rng.choice(LEADS)
    f = _fields(fam, name, arg, p)
    tests = []
    for _ in range(k["num_tests"]):
        x = _input(rng, fam, k, p)
        tests.append(f"assert {f['name']}({x!r}) == {fam.ref(x, p)!r}")
    prompt = (f"{lead} that {fam.desc.format(**f)}. "
              f"Use the signature `{signature(f['name'], arg)}` and put the function in a "
              "```python block.")
    meta = {"family": fam.key, "name": f["name"], "arg": arg, "params": p}
    return prompt, {"entry_point": f["name"], "tests": tests}, meta


def signature(name: str, arg: str) -> str:
    """The ``def`` line the prompt asks for and the answer must start its function with."""
    return f"def {name}({arg}):"


def teacher(reference: dict, meta: dict) -> str:
    fam = FAMILIES[meta["family"]]
    name = meta.get("name", fam.names[0])
    f = _fields(fam, name, meta.get("arg", ARG_NAMES[fam.kind][0]), dict(meta.get("params", {})))
    plan, body = fam.plan.format(**f), fam.body.format(**f)
    sig = signature(f["name"], f["a"])
    program = f"{sig}\n    {body}\n"
    return f"<think>\n{sig}\n{plan}\n</think>\n```python\n{program}```"
