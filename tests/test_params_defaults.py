"""params.yaml is the only source of hyperparameters: no dataclass default may disagree with it.

Every params dataclass a stage loads is compared, field by field (nested dataclasses too), with
the value ``params.yaml`` gives; a mismatch, or a field ``params.yaml`` leaves out (its default
would then be a second, silent source), fails naming ``section.key``. To cover another stage,
add its ``(section, class)`` pair to ``SECTIONS``.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.curation.config import CurateParams
from pipeline.model import ModelParams
from pipeline.params import build
from pipeline.rl.params import RLParams
from pipeline.stages.bench import BenchParams
from pipeline.stages.difficulty import DifficultyParams
from pipeline.stages.distill import DistillParams
from pipeline.stages.select import SelectParams
from pipeline.stages.sft import SftParams
from pipeline.verify.reward_model import RewardModelParams

REPO = Path(__file__).resolve().parents[1]

# (params.yaml section, the dataclass its stage loads it into)
SECTIONS: list[tuple[str, type]] = [
    ("model", ModelParams),
    ("curate", CurateParams),
    ("distill", DistillParams),
    ("sft", SftParams),
    ("select", SelectParams),
    ("difficulty", DifficultyParams),
    ("bench", BenchParams),
    ("reward_model", RewardModelParams),
    ("rl_reasoning", RLParams),
]
# Keys that describe the data rather than tune a component: which generators and user files,
# and per-domain split overrides (curate rejects an override for a domain without rows, so the
# only default valid for every data set is "no override").
# rl_reasoning.domain_mix names the reasoning domains of this data set (the default, no weights,
# is valid for any).
DATA_KEYS = {"curate.generators", "curate.user_files", "curate.split_by_domain",
             "rl_reasoning.domain_mix"}


def plain(value: Any) -> Any:
    """Mappings -> dicts, sequences -> tuples, recursively (the loader makes read-only
    mappings and tuples; a default may be a dict or a list)."""
    if dataclasses.is_dataclass(value):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return tuple(plain(v) for v in value)
    return value


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def disagreements(cls: type, raw: Any, where: str, data_keys: set[str] = DATA_KEYS
                  ) -> Iterator[str]:
    """``where.key: ...`` for every field of ``cls`` whose default differs from ``raw`` (the
    section's YAML mapping) or that ``raw`` does not set. Nested dataclass fields are compared
    key by key; a field without a default is only required to be present."""
    raw = raw or {}
    for f in dataclasses.fields(cls):
        name = f.name
        key = f"{where}.{name}"
        if key in data_keys:
            continue
        if name not in raw:
            yield f"{key}: missing from params.yaml (the dataclass default would be used)"
            continue
        default = _default(f)
        if default is dataclasses.MISSING:
            continue
        if dataclasses.is_dataclass(default) and isinstance(raw[name], Mapping):
            yield from disagreements(type(default), raw[name], key, data_keys)
            continue
        given = plain(converted(cls, name, raw[name], key))
        if plain(default) != given:
            yield f"{key}: dataclass default {plain(default)!r} != params.yaml {given!r}"


def converted(cls: type, name: str, value: Any, where: str) -> Any:
    """``value`` converted to the type of ``cls.name`` exactly as ``load_section`` does (lists
    -> tuples, mappings read-only, nested dataclasses built, types checked)."""
    holder = dataclasses.make_dataclass(
        "Holder", [(name, typing.get_type_hints(cls)[name])], frozen=True)
    return getattr(build(holder, {name: value}, where), name)


@pytest.mark.parametrize(("section", "cls"), SECTIONS, ids=[s for s, _ in SECTIONS])
def test_dataclass_defaults_equal_params_yaml(section, cls):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert section in raw, f"params.yaml has no section {section!r}"
    problems = list(disagreements(cls, raw[section], section))
    assert not problems, "\n".join(problems)


def test_rl_general_sets_every_key():
    # Both RL stages load RLParams, whose defaults are rl_reasoning's; rl_general may differ
    # from them but must state every key, so no default silently applies to it.
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    missing = [p for p in disagreements(RLParams, raw["rl_general"], "rl_general", set())
               if "missing from params.yaml" in p]
    assert not missing, "\n".join(missing)


@dataclasses.dataclass(frozen=True)
class _Inner:
    rate: float = 0.5
    kinds: tuple[str, ...] = ("a", "b")


@dataclasses.dataclass(frozen=True)
class _Section:
    count: int  # no default: only required to be present
    lr: float = 1e-3
    inner: _Inner = dataclasses.field(default_factory=_Inner)
    shares: Mapping[str, float] = dataclasses.field(default_factory=lambda: {"x": 1.0})
    files: tuple[str, ...] = ()


def test_disagreements_name_each_key_that_differs_or_is_missing():
    raw = yaml.safe_load("""
count: 7
lr: 1.0e-3
inner: {rate: 0.25, kinds: [a, b]}
shares: {x: 2.0}
""")
    assert sorted(disagreements(_Section, raw, "s", data_keys=set())) == [
        "s.files: missing from params.yaml (the dataclass default would be used)",
        "s.inner.rate: dataclass default 0.5 != params.yaml 0.25",
        "s.shares: dataclass default {'x': 1.0} != params.yaml {'x': 2.0}",
    ]
    # a data key is not compared; equal values (YAML lists vs tuple defaults) agree
    raw.update(inner={"rate": 0.5, "kinds": ["a", "b"]}, shares={"x": 1.0})
    assert list(disagreements(_Section, raw, "s", data_keys={"s.files"})) == []
    # a nested key missing from the YAML is named with its full path
    assert list(disagreements(_Section, {**raw, "inner": {"rate": 0.5}, "files": []}, "s")) == [
        "s.inner.kinds: missing from params.yaml (the dataclass default would be used)"]
