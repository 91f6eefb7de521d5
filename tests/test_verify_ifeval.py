"""Instruction-following rules: one accept and one reject per kind, rewards, bad references."""

from __future__ import annotations

import json
import re

import pytest

from pipeline.tasks import generate, teacher_trace
from pipeline.verify.answer import final_answer
from pipeline.verify.ifeval import KINDS, check, count_sentences, count_words, satisfied
from pipeline.verify.result import Score

# (constraint, a text that satisfies it, a text that violates it) -- all by hand.
CASES = [
    ({"kind": "word_count", "min": 3}, "one two three", "one two"),
    ({"kind": "word_count", "max": 3}, "one, two; three!", "one two three four"),
    ({"kind": "word_count", "min": 2, "max": 2}, "don't stop", "do not stop"),
    ({"kind": "sentence_count", "min": 2}, "Hi there. Bye!", "Just one sentence here."),
    ({"kind": "sentence_count", "max": 1}, "Only one. ", "One. Two? Three!"),
    ({"kind": "keywords", "words": ["sun", "River"]}, "The SUN over the river.",
     "Sunny days by the riverside."),  # whole words only
    ({"kind": "forbidden_words", "words": ["very"]}, "Every day is fine.", "It is Very fine."),
    ({"kind": "forbidden_chars", "chars": ",!"}, "No commas here.", "Hello, world."),
    ({"kind": "paragraphs", "count": 2}, "First part.\n\nSecond part.",
     "First part.\nStill first.\n\nSecond.\n\n  \n\nThird."),
    ({"kind": "bullets", "count": 2}, "Intro\n- one\n* two", "- one\n- two\n- three"),
    ({"kind": "lowercase"}, "all small [name] 42.", "Not all small."),
    ({"kind": "uppercase"}, "ALL CAPS 42!", "ALL CAPS mostly"),
    ({"kind": "json"}, '```json\n{"a": 1}\n```', '{"a": 1'),
    ({"kind": "starts_with", "phrase": "In short"}, "  in short, yes.", "Well, in short yes."),
    ({"kind": "ends_with", "phrase": "The end"}, "Story.\nThe end  ", "The end. Or not."),
    ({"kind": "title"}, "<<My Title>>\nBody.", "<My Title>\nBody. <<>>"),
    ({"kind": "placeholders", "count": 2}, "Meet [name] at [place].", "Meet [name] at []."),
    ({"kind": "quotation"}, '"Quoted text."', '"Half quoted.'),
]


def test_every_kind_has_hand_cases():
    assert len(KINDS) >= 10
    assert {c["kind"] for c, _, _ in CASES} == set(KINDS)


@pytest.mark.parametrize("constraint,good,bad", CASES)
def test_rule_accepts_and_rejects(constraint, good, bad):
    ref = {"constraints": [constraint]}
    assert check(ref, good) == Score(1.0, True, "ok")
    assert check(ref, bad) == Score(0.0, False, f"unmet:{constraint['kind']}")


def test_counts_by_hand():
    assert count_words("It's a well-known fact: 3 cats.") == 6  # it's a well-known fact 3 cats
    assert count_sentences("One. Two! Three? four") == 4
    assert count_sentences("Pi is 3.14 or so") == 1  # no whitespace after the dot
    assert count_sentences("") == 0


def test_empty_answer_scores_zero():
    ref = {"constraints": [{"kind": "forbidden_chars", "chars": ","}]}
    assert check(ref, "  \n ") == Score(0.0, False, "empty_answer")
    assert check(ref, "ok") == Score(1.0, True, "ok")


def test_json_edges():
    assert not satisfied({"kind": "json"}, '"just a string"')  # objects/arrays only
    assert satisfied({"kind": "json"}, "[1, 2]")
    assert not satisfied({"kind": "json"}, "Here: {\"a\": 1}")


def test_reward_is_fraction_satisfied():
    ref = {"constraints": [{"kind": "lowercase"}, {"kind": "word_count", "max": 3},
                           {"kind": "keywords", "words": ["cat"]}, {"kind": "title"}]}
    s = check(ref, "a cat sat")  # lowercase, 3 words, has cat; no title
    assert s == Score(0.75, False, "unmet:title")
    s = check(ref, "The Dog sat down quietly")
    assert s.reward == 0.0 and s.reason == "unmet:lowercase,word_count,keywords,title"


@pytest.mark.parametrize("ref,field", [
    ({}, "constraints"), ({"constraints": []}, "constraints"),
    ({"constraints": [{"kind": "haiku"}]}, "constraints\\[0\\].kind"),
    ({"constraints": [{"kind": "lowercase"}, {"kind": "keywords"}]}, "constraints\\[1\\].*words"),
    ({"constraints": [{"kind": "word_count"}]}, "min/max"),
])
def test_bad_reference_names_field(ref, field):
    with pytest.raises(ValueError, match=field):
        check(ref, "text")


def _violate(c: dict, text: str) -> str:
    """Break constraint ``c`` in a teacher's answer ``text`` (independent of the teacher)."""
    kind = c["kind"]
    if kind in ("word_count", "sentence_count"):
        return "" if c.get("min") else text + " More words here." * 40
    return {
        "keywords": lambda: re.sub("|".join(c.get("words", [])), "x", text, flags=re.I),
        "forbidden_words": lambda: text + " " + c.get("words", ["x"])[0],
        "forbidden_chars": lambda: text + c.get("chars", " ")[0],
        "paragraphs": lambda: re.sub(r"\n\s*\n", "\n", text),
        "bullets": lambda: re.sub(r"(?m)^- ", "", text),
        "lowercase": lambda: text.upper(),
        "uppercase": lambda: text.lower(),
        "json": lambda: text[:-1],
        "starts_with": lambda: "Well " + text,
        "ends_with": lambda: text + " ok",
        "title": lambda: text.replace("<<", "").replace(">>", ""),
        "placeholders": lambda: re.sub(r"[\[\]]", "", text),
        "quotation": lambda: text.strip('"'),
    }[kind]()


def test_corrupted_teacher_answers_rejected():
    tasks = generate("ifeval", 400, seed=21, min_constraints=1, max_constraints=3)
    seen = set()
    for task in tasks:
        ref = json.loads(task["reference"])
        answer, _ = final_answer(teacher_trace(task))
        for c in ref["constraints"]:
            seen.add(c["kind"])
            assert not satisfied(c, _violate(c, answer)), (c, answer)
            assert not check(ref, _violate(c, answer)).correct
    assert seen == set(KINDS)
