from dataclasses import dataclass, field
from typing import Literal

import pytest

from pipeline.params import ParamsError, build, load_section, load_seed


@dataclass(frozen=True)
class Inner:
    rate: float
    kinds: tuple[str, ...] = ("a",)


@dataclass(frozen=True)
class Section:
    count: int
    mode: Literal["budget", "token_mean"] = "budget"
    inner: Inner = field(default_factory=lambda: Inner(rate=0.5))
    limit: int | None = None


def write(tmp_path, text):
    p = tmp_path / "params.yaml"
    p.write_text(text)
    return p


def test_loads_nested_and_converts(tmp_path):
    p = write(tmp_path, "seed: 3\ns:\n  count: 2\n  inner: {rate: 1, kinds: [x, y]}\n")
    s = load_section("s", Section, p)
    assert s == Section(count=2, inner=Inner(rate=1.0, kinds=("x", "y")))
    assert isinstance(s.inner.rate, float)
    assert load_seed(p) == 3
    with pytest.raises(AttributeError):
        s.count = 5  # frozen


def test_unknown_key_names_section_and_key(tmp_path):
    p = write(tmp_path, "s:\n  count: 2\n  inner: {rate: 1, kindz: [x]}\n")
    with pytest.raises(ParamsError, match=r"s\.inner\.kindz: unknown key"):
        load_section("s", Section, p)


def test_wrong_type_names_key_and_expected_type(tmp_path):
    p = write(tmp_path, "s:\n  count: '2'\n")
    with pytest.raises(ParamsError, match=r"s\.count: expected int, got '2'"):
        load_section("s", Section, p)
    with pytest.raises(ParamsError, match=r"s\.count: expected int"):
        build(Section, {"count": True}, "s")  # bools are not ints


def test_literal_and_optional(tmp_path):
    assert build(Section, {"count": 1, "limit": None}, "s").limit is None
    with pytest.raises(ParamsError, match=r"s\.mode: expected one of 'budget', 'token_mean'"):
        build(Section, {"count": 1, "mode": "seq"}, "s")


def test_missing_section_and_missing_key(tmp_path):
    p = write(tmp_path, "other: {}\n")
    with pytest.raises(ParamsError, match="missing section 's'"):
        load_section("s", Section, p)
    with pytest.raises(ParamsError, match=r"s\.count: missing required key"):
        build(Section, {}, "s")
