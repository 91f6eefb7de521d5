"""IFEval rows (``prompt``, ``instruction_id_list``, ``kwargs``) -> ifeval task records.

Every one of the 25 instruction ids of the published benchmark has a checker with the
benchmark's semantics (:data:`pipeline.verify.ifeval.INSTRUCTIONS`); each becomes one constraint
``{"kind": <id>, "kwargs": {...}}`` of the task's reference, graded in IFEval's ``strict`` mode
(``loose`` is available to callers through the reference's ``mode``). An id outside that set
raises :class:`UnknownInstruction` listing every such id of the row; the loader skips the row and
counts each id (or stops, with ``on_unknown="error"``). Missing or malformed keyword arguments
raise ``ValueError`` naming the row, the instruction index and the field.
"""

from __future__ import annotations

from typing import Any

from pipeline.schema import make_task
from pipeline.verify.ifeval import INSTRUCTIONS, instruction_kwargs


class UnknownInstruction(ValueError):
    def __init__(self, where: str, instruction_ids: list[str]):
        super().__init__(f"{where}: field 'instruction_id_list': no checker for "
                         f"{', '.join(map(repr, instruction_ids))}")  # fmt: skip
        self.instruction_ids = instruction_ids
        self.instruction_id = instruction_ids[0]


def ifeval_reference(row: dict[str, Any], where: str, mode: str = "strict") -> dict[str, Any]:
    """The ifeval reference of one row; raises UnknownInstruction or ValueError (naming the field)."""
    ids, kwargs = row.get("instruction_id_list"), row.get("kwargs")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise ValueError(f"{where}: field 'instruction_id_list': need a non-empty list of ids")
    kwargs = kwargs if kwargs is not None else [{} for _ in ids]
    if not isinstance(kwargs, list) or len(kwargs) != len(ids):
        raise ValueError(f"{where}: field 'kwargs': need one object per instruction id")
    unknown = [i for i in ids if i not in INSTRUCTIONS]
    if unknown:
        raise UnknownInstruction(where, unknown)
    constraints = [{"kind": iid, "kwargs": instruction_kwargs(iid, kw, f"{where}: kwargs[{i}]")}
                   for i, (iid, kw) in enumerate(zip(ids, kwargs, strict=True))]  # fmt: skip
    return {"constraints": constraints, "mode": mode}


def ifeval_task(row: dict[str, Any], where: str, name: str) -> dict[str, str]:
    """One IFEval row -> a task; raises UnknownInstruction or ValueError naming the field."""
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"{where}: field 'prompt': missing or empty")
    reference = ifeval_reference(row, where)
    meta = {"instruction_id_list": row["instruction_id_list"], "key": row.get("key")}
    return make_task("ifeval", prompt.strip(), reference, f"bench:{name}", meta, split="bench")
