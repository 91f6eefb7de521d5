"""Instruction following: the 25 IFEval instructions (one accept and one reject each, by hand),
strict and loose modes, the generated-task rules built on the same primitives, rewards, and bad
references."""

from __future__ import annotations

import json
import re

import pytest

from pipeline.tasks import generate, teacher_trace
from pipeline.verify.answer import final_answer
from pipeline.verify.ifeval import (
    IFEVAL_IDS,
    KINDS,
    check,
    count_sentences,
    count_words,
    detect_language,
    follows,
    follows_loose,
    instruction_kwargs,
    loose_variants,
    satisfied,
    word_tokens,
)
from pipeline.verify.result import Score

# (IFEval id, kwargs, a response that follows it, one that does not) -- all by hand.
OFFICIAL_CASES = [
    ("keywords:existence", {"keywords": ["sun", "river"]},
     "Sunny days by the riverside.", "The sun is out."),  # substring, case-insensitive
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "at least"},
     "A cat and a Cat.", "One cat only."),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "less than"},
     "One cat only.", "Cats and a cat."),  # "Cats" contains "cat": 2 occurrences
    ("keywords:forbidden_words", {"forbidden_words": ["very"]},
     "Every day is fine.", "It is VERY fine."),  # whole words only
    ("keywords:letter_frequency", {"letter": "q", "let_frequency": 2, "let_relation": "at least"},
     "Quick quiz.", "A quiet day."),
    ("language:response_language", {"language": "fr"},
     "Le chat dort sur le canapé depuis ce matin et ne veut pas se réveiller.",
     "The cat has been sleeping on the sofa since this morning."),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"},
     "Mr. Smith went to Washington. He left.", "One. Two. Three."),  # "Mr." is no boundary
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2},
     "First part.\n***\nSecond part.", "First.\n\nSecond.\n\nThird."),
    ("length_constraints:number_words", {"num_words": 5, "relation": "at least"},
     "Don't stop me now.", "Do stop me."),  # don't = 2 words -> 5
    ("length_constraints:nth_paragraph_first_word",
     {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "Then"},
     "First.\n\n\"Then, second.", "First.\n\nAfter that, second."),
    ("detectable_content:number_placeholders", {"num_placeholders": 2},
     "Meet [name] at [].", "Meet [name] there."),  # [] counts
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"},
     "Body.\n\nP.P.S. One more thing.", "Body.\n\nP.S. One more thing."),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2},
     "Intro\n* one\n- two\n**bold** line", "* one\n* two\n* three"),
    ("detectable_format:constrained_response", {},
     "Well... My answer is maybe.", "My answer is: yes."),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2},
     "*one* and **two**", "*one* and ** **"),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
     "Section 1\nA\nSection 2\nB", "Section 1\nA\nPart 2\nB"),
    ("detectable_format:json_format", {},
     '```JSON\n{"a": 1}\n```', 'Here: {"a": 1}'),
    ("detectable_format:title", {}, "<<My Title>>\nBody.", "<My Title>\nBody. << >>"),
    ("combination:two_responses", {},
     "Yes, it is.\n******\nNo, it is not.", "Same.\n******\nSame."),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."},
     "write a poem. Roses are red.", "Here: Write a poem."),
    ("startend:end_checker", {"end_phrase": "Any other questions?"},
     'That is all. Any other questions?"', "Any other questions? Bye."),
    ("change_case:capital_word_frequency", {"capital_frequency": 4,
                                            "capital_relation": "less than"},
     "I'M FINE thanks.", "WE ARE SO FINE."),  # I'M -> "I", "'M": 3 capital tokens with FINE
    ("change_case:english_capital", {},
     "THIS IS WRITTEN IN ENGLISH, ALL IN CAPITAL LETTERS.", "THIS IS ALMOST ALL in capitals."),
    ("change_case:english_lowercase", {},
     "this is written in english, all in small letters.", "This is not all lowercase."),
    ("punctuation:no_comma", {}, "No commas here.", "Hello, world."),
    ("startend:quotation", {}, '  "Quoted text."  ', '"Half quoted.'),
]  # fmt: skip


def test_every_ifeval_id_has_hand_cases():
    assert len(IFEVAL_IDS) == 25
    assert {iid for iid, *_ in OFFICIAL_CASES} == set(IFEVAL_IDS)


