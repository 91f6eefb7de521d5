"""Instruction-following checks (IFEval style): one rule per constraint kind.

``check(reference, answer)``: ``reference = {"constraints": [{"kind": ..., **args}, ...]}``;
reward = fraction of constraints satisfied, correct = all satisfied, reason ``ok`` or
``unmet:<kind>,<kind>``; an answer without a single word scores 0 (``empty_answer``), since
rules like "no commas" would otherwise reward saying nothing. A malformed reference (unknown kind, missing argument) raises
``ValueError`` naming the constraint index and field: that is a data bug, not a bad response.

Kinds (``KINDS``) and their rules, all applied to the final answer text:

- ``word_count`` {min?, max?}: words = runs of letters/digits (``don't``, ``well-known`` = 1).
- ``sentence_count`` {min?, max?}: pieces split after ``.``, ``!`` or ``?`` + whitespace that
  contain a letter or digit.
- ``keywords`` {words}: every word present (case-insensitive, whole word).
- ``forbidden_words`` {words}: none present (case-insensitive, whole word).
- ``forbidden_chars`` {chars}: none of the characters appears.
- ``paragraphs`` {count}: exactly ``count`` non-empty blocks separated by blank lines.
- ``bullets`` {count}: exactly ``count`` lines starting with ``-``, ``*`` or ``•`` + space.
- ``lowercase`` / ``uppercase``: has a letter and no upper- / lower-case letter.
- ``json``: the whole answer (optionally in one ```json fence) parses as a JSON object/array.
- ``starts_with`` / ``ends_with`` {phrase}: the stripped answer starts / ends with the phrase
  (case-insensitive).
- ``title``: contains a title in double angle brackets, ``<<like this>>``.
- ``placeholders`` {count}: at least ``count`` ``[square bracket]`` placeholders.
- ``quotation``: the stripped answer is wrapped in double quotes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from pipeline.verify.result import Score

_WORD = re.compile(r"\w+(?:['-]\w+)*")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.S)


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


def count_sentences(text: str) -> int:
    return sum(1 for p in re.split(r"(?<=[.!?])\s+", text.strip()) if re.search(r"\w", p))


def _in_range(n: int, c: dict) -> bool:
    return (c.get("min") is None or n >= c["min"]) and (c.get("max") is None or n <= c["max"])


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.I) is not None


def _json(text: str, c: dict) -> bool:
    s = text.strip()
    m = _FENCE.fullmatch(s)
    try:
        value = json.loads(m.group(1) if m else s)
    except ValueError:
        return False
    return isinstance(value, dict | list)


def _quoted(text: str, c: dict) -> bool:
    s = text.strip()
    return len(s) >= 2 and s[0] == '"' and s[-1] == '"'


RULES: dict[str, tuple[tuple[str, ...], Callable[[str, dict], bool]]] = {
    # kind: (required argument names, rule)
    "word_count": ((), lambda t, c: _in_range(count_words(t), c)),
    "sentence_count": ((), lambda t, c: _in_range(count_sentences(t), c)),
    "keywords": (("words",), lambda t, c: all(_has_word(t, w) for w in c["words"])),
    "forbidden_words": (("words",), lambda t, c: not any(_has_word(t, w) for w in c["words"])),
    "forbidden_chars": (("chars",), lambda t, c: not any(ch in t for ch in c["chars"])),
    "paragraphs": (("count",), lambda t, c: len(
        [p for p in re.split(r"\n\s*\n", t.strip()) if p.strip()]) == c["count"]),
    "bullets": (("count",), lambda t, c: len(
        re.findall(r"^[ \t]*[-*•][ \t]+\S", t, re.M)) == c["count"]),
    "lowercase": ((), lambda t, c: bool(re.search(r"[^\W\d_]", t)) and t == t.lower()),
    "uppercase": ((), lambda t, c: bool(re.search(r"[^\W\d_]", t)) and t == t.upper()),
    "json": ((), _json),
    "starts_with": (("phrase",), lambda t, c: t.strip().lower().startswith(c["phrase"].lower())),
    "ends_with": (("phrase",), lambda t, c: t.strip().lower().endswith(c["phrase"].lower())),
    "title": ((), lambda t, c: re.search(r"<<[^<>\n]*\w[^<>\n]*>>", t) is not None),
    "placeholders": (("count",), lambda t, c: len(
        re.findall(r"\[[^\[\]\n]*\w[^\[\]\n]*\]", t)) >= c["count"]),
    "quotation": ((), _quoted),
}
KINDS: tuple[str, ...] = tuple(RULES)


def _validate(constraints: Any) -> list[dict]:
    if not isinstance(constraints, list) or not constraints:
        raise ValueError("ifeval reference: field 'constraints' must be a non-empty list")
    for i, c in enumerate(constraints):
        kind = c.get("kind") if isinstance(c, dict) else None
        if kind not in RULES:
            raise ValueError(f"ifeval reference: constraints[{i}].kind={kind!r} is unknown; "
                             f"known: {', '.join(KINDS)}")
        missing = [a for a in RULES[kind][0] if a not in c]
        if kind in ("word_count", "sentence_count") and c.get("min") is None \
                and c.get("max") is None:
            missing.append("min/max")
        if missing:
            raise ValueError(f"ifeval reference: constraints[{i}] ({kind}) lacks field(s) "
                             f"{', '.join(missing)}")
    return constraints


def satisfied(constraint: dict, answer: str) -> bool:
    """Whether one (validated) constraint holds for ``answer``."""
    return bool(RULES[constraint["kind"]][1](answer, constraint))


def check(reference: dict, answer: str) -> Score:
    """Fraction of the reference's constraints that ``answer`` satisfies."""
    constraints = _validate(reference.get("constraints"))
    if count_words(answer) == 0:  # "do not use commas" is not met by saying nothing
        return Score(0.0, False, "empty_answer")
    unmet = [c["kind"] for c in constraints if not satisfied(c, answer)]
    reward = 1.0 - len(unmet) / len(constraints)
    return Score(reward, not unmet, "ok" if not unmet else "unmet:" + ",".join(unmet))
