"""Curation core: validation reasons, normalisation, dedup, decontamination, splits, balance.

Expected outcomes of the planted rows are derived by hand in tests/fixtures/curate/planted.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "curate"))
from planted import MATH_ROWS, write_planted  # noqa: E402

from pipeline.curation.config import CurateParams, SplitParams, UserFile, ValidationParams  # noqa: E402
from pipeline.curation.core import CurateError, balance, check_bad_share, curate  # noqa: E402
from pipeline.curation.ingest import file_candidates  # noqa: E402
from pipeline.curation.normalize import normalize, numbers_key_expr  # noqa: E402
from pipeline.curation.split import split_pool  # noqa: E402
from pipeline.curation.validate import check_task  # noqa: E402
from pipeline.params import build  # noqa: E402
from pipeline.schema import QUARANTINE, TASK, validate  # noqa: E402


def test_normalise_folds_case_punctuation_space_but_keeps_numbers_and_operators():
    a, b, c, d = normalize(
        ["What is 12+7.5?  Tom!", "what IS 12 + 7.5 tom", "What is 13+7.5? Tom", "x\t=\n2.0."]
    )
    assert a == b == "what is 12 + 7.5 tom"
    assert c == "what is 13 + 7.5 tom" != a
    assert d == "x = 2.0"
    keys = pl.DataFrame({"n": [a, c]}).select(numbers_key_expr("n"))["n"].to_list()
    assert keys == ["12 + 7.5", "13 + 7.5"]


@pytest.mark.parametrize(
    ("prompt", "reference", "field", "reason"),
    [
        ("", {"answer": "1"}, "prompt", "empty_prompt"),
        ("What\x00 is 1+1?", {"answer": "2"}, "prompt", "control_chars"),
        ("What is \ud800 1+1?", {"answer": "2"}, "prompt", "invalid_utf8"),
        ("What is \ufffd?", {"answer": "2"}, "prompt", "invalid_utf8"),
        ("y" * 101, {"answer": "2"}, "prompt", "prompt_too_long"),
        ("What is 1+1?", {}, "reference", "no_reference"),
        ("What is 1+1?", {"answer": ""}, "reference.answer", "no_reference"),
        ("What is 1+1?", {"answer": True}, "reference.answer", "wrong_type"),
        ("Pick one: (A) 2 (B) 3", {"answer": "A"}, "prompt", "multiple_choice"),
        ("True or false: 2 is even.", {"answer": "T"}, "prompt", "true_false"),
        ("Is 2 even?", {"answer": "Yes."}, "prompt", "yes_no"),
    ],
)
def test_check_task_rejects_with_field_and_reason(prompt, reference, field, reason):
    rej = check_task("math", prompt, reference, max_prompt_chars=100)
    assert (rej.field, rej.reason) == (field, reason)


def test_check_task_passes_good_rows_and_knows_domains():
    assert check_task("math", "What is 1+1?", {"answer": 2}, 100) is None
    assert (
        check_task("code", "Write f.", {"entry_point": "f", "tests": ["assert f()"]}, 100) is None
    )
    assert check_task("poetry", "Hi", {"answer": "x"}, 100).reason == "unknown_domain"
    assert (
        check_task("code", "Write f.", {"entry_point": "f", "tests": "x"}, 100).reason
        == "wrong_type"
    )


def _planted_params(tmp_path: Path, **over) -> CurateParams:
    files = write_planted(tmp_path)
    raw = {
        "user_files": files,
        "validation": {"max_prompt_chars": 500, "max_bad_share": 0.9},
        **over,
    }
    return build(CurateParams, raw, "test")


def _candidates(params: CurateParams, root: Path) -> list[dict]:
    return [c for spec in params.user_files for c in file_candidates(spec, root)]


def test_planted_rows_each_caught_with_the_right_reason(tmp_path):
    params = _planted_params(tmp_path)
    res = curate(_candidates(params, tmp_path), params, seed=0)
    q = res.frames["quarantine"].filter(pl.col("source_file") == "user/math.jsonl")
    got_q = dict(zip(q["row"].to_list(), q["reason"].to_list(), strict=True))
    want_q = {i: r for i, (_, r) in enumerate(MATH_ROWS) if 7 <= i <= 17}
    assert got_q == want_q
    assert q.filter(pl.col("row") == 10)["field"].item() == "answer"
    assert q.filter(pl.col("row") == 11)["field"].item() == "reference.answer"
    assert json.loads(q.filter(pl.col("row") == 9)["raw"].item())["answer"] == "yes"

    dropped = res.frames["dropped"]
    math = dropped.filter(pl.col("origin") == "user/math.jsonl")
    meta = {json.loads(m)["source_row"]: r for m, r in math.select("meta", "reason").iter_rows()}
    assert (
        meta[4] == "bench_exact" and meta[5] == "bench_ngram" and meta[6] == "bench_near_duplicate"
    )
    # rows 0, 1, 2 form one cluster: one exact duplicate and one near duplicate are dropped
    assert sorted(meta[i] for i in (0, 1, 2) if i in meta) == ["exact_duplicate", "near_duplicate"]
    assert set(meta) - {0, 1, 2} == {4, 5, 6}
    by_reason = dropped.group_by("reason").len().sort("reason")
    assert dict(by_reason.iter_rows()) == {
        "bench_exact": 1,
        "bench_near_duplicate": 1,
        "bench_ngram": 1,
        "exact_duplicate": 2,
        "near_duplicate": 1,  # math 0/1 pair, bench rows 3/4
    }
    # every dropped row points at a row that was kept (representative or benchmark item)
    kept_ids = set(pl.concat([res.frames[s] for s in ("sft", "rl", "val", "bench")])["id"])
    assert set(dropped["matched_id"]) <= kept_ids


def test_numbers_differ_only_problems_are_kept(tmp_path):
    params = _planted_params(tmp_path)
    res = curate(_candidates(params, tmp_path), params, seed=0)
    pool = pl.concat([res.frames[s] for s in ("sft", "rl", "val")])
    rows = {json.loads(m)["source_row"] for m in pool.filter(pl.col("domain") == "math")["meta"]}
    # 3 differs from 0 only in a number: kept next to the one survivor of the 0/1/2 cluster
    assert 3 in rows and 18 in rows and len(rows & {0, 1, 2}) == 1


def test_counts_balance_and_match_hand_counts(tmp_path):
    params = _planted_params(tmp_path)
    res = curate(_candidates(params, tmp_path), params, seed=0)
    s = res.stats
    assert s["balanced"] is True
    assert (s["rows_in"], s["kept"], s["dropped"], s["quarantined"]) == (27, 9, 6, 12)
    assert s["by_origin"]["user/math.jsonl"] == {
        "in": 19,
        "kept": 3,
        "dropped": 5,
        "quarantined": 11,
    }
    assert s["by_origin"]["user/code.jsonl"] == {"in": 3, "kept": 2, "dropped": 0, "quarantined": 1}
    assert s["by_origin"]["user/bench.jsonl"] == {
        "in": 5,
        "kept": 4,
        "dropped": 1,
        "quarantined": 0,
    }
    # math 3 rows: val round(0.3)=0, rl round(0.9)=1, sft 2; code 2: 0, round(0.6)=1, 1
    assert s["by_split"] == {"sft": 3, "rl": 2, "val": 0, "bench": 4}
    for name in ("sft", "rl", "val", "bench"):
        validate(res.frames[name], TASK, name)
        assert set(res.frames[name]["split"]) <= {name}
    validate(res.frames["quarantine"], QUARANTINE, "quarantine")
    broken = {**s, "kept": s["kept"] - 1}
    with pytest.raises(CurateError, match="do not balance"):
        balance(broken)


def test_bad_share_above_threshold_fails_naming_file_and_rows(tmp_path):
    params = _planted_params(tmp_path)
    res = curate(_candidates(params, tmp_path), params, seed=0)
    rows_in = {o: c["in"] for o, c in res.stats["by_origin"].items()}
    check_bad_share(res.frames["quarantine"], rows_in, 0.9)  # math 11/19 = 58%, code 1/3 = 33%
    with pytest.raises(
        CurateError,
        match=r"user/math\.jsonl: 11 of 19 rows \(58%\).*row 7 field prompt: multiple_choice",
    ):
        check_bad_share(res.frames["quarantine"], rows_in, 0.5)


def test_user_file_parquet_and_field_mapping(tmp_path):
    pl.DataFrame({"q": ["What is 2 + 5?", ""], "a": [7, 1], "lvl": ["easy", "hard"]}).write_parquet(
        tmp_path / "m.parquet"
    )
    spec = UserFile(
        path="m.parquet",
        domain="math",
        prompt_field="q",
        reference_fields={"answer": "a"},
        meta_fields=("lvl",),
    )
    cands = file_candidates(spec, tmp_path)
    assert cands[0]["reference"] == {"answer": 7} and cands[0]["meta"] == {
        "lvl": "easy",
        "source_row": 0,
    }
    params = CurateParams(user_files=(spec,), validation=ValidationParams(max_bad_share=1.0))
    res = curate(cands, params, seed=0)
    assert res.frames["quarantine"]["reason"].to_list() == ["empty_prompt"]
    task = pl.concat([res.frames[s] for s in ("sft", "rl", "val")]).row(0, named=True)
    assert json.loads(task["reference"]) == {"answer": 7} and task["source"] == "file:m.parquet"


def test_split_shares_per_domain_are_rounded_and_deterministic():
    rows = [
        {"id": f"{d}{i:03d}", "domain": d}
        for d in ("math", "code")
        for i in range(50 if d == "math" else 7)
    ]
    df = pl.DataFrame(rows)
    a = split_pool(df, SplitParams(sft=0.6, rl=0.3, val=0.1), seed=3)
    b = split_pool(df.reverse(), SplitParams(sft=0.6, rl=0.3, val=0.1), seed=3)
    counts = dict(
        a.group_by("domain", "split")
        .len()
        .select(pl.concat_str("domain", "split"), "len")
        .iter_rows()
    )
    # math 50: val 5, rl 15, sft 30; code 7: val round(0.7)=1, rl round(2.1)=2, sft 4
    assert counts == {
        "mathval": 5,
        "mathrl": 15,
        "mathsft": 30,
        "codeval": 1,
        "coderl": 2,
        "codesft": 4,
    }
    assert a.sort("id").equals(b.sort("id"))


def test_split_by_domain_overrides_shares_for_named_domains_only():
    rows = [{"id": f"{d}{i:03d}", "domain": d} for d in ("math", "ifeval") for i in range(50)]
    df = pl.DataFrame(rows)
    base = SplitParams(sft=0.6, rl=0.3, val=0.1)
    plain = split_pool(df, base, seed=3)
    over = split_pool(df, base, seed=3, by_domain={"ifeval": SplitParams(sft=0.3, rl=0.6, val=0.1)})
    counts = dict(over.group_by("domain", "split").len()
                  .select(pl.concat_str("domain", "split"), "len").iter_rows())
    # ifeval 50: val 5, rl 30, sft 15 (the override); math keeps 5 / 15 / 30
    assert counts == {"ifevalval": 5, "ifevalrl": 30, "ifevalsft": 15,
                      "mathval": 5, "mathrl": 15, "mathsft": 30}
    # the same seeded order: math rows land exactly where they did without the override,
    # and ifeval's val rows (first in the order, same share) are unchanged too
    key = ["id", "split"]
    assert over.filter(pl.col("domain") == "math").sort("id").select(key).equals(
        plain.filter(pl.col("domain") == "math").sort("id").select(key))
    assert set(over.filter((pl.col("domain") == "ifeval") & (pl.col("split") == "val"))["id"]) == \
        set(plain.filter((pl.col("domain") == "ifeval") & (pl.col("split") == "val"))["id"])


def test_split_by_domain_errors_name_the_domain():
    with pytest.raises(ValueError, match=r"curate.split_by_domain.ifeval: shares must .* = 1.1"):
        CurateParams(split_by_domain={"ifeval": SplitParams(sft=0.5, rl=0.5, val=0.1)})
    rows = [{"id": f"m{i}", "domain": "math", "prompt": f"What is {i} + {i + 1}?",
             "reference": {"answer": 2 * i + 1}, "source": "gen:math", "origin": "gen:math",
             "row": i, "raw": "", "role": "train"} for i in range(20)]
    params = CurateParams(split_by_domain={"ifevel": SplitParams(sft=0.3, rl=0.6, val=0.1)})
    with pytest.raises(ValueError, match=r"curate.split_by_domain.ifevel: the training pool has "
                                         r"no rows of domain 'ifevel' \(domains: \['math'\]\)"):
        curate(rows, params, seed=1)


def test_exact_copies_follow_their_own_roles_representative():
    """Regression (found at ifeval n=1200): item A is in the training pool twice and in the
    benchmark twice, and in both roles A is near-duplicated away in favour of B (smaller id).
    Each role's extra copy of A must be dropped once, pointing at B; joining the exact copies
    against both roles' near-dup drops counted each twice and the stage failed to balance."""
    from pipeline.schema import make_task

    words = ("please write a short friendly note for the team about the plan for the next "
             "quarter and mention the budget the hiring and the office move in plain words").split()
    a = make_task("open_qa", " ".join(words), {"answer": "x"}, "t")
    b = next(t for t in (make_task("open_qa", " ".join(words[:-1] + [w]), {"answer": "x"}, "t")
                         for w in ("terms", "speech", "language", "english", "style", "form"))
             if t["id"] < a["id"])
    rows = []
    for role in ("train", "bench"):
        for i, t in enumerate((a, a, b)):
            rows.append({**t, "reference": json.loads(t["reference"]), "origin": f"{role}.jsonl",
                         "row": i, "raw": "", "role": role})
    res = curate(rows, CurateParams(), seed=0)
    assert res.frames["quarantine"].height == 0
    d = res.frames["dropped"]
    got = sorted(zip(d["origin"], d["reason"], d["id"] == a["id"], d["matched_id"], strict=True))
    # per role: one exact copy of A -> B, A itself near-dup -> B; then the training B is the
    # benchmark's B (bench_exact). Nothing is counted twice, so the stage balanced.
    assert got == sorted([
        ("train.jsonl", "exact_duplicate", True, b["id"]),
        ("train.jsonl", "near_duplicate", True, b["id"]),
        ("train.jsonl", "bench_exact", False, b["id"]),
        ("bench.jsonl", "exact_duplicate", True, b["id"]),
        ("bench.jsonl", "near_duplicate", True, b["id"]),
    ])
    assert res.frames["bench"]["id"].to_list() == [b["id"]]
