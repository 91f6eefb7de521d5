"""Instruction following: a short note on a topic under 1-3 checkable constraints.

The request is worded one of several ways (``FRAMES``) about one of 154 topics, and the
constraints' words and phrases come from lists of 10-40, so 1,000 draws give about 985 distinct
prompts: an RL pool of them rarely repeats a prompt, and a fresh draw with a new seed has the
pool's mix of constraint kinds (a small prompt space leaves only the rarest combinations fresh).

Knobs: ``kinds`` (constraint kinds to draw from; see ``pipeline.verify.ifeval.KINDS``),
``min_constraints`` / ``max_constraints`` (how many per prompt). Conflicting kinds are never
drawn together (``CONFLICTS``), and a drawn combination the teacher cannot satisfy in at most
``MAX_TRACE_WORDS`` words is redrawn, so every task is satisfiable in a short note.
Reference: ``{"constraints": [{"kind": ..., **args}, ...]}``.

The teacher plans in the think block (the rules, how many sentences), then writes the note
from templated sentences (no commas or other rare punctuation), shaped into paragraphs, bullets
or JSON, with the title, placeholders, keywords and phrases asked for. It picks the number of
sentences by trying 2..12, then 1, and keeping the first text that meets every rule.
"""

from __future__ import annotations

import json
import random
from typing import Any

from pipeline.verify.ifeval import KINDS, satisfied

DEFAULTS: dict[str, Any] = {"kinds": KINDS, "min_constraints": 1, "max_constraints": 1}
TOPICS = (
    "cats", "the ocean", "coffee", "rainy days", "trains", "gardening", "the moon", "bicycles",
    "winter", "music lessons", "old maps", "honey bees", "city parks", "baking bread",
    "mountains", "libraries", "chess", "the desert", "kites", "tea", "volcanoes", "school buses",
    "owls", "lighthouses", "camping", "clocks", "robots", "snow", "rivers", "football",
    "dogs", "horses", "dolphins", "penguins", "elephants", "butterflies", "frogs", "foxes",
    "whales", "parrots", "spiders", "turtles", "wolves", "rabbits", "squirrels", "ants",
    "apples", "pizza", "soup", "chocolate", "rice", "cheese", "pancakes", "oranges", "salad",
    "ice cream", "noodles", "strawberries", "popcorn", "lemons", "carrots", "sandwiches",
    "summer", "autumn", "spring", "storms", "rainbows", "fog", "sunsets", "thunder", "the wind",
    "stars", "comets", "planets", "the sun", "eclipses", "satellites", "space travel",
    "forests", "islands", "caves", "lakes", "waterfalls", "beaches", "glaciers", "jungles",
    "meadows", "canyons", "swamps", "hills", "boats", "airplanes", "buses", "bridges",
    "tunnels", "ships", "cars", "subways", "hot air balloons", "rockets", "sailboats",
    "painting", "dancing", "poetry", "theater", "photography", "knitting", "pottery",
    "drawing", "singing", "the piano", "the violin", "drums", "museums", "markets", "bakeries",
    "farms", "zoos", "castles", "hospitals", "airports", "schools", "villages", "harbors",
    "swimming", "tennis", "skiing", "hiking", "running", "fishing", "basketball", "yoga",
    "board games", "puzzles", "birthdays", "holidays", "picnics", "letters", "newspapers",
    "maps", "umbrellas", "candles", "mirrors", "keys", "shoes", "hats", "backpacks",
    "computers", "telephones", "cameras", "radios", "lamps", "windmills", "fountains",
)
# How the task is put: the rules follow it. Several wordings of one request, so the model reads
# the rules rather than one memorised sentence, and fresh prompts stay plentiful.
FRAMES = ("Write a short note about {t}.", "Write a few lines about {t}.",
          "Write a short text about {t}.", "Write a brief note on {t}.",
          "Tell me about {t} in a short note.", "Write something short about {t}.")
_SENTENCES = ("Many people enjoy {t}.", "There is always more to know about {t}.",
              "People talk about {t} every day.", "Some facts about {t} surprise people.",
              "Learning about {t} takes time.", "Children often ask about {t}.",
              "Books about {t} are easy to find.", "Everyone has a story about {t}.",
              "We can learn a lot from {t}.", "Thinking about {t} makes life more fun.",
              "Stories about {t} go back a long way.", "Learning about {t} is worth it.")
