"""Knights and knaves: knights always tell the truth, knaves always lie; who is which?

Knobs: ``people`` (2-4), ``claims`` (claim kinds used: ``is``, ``and``, ``or``, ``same``,
``diff``, ``count``). Every puzzle has exactly one consistent assignment (checked by brute force
over all 2^people assignments). Reference: ``{"names": [...], "statements": [{"speaker": i,
"claim": {...}}, ...]}`` where a claim is ``{"t": "is", "p": j, "knight": bool}``,
``{"t": "and"|"or", "a": claim, "b": claim}``, ``{"t": "same"|"diff", "p": j}`` (j and the
speaker are of the same / different kinds) or ``{"t": "count", "k": m}`` (exactly m knights).
The teacher checks every assignment in order, one line each, then answers ``Name: knight``.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

DEFAULTS: dict[str, Any] = {"people": 2, "claims": ("is", "and", "or", "same", "diff", "count")}
CLAIMS = ("is", "and", "or", "same", "diff", "count")
NAMES = ("Alice", "Bob", "Cara", "Dan", "Eve", "Finn", "Gina", "Hugo", "Iris", "Jack", "Kate",
         "Liam")


def check_knobs(k: dict[str, Any]) -> None:
    if not 2 <= int(k["people"]) <= 4:
        raise ValueError(f"knights_knaves knob people={k['people']!r}: must be in 2..4")
    if not k["claims"] or set(k["claims"]) - set(CLAIMS):
        raise ValueError(f"knights_knaves knob claims={k['claims']!r}: choose from {CLAIMS}")


def holds(claim: dict, speaker: int, knights: tuple[bool, ...]) -> bool:
    """Truth of ``claim`` (said by ``speaker``) when ``knights[i]`` tells who is a knight."""
    t = claim["t"]
    if t == "is":
        return knights[claim["p"]] == claim["knight"]
    if t == "and":
        return holds(claim["a"], speaker, knights) and holds(claim["b"], speaker, knights)
    if t == "or":
        return holds(claim["a"], speaker, knights) or holds(claim["b"], speaker, knights)
    if t in ("same", "diff"):
        return (knights[claim["p"]] == knights[speaker]) == (t == "same")
    if t == "count":
        return sum(knights) == claim["k"]
    raise ValueError(f"unknown claim kind {t!r}")


def consistent(statements: list[dict], knights: tuple[bool, ...]) -> int | None:
    """None if every speaker's claim is true exactly when they are a knight, else the first liar
    of the rules (index into ``statements``)."""
    for i, s in enumerate(statements):
        if holds(s["claim"], s["speaker"], knights) != knights[s["speaker"]]:
            return i
    return None


def solutions(statements: list[dict], people: int) -> list[tuple[bool, ...]]:
    return [a for a in itertools.product((True, False), repeat=people)
            if consistent(statements, a) is None]


def _role(knight: bool) -> str:
    return "knight" if knight else "knave"


def render(claim: dict, speaker: int, names: list[str]) -> str:
    t = claim["t"]
    if t == "is":
        p = claim["p"]
        return f"I am a {_role(claim['knight'])}" if p == speaker else \
            f"{names[p]} is a {_role(claim['knight'])}"
    if t in ("and", "or"):
        return f"{render(claim['a'], speaker, names)} {t} {render(claim['b'], speaker, names)}"
    if t == "same":
        return f"{names[claim['p']]} and I are the same kind"
    if t == "diff":
        return f"{names[claim['p']]} and I are different kinds"
    if claim["k"] == 0:
        return "none of us are knights"
    return f"exactly {claim['k']} of us {'is a knight' if claim['k'] == 1 else 'are knights'}"


def _claim(rng: random.Random, kinds: tuple[str, ...], speaker: int, people: int) -> dict:
    t = rng.choice(kinds)
    others = [p for p in range(people) if p != speaker]
    if t == "is":
        return {"t": "is", "p": rng.randrange(people), "knight": rng.random() < 0.5}
    if t in ("and", "or"):
        a, b = rng.sample(range(people), 2)
        return {"t": t, "a": {"t": "is", "p": a, "knight": rng.random() < 0.5},
                "b": {"t": "is", "p": b, "knight": rng.random() < 0.5}}
    if t in ("same", "diff"):
        return {"t": t, "p": rng.choice(others)}
    return {"t": "count", "k": rng.randint(0, people)}


def make(rng: random.Random, k: dict[str, Any]) -> tuple[str, dict, dict]:
    people = k["people"]
    while True:
        names = rng.sample(NAMES, people)
        statements = [{"speaker": i, "claim": _claim(rng, tuple(k["claims"]), i, people)}
                      for i in range(people)]
        if len(solutions(statements, people)) == 1:
            break
    said = " ".join(f'{names[s["speaker"]]} says: "{render(s["claim"], s["speaker"], names)}."'
                    for s in statements)
    prompt = (
        "Knights always tell the truth and knaves always lie. "
        f"{said} Who is a knight and who is a knave? Answer with one line per person: "
        "Name: knight or Name: knave."
    )
    return prompt, {"names": names, "statements": statements}, {}


def teacher(reference: dict, meta: dict) -> str:
    names, statements = reference["names"], reference["statements"]
    lines, answer = [], None
    for a in itertools.product((True, False), repeat=len(names)):
        label = ", ".join(f"{n} {_role(x)}" for n, x in zip(names, a, strict=True))
        bad = consistent(statements, a)
        if bad is None:
            lines.append(f"{label}: ok")
            answer = answer or a
            continue
        s = statements[bad]
        truth = "true" if holds(s["claim"], s["speaker"], a) else "false"
        lines.append(f"{label}: {names[s['speaker']]}'s claim is {truth} -> no")
    if answer is None:
        raise ValueError(f"knights_knaves puzzle has no consistent assignment: {reference}")
    final = "\n".join(f"{n}: {_role(x)}" for n, x in zip(names, answer, strict=True))
    return "<think>\n" + "\n".join(lines) + "\n</think>\n" + final
