"""Sudoku: fill an n x n grid (n = 4, 6 or 9) so every row, column and box holds 1..n.

Knobs: ``size`` (4, 6 or 9; boxes 2x2, 2x3, 3x3), ``blanks`` (cells to erase). A unique
solution is not required: the verifier accepts any valid completion. Reference:
``{"puzzle": "<n*n digits, 0 = blank>", "size": n}``. The teacher fills the blank with the
fewest candidates first, one line per cell (``r1c3: not 1 2 4 -> 3``, or ``r2c1: 3 or 4,
take 3`` when it must choose), then writes the grid as n lines of n digits.
"""

from __future__ import annotations

import random
from typing import Any

DEFAULTS: dict[str, Any] = {"size": 4, "blanks": 3}
BOXES = {4: (2, 2), 6: (2, 3), 9: (3, 3)}


def check_knobs(k: dict[str, Any]) -> None:
    if k["size"] not in BOXES:
        raise ValueError(f"sudoku knob size={k['size']!r}: choose from {tuple(BOXES)}")
    if not 1 <= int(k["blanks"]) <= k["size"] ** 2:
        raise ValueError(f"sudoku knob blanks={k['blanks']!r}: must be in 1..size*size")


def box_of(n: int, r: int, c: int) -> int:
    br, bc = BOXES[n]
    return (r // br) * (n // bc) + c // bc


def random_solution(rng: random.Random, n: int) -> list[list[int]]:
    """A random valid grid: the standard pattern, shuffled by validity-preserving moves."""
    br, bc = BOXES[n]
    base = [[(bc * (r % br) + r // br + c) % n + 1 for c in range(n)] for r in range(n)]
    digits = list(range(1, n + 1))
    rng.shuffle(digits)
    bands = rng.sample(range(n // br), n // br)
    rows = [b * br + r for b in bands for r in rng.sample(range(br), br)]
    stacks = rng.sample(range(n // bc), n // bc)
    cols = [s * bc + c for s in stacks for c in rng.sample(range(bc), bc)]
    return [[digits[base[r][c] - 1] for c in cols] for r in rows]


def make(rng: random.Random, k: dict[str, Any]) -> tuple[str, dict, dict]:
    n = k["size"]
    grid = random_solution(rng, n)
    for cell in rng.sample(range(n * n), k["blanks"]):
        grid[cell // n][cell % n] = 0
    lines = "\n".join("".join(map(str, row)) for row in grid)
    prompt = (
        f"Solve this {n}x{n} sudoku (0 = blank). Every row, column and box must contain "
        f"1 to {n} once. Answer with {n} lines of {n} digits.\n{lines}"
    )
    return prompt, {"puzzle": "".join(map(str, sum(grid, []))), "size": n}, {}


def candidates(grid: list[list[int]], n: int, r: int, c: int) -> tuple[list[int], list[int]]:
    """(digits seen in the cell's row, column and box, the remaining candidates)."""
    br, bc = BOXES[n]
    r0, c0 = r - r % br, c - c % bc
    seen = {grid[r][j] for j in range(n)} | {grid[i][c] for i in range(n)}
    seen |= {grid[i][j] for i in range(r0, r0 + br) for j in range(c0, c0 + bc)}
    seen.discard(0)
    return sorted(seen), [d for d in range(1, n + 1) if d not in seen]


def solve(grid: list[list[int]], n: int) -> list[list[int]] | None:
    """Backtracking (fewest candidates first); a solved copy, or None if none exists."""
    g = [row[:] for row in grid]
    blanks = [(r, c) for r in range(n) for c in range(n) if g[r][c] == 0]
    if not blanks:
        return g
    r, c = min(blanks, key=lambda rc: len(candidates(g, n, *rc)[1]))
    for d in candidates(g, n, r, c)[1]:
        g[r][c] = d
        done = solve(g, n)
        if done:
            return done
    return None


def teacher(reference: dict, meta: dict) -> str:
    n = int(reference["size"])
    p = reference["puzzle"]
    grid = [[int(p[r * n + c]) for c in range(n)] for r in range(n)]
    target = solve(grid, n)
    if target is None:
        raise ValueError(f"sudoku puzzle has no solution: {p}")
    steps = []
    while blanks := [(r, c) for r in range(n) for c in range(n) if grid[r][c] == 0]:
        r, c = min(blanks, key=lambda rc: len(candidates(grid, n, *rc)[1]))
        seen, cands = candidates(grid, n, r, c)
        d = target[r][c]
        if len(cands) == 1:
            steps.append(f"r{r + 1}c{c + 1}: not {' '.join(map(str, seen))} -> {d}")
        else:
            steps.append(f"r{r + 1}c{c + 1}: {' or '.join(map(str, cands))}, take {d}")
        grid[r][c] = d
    answer = "\n".join("".join(map(str, row)) for row in target)
    return "<think>\n" + "\n".join(steps) + "\n</think>\n" + answer