KEYWORDS = ("sun", "river", "music", "history", "friend", "market", "garden", "window",
            "journey", "color", "bridge", "forest", "letter", "island", "morning", "village",
            "painting", "candle", "mirror", "harbor", "silver", "cloud", "engine", "kitchen",
            "meadow", "puzzle", "rocket", "shadow", "valley", "whistle", "basket", "lantern",
            "orchard", "pebble", "ribbon", "tunnel", "violin", "wagon", "feather", "compass")
FORBIDDEN = ("very", "really", "good", "bad", "thing", "nice", "just", "also", "great",
             "pretty", "quite", "stuff", "maybe", "actually", "simply", "truly", "totally",
             "awesome", "kind", "lots")
CHARS = (",", ";", "!", "?")
STARTS = ("Here is my note", "Let me explain", "In short", "My answer follows", "To begin",
          "Listen to this", "Here we go", "First of all", "Dear reader", "A quick note")
ENDS = ("That is all", "Thank you for reading", "The end", "Any other questions", "See you soon",
        "Best wishes", "That wraps it up", "Until next time", "Stay curious", "Goodbye for now")
CONFLICTS = {
    frozenset(p) for p in (
        ("json", "paragraphs"), ("json", "bullets"), ("json", "title"), ("json", "starts_with"),
        ("json", "ends_with"), ("json", "quotation"), ("json", "sentence_count"),
        ("paragraphs", "bullets"), ("lowercase", "uppercase"), ("title", "starts_with"),
        ("quotation", "starts_with"), ("quotation", "ends_with"), ("quotation", "bullets"),
    )
}
MAX_SENTENCES = 12
MAX_TRACE_WORDS = 60  # a longer teacher note is redrawn: it would not fit the RL stage's tokens


def check_knobs(k: dict[str, Any]) -> None:
    if not k["kinds"] or set(k["kinds"]) - set(KINDS):
        raise ValueError(f"ifeval knob kinds={k['kinds']!r}: choose from {KINDS}")
    if not 1 <= k["min_constraints"] <= k["max_constraints"] <= 3:
        raise ValueError("ifeval knobs min_constraints/max_constraints: need "
                         f"1 <= {k['min_constraints']} <= {k['max_constraints']} <= 3")


def _range(rng: random.Random, lo: int, hi: int, span: tuple[int, int]) -> dict[str, int]:
    form = rng.choice(("min", "max", "both"))
    if form == "min":
        return {"min": rng.randint(lo, hi)}
    if form == "max":
        return {"max": rng.randint(hi, hi + span[1])}
    a = rng.randint(lo, hi)
    return {"min": a, "max": a + rng.randint(*span)}


def _args(rng: random.Random, kind: str) -> dict[str, Any]:
    if kind == "word_count":
        return _range(rng, 5, 20, (15, 30))
    if kind == "sentence_count":
        return _range(rng, 2, 3, (1, 3))
    if kind in ("keywords", "forbidden_words"):
        return {"words": rng.sample(KEYWORDS if kind == "keywords" else FORBIDDEN,
                                    rng.randint(1, 2))}
    if kind == "forbidden_chars":
        return {"chars": "".join(rng.sample(CHARS, rng.randint(1, 2)))}
    if kind in ("paragraphs", "bullets"):
        return {"count": rng.randint(2, 3 if kind == "paragraphs" else 4)}
    if kind == "placeholders":
        return {"count": rng.randint(1, 2)}
    if kind in ("starts_with", "ends_with"):
        return {"phrase": rng.choice(STARTS if kind == "starts_with" else ENDS)}
    return {}


def _draw(rng: random.Random, k: dict[str, Any]) -> list[dict[str, Any]]:
    want = rng.randint(k["min_constraints"], k["max_constraints"])
    chosen: list[str] = []
    for kind in rng.sample(list(k["kinds"]), len(k["kinds"])):
        if len(chosen) < want and all(frozenset((kind, c)) not in CONFLICTS for c in chosen):
            chosen.append(kind)
    return [{"kind": kind, **_args(rng, kind)} for kind in chosen]


def _quote(words: list[str]) -> str:
    return " and ".join(f"'{w}'" for w in words)