@pytest.mark.parametrize("iid,kwargs,good,bad", OFFICIAL_CASES)
def test_official_instruction_accepts_and_rejects(iid, kwargs, good, bad):
    kw = instruction_kwargs(iid, kwargs)
    assert follows(iid, kw, good) is True
    assert follows(iid, kw, bad) is False
    ref = {"constraints": [{"kind": iid, "kwargs": kwargs}]}
    assert check(ref, good) == Score(1.0, True, "ok")
    assert check(ref, bad) == Score(0.0, False, f"unmet:{iid}")


def test_blank_response_follows_nothing():
    for iid, kwargs, *_ in OFFICIAL_CASES:
        assert follows(iid, instruction_kwargs(iid, kwargs), "  \n") is False
    assert check({"constraints": [{"kind": "punctuation:no_comma"}]}, " ") == Score(
        0.0, False, "empty_answer")


def test_loose_mode_variants():
    response = "Sure, here it is:\n**hello world**\nHope this helps, bye"
    assert loose_variants("a\n*b*\nc") == ["a\n*b*\nc", "a\nb\nc", "*b*\nc", "a\n*b*", "*b*",
                                            "b\nc", "a\nb", "b"]  # fmt: skip
    kw = instruction_kwargs("punctuation:no_comma", {})
    assert not follows("punctuation:no_comma", kw, response)
    assert follows_loose("punctuation:no_comma", kw, response)  # first + last line dropped
    kw = instruction_kwargs("change_case:english_lowercase", {})
    assert follows_loose("change_case:english_lowercase", kw,
                         "Here you go:\nthis whole answer is written in lowercase english words")
    ref = {"constraints": [{"kind": "punctuation:no_comma", "kwargs": {}}], "mode": "loose"}
    assert check(ref, response).correct
    assert not check({**ref, "mode": "strict"}, response).correct


def test_text_primitives_by_hand():
    assert count_words("It's a well-known fact: 3 cats.") == 8  # it s a well known fact 3 cats
    assert count_sentences("One. Two! Three? four") == 4
    assert count_sentences("Pi is 3.14 or so") == 1
    assert count_sentences("Dr. Watson met Mr. Holmes. They talked.") == 2
    assert count_sentences('He said "stop." Then he left.') == 2
    assert count_sentences("") == 0
    assert word_tokens("I'M HERE. DON'T GO.") == ["I", "'M", "HERE", ".", "DO", "N'T", "GO", "."]


def test_language_detection_is_offline_and_repeatable():
    text = "Dies ist ein kurzer deutscher Satz über das Wetter in Berlin."
    assert {detect_language(text) for _ in range(5)} == {"de"}
    assert detect_language("12345 !!!") is None  # nothing to classify: IFEval counts it as met


@pytest.mark.parametrize("iid,kwargs,field", [
    ("keywords:existence", {}, "keywords"),
    ("keywords:frequency", {"keyword": "a", "frequency": 2, "relation": "at most"}, "relation"),
    ("length_constraints:number_words", {"num_words": "ten", "relation": "at least"}, "num_words"),
    ("startend:end_checker", {"end_phrase": 3}, "end_phrase"),
])  # fmt: skip
def test_bad_instruction_kwargs_name_the_field(iid, kwargs, field):
    with pytest.raises(ValueError, match=field):
        instruction_kwargs(iid, kwargs)


def test_null_kwargs_of_the_published_data_are_ignored():
    # The published kwargs carry every key, unused ones as null.
    kw = instruction_kwargs("punctuation:no_comma", {"num_words": None, "relation": None})
    assert kw == {}


# ---- generated-task rules (same primitives) ---------------------------------------------------

