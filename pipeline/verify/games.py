"""Logic-game verifiers: any valid solution is accepted, not only the teacher's.

Each ``check_<game>(reference, answer) -> Score`` takes the final-answer text (after the think
block); ``CHECKERS`` maps domain -> checker. A malformed reference raises ``ValueError`` naming
the field.

- countdown: ``{"numbers": [...], "target": T}``; the last ``\\boxed{...}`` holds one
  arithmetic expression (integers, ``+ - * /``, ``×``/``÷`` and parentheses; an optional
  trailing ``= T`` is allowed; ``= <other>`` is ``wrong_value``) that uses each given number at most once (as a multiset) and
  equals T in exact rational arithmetic. Reasons: ``no_boxed``, ``bad_expression``,
  ``number_not_allowed``, ``division_by_zero``, ``wrong_value``, ``ok``.
- sudoku: ``{"puzzle": "<n*n digits, 0 = blank>", "size": n}``; the last n lines of the answer
  made only of n digits (spaces and ``|`` between digits ignored) form the grid; it must keep
  every given and hold 1..n once in every row, column and box. Reasons: ``no_grid``,
  ``givens_changed``, ``bad_row``/``bad_column``/``bad_box``, ``ok``.
- knights_knaves: ``{"names": [...], "statements": [...]}`` (claims as in
  :mod:`pipeline.tasks.knights`); the answer has a ``Name: knight|knave`` line per person (the
  last line per name counts; ``is a`` also accepted); the assignment must make every knight's
  claim true and every knave's claim false. Reasons: ``missing_people``, ``inconsistent``,
  ``ok``.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Callable
from fractions import Fraction

from pipeline.tasks.knights import consistent
from pipeline.tasks.sudoku import BOXES, box_of
from pipeline.verify.math import boxed_contents
from pipeline.verify.result import Score

MAX_EXPR_CHARS = 200
_OK = Score(1.0, True, "ok")


def _fail(reason: str) -> Score:
    return Score(0.0, False, reason)


def _field(reference: dict, name: str, domain: str) -> object:
    if name not in reference:
        raise ValueError(f"{domain} reference: missing field {name!r}")
    return reference[name]


class _BadExpr(ValueError):
    pass


def _evaluate(node: ast.AST, used: list[int]) -> Fraction:
    """Exact value of an expression tree of integer literals and + - * /; collects literals."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        used.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
        a, b = _evaluate(node.left, used), _evaluate(node.right, used)
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        if isinstance(node.op, ast.Mult):
            return a * b
        if b == 0:
            raise ZeroDivisionError
        return a / b
    raise _BadExpr(type(node).__name__)


def check_countdown(reference: dict, answer: str) -> Score:
    numbers = [int(x) for x in _field(reference, "numbers", "countdown")]
    target = Fraction(int(_field(reference, "target", "countdown")))
    boxes = boxed_contents(answer)
    if not boxes:
        return _fail("no_boxed")
    expr = boxes[-1].replace("\\times", "*").replace("\\div", "/").replace("×", "*")
    expr = expr.replace("÷", "/").replace("\\cdot", "*").replace("\\left", "")
    expr = expr.replace("\\right", "").strip()
    claimed = re.search(r"=\s*(-?\d+)\s*$", expr)
    if claimed:  # "expr = T" is fine; a false claimed result is wrong whatever expr is
        if int(claimed.group(1)) != target:
            return _fail("wrong_value")
        expr = expr[: claimed.start()].strip()
    if not expr or len(expr) > MAX_EXPR_CHARS or not re.fullmatch(r"[\d\s+\-*/()]+", expr):
        return _fail("bad_expression")
    used: list[int] = []
    try:
        value = _evaluate(ast.parse(expr, mode="eval").body, used)
    except ZeroDivisionError:
        return _fail("division_by_zero")
    except (SyntaxError, _BadExpr, RecursionError):
        return _fail("bad_expression")
    if Counter(used) - Counter(numbers):
        return _fail("number_not_allowed")
    return _OK if value == target else _fail("wrong_value")


def _grid_lines(answer: str, n: int) -> list[list[int]] | None:
    rows = []
    for line in answer.splitlines():
        digits = re.sub(r"[\s|,]", "", line)
        if len(digits) == n and digits.isdigit():
            rows.append([int(ch) for ch in digits])
    return rows[-n:] if len(rows) >= n else None


def check_sudoku(reference: dict, answer: str) -> Score:
    n = int(_field(reference, "size", "sudoku"))
    puzzle = str(_field(reference, "puzzle", "sudoku"))
    if n not in BOXES or len(puzzle) != n * n or not puzzle.isdigit():
        raise ValueError(f"sudoku reference: size={n} / puzzle of {len(puzzle)} chars invalid")
    grid = _grid_lines(answer, n)
    if grid is None:
        return _fail("no_grid")
    if any(p != "0" and int(p) != grid[i // n][i % n] for i, p in enumerate(puzzle)):
        return _fail("givens_changed")
    full = set(range(1, n + 1))
    if any(set(row) != full for row in grid):
        return _fail("bad_row")
    if any({grid[r][c] for r in range(n)} != full for c in range(n)):
        return _fail("bad_column")
    boxes: dict[int, set[int]] = {}
    for r in range(n):
        for c in range(n):
            boxes.setdefault(box_of(n, r, c), set()).add(grid[r][c])
    return _OK if all(b == full for b in boxes.values()) else _fail("bad_box")


def check_knights_knaves(reference: dict, answer: str) -> Score:
    names = list(_field(reference, "names", "knights_knaves"))
    statements = list(_field(reference, "statements", "knights_knaves"))
    roles: dict[str, bool] = {}
    pattern = re.compile(r"^\W*(\w+)\W*\s*(?::|-|is an?|is)\s*(?:an?\s+)?(knight|knave)s?\b", re.I)
    lower = {n.lower(): n for n in names}
    for line in answer.splitlines():
        m = pattern.match(line.strip())
        if m and m.group(1).lower() in lower:
            roles[lower[m.group(1).lower()]] = m.group(2).lower() == "knight"
    if set(roles) != set(names):
        return _fail("missing_people")
    assignment = tuple(roles[n] for n in names)
    return _OK if consistent(statements, assignment) is None else _fail("inconsistent")


CHECKERS: dict[str, Callable[[dict, str], Score]] = {
    "countdown": check_countdown,
    "sudoku": check_sudoku,
    "knights_knaves": check_knights_knaves,
}
