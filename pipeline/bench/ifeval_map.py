"""IFEval rows (``prompt``, ``instruction_id_list``, ``kwargs``) -> our ifeval task records.

Each IFEval instruction id that our rule checkers (:mod:`pipeline.verify.ifeval`) score the
same way maps onto one constraint kind (:data:`IFEVAL_KINDS`). Ids with no faithful match (e.g.
``length_constraints:number_paragraphs``: IFEval separates paragraphs with ``***``, ours with
blank lines; ``language:response_language``; ``combination:*``) raise
:class:`UnknownInstruction`; the loader skips such a row and counts it by id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.schema import make_task


class UnknownInstruction(ValueError):
    def __init__(self, where: str, instruction_id: str):
        super().__init__(f"{where}: field 'instruction_id_list': no checker for {instruction_id!r}")
        self.instruction_id = instruction_id


def _arg(kw: dict[str, Any], name: str, where: str) -> Any:
    if kw.get(name) is None:
        raise ValueError(f"{where}: field 'kwargs': missing {name!r}")
    return kw[name]


def _bound(kind: str, count_key: str) -> Callable[[dict, str], dict]:
    """IFEval's relation "less than" N -> max N-1; "at least" N -> min N."""

    def convert(kw: dict, where: str) -> dict:
        n, rel = int(_arg(kw, count_key, where)), _arg(kw, "relation", where)
        if rel == "less than":
            return {"kind": kind, "max": n - 1}
        if rel == "at least":
            return {"kind": kind, "min": n}
        raise ValueError(f"{where}: field 'kwargs': relation {rel!r} (want 'less than'/'at least')")

    return convert


IFEVAL_KINDS: dict[str, Callable[[dict, str], dict]] = {
    "length_constraints:number_words": _bound("word_count", "num_words"),
    "length_constraints:number_sentences": _bound("sentence_count", "num_sentences"),
    "keywords:existence": lambda kw, w: {"kind": "keywords",
                                         "words": list(_arg(kw, "keywords", w))},
    "keywords:forbidden_words": lambda kw, w: {"kind": "forbidden_words",
                                               "words": list(_arg(kw, "forbidden_words", w))},
    "punctuation:no_comma": lambda kw, w: {"kind": "forbidden_chars", "chars": [","]},
    "detectable_format:number_bullet_lists": lambda kw, w: {
        "kind": "bullets", "count": int(_arg(kw, "num_bullets", w))},
    "change_case:english_lowercase": lambda kw, w: {"kind": "lowercase"},
    "change_case:english_capital": lambda kw, w: {"kind": "uppercase"},
    "detectable_format:json_format": lambda kw, w: {"kind": "json"},
    "detectable_format:title": lambda kw, w: {"kind": "title"},
    "startend:end_checker": lambda kw, w: {"kind": "ends_with",
                                           "phrase": str(_arg(kw, "end_phrase", w))},
    "startend:quotation": lambda kw, w: {"kind": "quotation"},
    "detectable_content:number_placeholders": lambda kw, w: {
        "kind": "placeholders", "count": int(_arg(kw, "num_placeholders", w))},
}


def ifeval_task(row: dict[str, Any], where: str, name: str) -> dict[str, str]:
    """One IFEval row -> a task; raises UnknownInstruction or ValueError naming the field."""
    prompt, ids, kwargs = row.get("prompt"), row.get("instruction_id_list"), row.get("kwargs")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"{where}: field 'prompt': missing or empty")
    if not isinstance(ids, list) or not ids:
        raise ValueError(f"{where}: field 'instruction_id_list': need a non-empty list")
    kwargs = kwargs if kwargs is not None else [{} for _ in ids]
    if not isinstance(kwargs, list) or len(kwargs) != len(ids):
        raise ValueError(f"{where}: field 'kwargs': need one dict per instruction id")
    constraints = []
    for i, (iid, kw) in enumerate(zip(ids, kwargs, strict=True)):
        if iid not in IFEVAL_KINDS:
            raise UnknownInstruction(where, iid)
        constraints.append(IFEVAL_KINDS[iid](kw or {}, f"{where}: kwargs[{i}]"))
    meta = {"instruction_id_list": ids, "key": row.get("key")}
    return make_task("ifeval", prompt.strip(), {"constraints": constraints}, f"bench:{name}",
                     meta, split="bench")
