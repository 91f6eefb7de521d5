"""Row validation: every candidate task either passes or is rejected with (field, reason).

Reasons (the ``reason`` column of quarantine.parquet):

- ``invalid_json`` / ``invalid_utf8``: the line is not JSON / not UTF-8 (or holds U+FFFD or a
  lone surrogate);
- ``missing_field`` / ``wrong_type``: a mapped field is absent / has the wrong type;
- ``unknown_domain``: the domain is not one of the task domains;
- ``empty_prompt``, ``control_chars``, ``prompt_too_long`` (``max_prompt_chars``);
- ``no_reference``: no answer/tests/constraints to verify against (a required reference key
  absent, null or empty);
- ``multiple_choice``, ``true_false``, ``yes_no``: items the paper removes (guessable answers).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.schema import GENERAL_DOMAINS, REASONING_DOMAINS

DOMAINS = REASONING_DOMAINS + GENERAL_DOMAINS
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_OPTION_LINE = re.compile(r"(?im)^\s*\(?[a-e][).:]\s+\S")
_INLINE_OPTIONS = re.compile(r"\(A\)\s*\S.*\(B\)\s*\S", re.S)
_CHOICE_WORDS = re.compile(r"(?i)\bwhich of the following\b|\bchoose (?:one|the correct)\b")
_TRUE_FALSE = re.compile(r"(?i)^\s*true or false\b")

# Reference keys each domain's verifier needs, with the accepted Python types.
NUM = (int, float)
REFERENCE_KEYS: Mapping[str, Mapping[str, tuple[type, ...]]] = {
    "math": {"answer": (str, *NUM)},
    "countdown": {"numbers": (list,), "target": NUM},
    "sudoku": {"puzzle": (str,), "size": (int,)},
    "knights_knaves": {"statements": (list, dict, str), "names": (list,)},
    "code": {"entry_point": (str,), "tests": (list,)},
    "ifeval": {"constraints": (list,)},
    "open_qa": {"answer": (str,)},
}


@dataclass(frozen=True)
class Rejection:
    """Why a row was rejected: the offending field ("" for the whole row) and a reason code."""

    field: str
    reason: str
    detail: str = ""


def _empty(v: Any) -> bool:
    return v is None or (isinstance(v, str | list | dict) and len(v) == 0)


def bad_text(text: str, field: str) -> Rejection | None:
    """invalid_utf8 / control_chars checks of one string."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return Rejection(field, "invalid_utf8", "lone surrogate")
    if "\ufffd" in text:
        return Rejection(field, "invalid_utf8", "replacement character U+FFFD")
    if _CONTROL.search(text):
        return Rejection(field, "control_chars")
    return None


def check_reference(domain: str, reference: Any) -> Rejection | None:
    """The reference is a mapping holding every key the domain's verifier needs."""
    if _empty(reference):
        return Rejection("reference", "no_reference")
    if not isinstance(reference, Mapping):
        return Rejection(
            "reference", "wrong_type", f"expected an object, got {type(reference).__name__}"
        )
    for key, types in REFERENCE_KEYS.get(domain, {}).items():
        value = reference.get(key)
        if _empty(value):
            return Rejection(f"reference.{key}", "no_reference")
        if isinstance(value, bool) or not isinstance(value, types):
            want = "/".join(t.__name__ for t in types)
            return Rejection(
                f"reference.{key}", "wrong_type", f"expected {want}, got {type(value).__name__}"
            )
    return None


def choice_kind(prompt: str, reference: Mapping[str, Any]) -> str | None:
    """``multiple_choice`` / ``true_false`` / ``yes_no`` when the item is one, else None."""
    answer = reference.get("answer")
    ans = answer.strip().lower().rstrip(".") if isinstance(answer, str) else ""
    if ans in ("true", "false") or _TRUE_FALSE.search(prompt):
        return "true_false"
    if ans in ("yes", "no"):
        return "yes_no"
    if (
        len(_OPTION_LINE.findall(prompt)) >= 2
        or _INLINE_OPTIONS.search(prompt)
        or _CHOICE_WORDS.search(prompt)
    ):
        return "multiple_choice"
    return None


def check_task(
    domain: Any, prompt: Any, reference: Any, max_prompt_chars: int, drop_choice: bool = True
) -> Rejection | None:
    """All row rules for a mapped candidate; None when it passes."""
    if not isinstance(domain, str):
        return Rejection("domain", "wrong_type", f"expected str, got {type(domain).__name__}")
    if domain not in DOMAINS:
        return Rejection("domain", "unknown_domain", f"{domain!r}; known: {', '.join(DOMAINS)}")
    if not isinstance(prompt, str):
        return Rejection("prompt", "wrong_type", f"expected str, got {type(prompt).__name__}")
    if not prompt.strip():
        return Rejection("prompt", "empty_prompt")
    bad = bad_text(prompt, "prompt")
    if bad:
        return bad
    if len(prompt) > max_prompt_chars:
        return Rejection("prompt", "prompt_too_long", f"{len(prompt)} > {max_prompt_chars} chars")
    bad = check_reference(domain, reference)
    if bad:
        return bad
    answer = reference.get("answer")
    if isinstance(answer, str):
        bad = bad_text(answer, "reference.answer")
        if bad:
            return bad
    kind = choice_kind(prompt, reference) if drop_choice else None
    return Rejection("prompt", kind) if kind else None