def describe(c: dict[str, Any]) -> str:
    """The instruction text for one constraint."""
    kind = c["kind"]
    if kind in ("word_count", "sentence_count"):
        unit = "words" if kind == "word_count" else "sentences"
        if c.get("min") is not None and c.get("max") is not None:
            return f"Use between {c['min']} and {c['max']} {unit}."
        return f"Use at least {c['min']} {unit}." if c.get("min") is not None \
            else f"Use at most {c['max']} {unit}."
    return {
        "keywords": lambda: f"Include the words {_quote(c.get('words', []))}.",
        "forbidden_words": lambda: f"Do not use the words {_quote(c.get('words', []))}.",
        "forbidden_chars": lambda: "Do not use these characters: " + " ".join(c["chars"]) + ".",
        "paragraphs": lambda: f"Write exactly {c['count']} paragraphs separated by blank lines.",
        "bullets": lambda: f"Use exactly {c['count']} bullet points that start with '- '.",
        "lowercase": lambda: "Write everything in English, in lowercase letters.",
        "uppercase": lambda: "Write everything in English, in capital letters.",
        "json": lambda: "Wrap the whole response in JSON.",
        "starts_with": lambda: f"Start your response with '{c['phrase']}'.",
        "ends_with": lambda: f"End your response with '{c['phrase']}'.",
        "title": lambda: "Include a title in double angle brackets, like <<title>>.",
        "placeholders": lambda: f"Include at least {c['count']} placeholders in square "
                                "brackets, like [name].",
        "quotation": lambda: "Wrap the whole response in double quotes.",
    }[kind]()


def make(rng: random.Random, k: dict[str, Any]) -> tuple[str, dict, dict]:
    while True:
        topic = rng.choice(TOPICS)
        frame = rng.choice(FRAMES)
        constraints = _draw(rng, k)
        meta = {"topic": topic}
        try:
            trace = teacher({"constraints": constraints}, meta)
        except ValueError:
            continue  # an unsatisfiable combination (e.g. 4 bullets in at most 2 sentences)
        if len(trace.split()) > MAX_TRACE_WORDS:
            continue  # e.g. capitals on a topic langdetect reads as English only at 9 sentences
        rules = " ".join(describe(c) for c in constraints)
        return f"{frame.format(t=topic)} {rules}", {"constraints": constraints}, meta


def _render(cons: dict[str, dict], topic: str, m: int) -> str | None:
    """The note with ``m`` sentences shaped by the constraints (None if m is too small)."""
    sents = []
    if "keywords" in cons:
        sents.append("It brings to mind " + " and ".join(cons["keywords"]["words"]) + ".")
    if "placeholders" in cons:
        sents.append("Ask [name] at [place]" + (" on [date]." if cons["placeholders"]["count"]
                                                 > 2 else "."))
    pool = [s.format(t=topic) for s in _SENTENCES]
    sents += pool[: max(0, m - len(sents))]
    groups = cons.get("paragraphs", cons.get("bullets", {})).get("count", 1)
    if m < len(sents) or m > len(sents) or m < groups:
        return None
    chunks = [" ".join(sents[i::groups]) for i in range(groups)]
    if "bullets" in cons:
        body = "\n".join(f"- {ch}" for ch in chunks)
    else:
        body = "\n\n".join(chunks)
    head = [cons["starts_with"]["phrase"]] if "starts_with" in cons else []
    head += [f"<<About {topic}>>"] if "title" in cons else []
    text = "\n".join(head + [body])
    if "ends_with" in cons:
        text += "\n" + cons["ends_with"]["phrase"]
    if "json" in cons:
        text = json.dumps({"answer": text})
    if "quotation" in cons:
        text = f'"{text}"'
    if "lowercase" in cons:
        text = text.lower()
    if "uppercase" in cons:
        text = text.upper()
    return text


def _label(c: dict[str, Any]) -> str:
    return describe(c).rstrip(".")


def teacher(reference: dict, meta: dict) -> str:
    constraints = reference["constraints"]
    cons = {c["kind"]: c for c in constraints}
    topic = meta.get("topic", "the topic")
    for m in [*range(2, MAX_SENTENCES + 1), 1]:  # two sentences read better than one
        text = _render(cons, topic, m)
        if text is not None and all(satisfied(c, text) for c in constraints):
            plan = "\n".join(f"- {_label(c)}" for c in constraints)
            count = f"{m} sentence" + ("s" if m > 1 else "")
            return f"<think>\nRules:\n{plan}\nPlan: {count} about {topic}.\n</think>\n{text}"
    raise ValueError(f"ifeval teacher cannot satisfy {constraints}")
