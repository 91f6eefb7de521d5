"""Typed, frozen parameters read from ``params.yaml``.

``params.yaml`` is the only place hyperparameters live. Each top-level section belongs to one
stage (same name as in ``dvc.yaml``) or is shared (``seed``, ``model``). A section is loaded into
a frozen dataclass declared next to the code that uses it; loading is strict:

- an unknown key fails with its name and section (``ParamsError: curate.dedup.treshold: unknown key``),
- a value of the wrong type fails with the expected type,
- a missing key without a default and a missing section fail too.

Usage::

    from pipeline.params import load_section
    p = load_section("curate", CurateParams)          # reads ./params.yaml
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

T = TypeVar("T")
DEFAULT_PARAMS_PATH = Path("params.yaml")


class ParamsError(ValueError):
    """A params.yaml problem; the message names the file, the section and the key."""


def read_params_file(path: str | Path = DEFAULT_PARAMS_PATH) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: file not found")
    with path.open() as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: top level must be a mapping of sections")
    return data


def load_section(section: str, cls: type[T], path: str | Path = DEFAULT_PARAMS_PATH) -> T:
    """Load one section of ``path`` into the frozen dataclass ``cls``."""
    data = read_params_file(path)
    if section not in data:
        raise ParamsError(f"{path}: missing section '{section}'")
    return build(cls, data[section], where=f"{path}: {section}")


def build(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass ``cls`` from a mapping, checking keys and types recursively."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ParamsError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ParamsError(
            f"{where}.{unknown[0]}: unknown key (known keys: {', '.join(sorted(known))})"
        )
    kwargs = {}
    for name, f in known.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ParamsError(f"{where}.{name}: missing required key")
    return cls(**kwargs)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp: Any, value: Any, where: str) -> Any:  # noqa: C901 - one case per type form
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ParamsError as e:
                errors.append(str(e))
        raise ParamsError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in get_args(tp):
            choices = ", ".join(repr(a) for a in get_args(tp))
            raise ParamsError(f"{where}: expected one of {choices}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ParamsError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        item_tp = args[0] if args else Any
        items = [_convert(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items)  # frozen params: sequences become tuples
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ParamsError(f"{where}: expected a mapping, got {value!r}")
        args = get_args(tp)
        val_tp = args[1] if len(args) == 2 else Any
        return types.MappingProxyType(
            {str(k): _convert(val_tp, v, f"{where}.{k}") for k, v in value.items()}
        )
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{where}: expected bool, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{where}: expected int, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamsError(f"{where}: expected float, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{where}: expected str, got {value!r}")
        return value
    raise ParamsError(f"{where}: unsupported parameter type {_type_name(tp)}")


def as_dict(params: Any) -> dict[str, Any]:
    """Plain nested dict of a params dataclass (for logging)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, Mapping):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        return v

    return plain(params)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (MLflow params are flat)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_seed(path: str | Path = DEFAULT_PARAMS_PATH) -> int:
    """The pipeline-wide seed (top-level ``seed`` in params.yaml)."""
    seed = read_params_file(path).get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ParamsError(f"{path}: seed: expected int, got {seed!r}")
    return seed