# (constraint, a text that satisfies it, a text that violates it) -- all by hand.
CASES = [
    ({"kind": "word_count", "min": 3}, "one two three", "one two"),
    ({"kind": "word_count", "max": 3}, "one, two; three!", "one two three four"),
    ({"kind": "word_count", "min": 3, "max": 3}, "don't stop", "do not stop now"),  # don't = 2
    ({"kind": "sentence_count", "min": 2}, "Hi there. Bye!", "Just one sentence here."),
    ({"kind": "sentence_count", "max": 1}, "Only one. ", "One. Two? Three!"),
    ({"kind": "keywords", "words": ["sun", "River"]}, "The SUNny riverside.",
     "The moon over the lake."),  # found anywhere, as IFEval's keywords:existence
    ({"kind": "forbidden_words", "words": ["very"]}, "Every day is fine.", "It is Very fine."),
    ({"kind": "forbidden_chars", "chars": ",!"}, "No commas here.", "Hello, world."),
    ({"kind": "paragraphs", "count": 2}, "First part.\n\nSecond part.",
     "First part.\nStill first.\n\nSecond.\n\n  \n\nThird."),
    ({"kind": "bullets", "count": 2}, "Intro\n- one\n* two", "- one\n- two\n- three"),
    ({"kind": "lowercase"}, "all of this is written in small letters [name] 42.",
     "Not all small."),
    ({"kind": "uppercase"}, "ALL OF THIS IS WRITTEN IN CAPITAL LETTERS 42!", "ALL CAPS mostly"),
    ({"kind": "json"}, '```json\n{"a": 1}\n```', '{"a": 1'),
    ({"kind": "starts_with", "phrase": "In short"}, "  in short, yes.", "Well, in short yes."),
    ({"kind": "ends_with", "phrase": "The end"}, "Story.\nThe end  ", "The end. Or not."),
    ({"kind": "title"}, "<<My Title>>\nBody.", "<My Title>\nBody. <<>>"),
    ({"kind": "placeholders", "count": 2}, "Meet [name] at [place].", "Meet [name] at place."),
    ({"kind": "quotation"}, '"Quoted text."', '"Half quoted.'),
]  # fmt: skip


def test_every_kind_has_hand_cases():
    assert len(KINDS) >= 10
    assert {c["kind"] for c, _, _ in CASES} == set(KINDS)


@pytest.mark.parametrize("constraint,good,bad", CASES)
def test_rule_accepts_and_rejects(constraint, good, bad):
    ref = {"constraints": [constraint]}
    assert check(ref, good) == Score(1.0, True, "ok")
    assert check(ref, bad) == Score(0.0, False, f"unmet:{constraint['kind']}")


def test_empty_answer_scores_zero():
    ref = {"constraints": [{"kind": "forbidden_chars", "chars": ","}]}
    assert check(ref, "  \n ") == Score(0.0, False, "empty_answer")
    assert check(ref, "...") == Score(0.0, False, "empty_answer")  # no word at all
    assert check(ref, "ok") == Score(1.0, True, "ok")


def test_json_edges():
    assert satisfied({"kind": "json"}, '"just a string"')  # any JSON value, as IFEval
    assert satisfied({"kind": "json"}, "[1, 2]")
    assert not satisfied({"kind": "json"}, "Here: {\"a\": 1}")


def test_reward_is_fraction_satisfied():
    ref = {"constraints": [{"kind": "lowercase"}, {"kind": "word_count", "max": 8},
                           {"kind": "keywords", "words": ["cat"]}, {"kind": "title"}]}
    s = check(ref, "the cat sat on the mat all day")  # lowercase English, 8 words, cat; no title
    assert s == Score(0.75, False, "unmet:title")
    s = check(ref, "The Dog sat down quietly near the door and slept")
    assert s.reward == 0.0 and s.reason == "unmet:lowercase,word_count,keywords,title"


@pytest.mark.parametrize("ref,field", [
    ({}, "constraints"), ({"constraints": []}, "constraints"),
    ({"constraints": [{"kind": "haiku"}]}, "constraints\\[0\\].kind"),
    ({"constraints": [{"kind": "lowercase"}, {"kind": "keywords"}]}, "constraints\\[1\\].*words"),
    ({"constraints": [{"kind": "word_count"}]}, "min/max"),
    ({"constraints": [{"kind": "keywords:frequency", "kwargs": {"keyword": "a"}}]}, "frequency"),
    ({"constraints": [{"kind": "title"}], "mode": "lenient"}, "mode"),
])  # fmt: skip
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
        assert check(ref, answer).correct, (ref, answer)
        for c in ref["constraints"]:
            seen.add(c["kind"])
            assert not satisfied(c, _violate(c, answer)), (c, answer)
            assert not check(ref, _violate(c, answer)).correct
    assert seen == set(KINDS)
