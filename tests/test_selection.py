"""Entropy-band checkpoint selection: the pure rule on hand-written tables, and the entropy
measure against a hand-computed distribution."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.selection.entropy import mean_token_entropy, policy_entropy
from pipeline.selection.rule import Candidate, band_distance, choose


def cand(epoch: int, entropy: float, acc: float = 0.5) -> Candidate:
    return Candidate(f"models/sft/epoch_{epoch}", epoch, entropy, acc)


# ---- the rule ---------------------------------------------------------------------------
def test_single_checkpoint_in_band_is_chosen():
    table = [cand(1, 0.62), cand(2, 0.41), cand(3, 0.22)]
    c = choose(table, 0.3, 0.5)
    assert (c.candidate.epoch, c.in_band, c.warning) == (2, True, "")


def test_tie_break_latest_vs_best_accuracy():
    # epochs 2 and 3 are in [0.3, 0.5]; epoch 2 validates better, epoch 3 is later
    table = [cand(1, 0.7, 0.2), cand(2, 0.48, 0.6), cand(3, 0.33, 0.5), cand(4, 0.2, 0.9)]
    assert choose(table, 0.3, 0.5, "latest").candidate.epoch == 3
    assert choose(table, 0.3, 0.5, "best_accuracy").candidate.epoch == 2


def test_best_accuracy_tie_goes_to_later_epoch():
    table = [cand(1, 0.45, 0.5), cand(2, 0.35, 0.5)]
    assert choose(table, 0.3, 0.5, "best_accuracy").candidate.epoch == 2


def test_band_edges_are_inclusive():
    assert choose([cand(1, 0.5), cand(2, 0.9)], 0.3, 0.5).candidate.epoch == 1
    assert choose([cand(1, 0.9), cand(2, 0.3)], 0.3, 0.5).candidate.epoch == 2


def test_none_in_band_picks_closest_with_warning():
    # distances to [0.3, 0.5]: 0.9 -> 0.4, 0.58 -> 0.08, 0.21 -> 0.09
    table = [cand(1, 0.9), cand(2, 0.58), cand(3, 0.21)]
    c = choose(table, 0.3, 0.5)
    assert c.candidate.epoch == 2 and not c.in_band
    assert "no checkpoint in band" in c.warning and "0.0800" in c.warning


def test_equal_distance_outside_band_prefers_later_epoch():
    table = [cand(1, 0.6), cand(2, 0.2)]  # both 0.1 away
    assert choose(table, 0.3, 0.5).candidate.epoch == 2


def test_nan_entropy_is_never_preferred():
    c = choose([cand(1, float("nan")), cand(2, 3.0)], 0.3, 0.5)
    assert c.candidate.epoch == 2


def test_band_distance_values():
    assert band_distance(0.4, 0.3, 0.5) == 0.0
    assert band_distance(0.1, 0.3, 0.5) == pytest.approx(0.2)
    assert band_distance(0.75, 0.3, 0.5) == pytest.approx(0.25)


def test_rule_rejects_bad_input():
    with pytest.raises(ValueError, match="no SFT checkpoints"):
        choose([], 0.3, 0.5)
    with pytest.raises(ValueError, match="low=0.6 > high=0.5"):
        choose([cand(1, 0.4)], 0.6, 0.5)
    with pytest.raises(ValueError, match="unknown tie_break"):
        choose([cand(1, 0.4), cand(2, 0.45)], 0.3, 0.5, "random")  # type: ignore[arg-type]


# ---- the entropy measure ----------------------------------------------------------------
class FixedLogits(torch.nn.Module):
    """A 'model' whose next-token logits depend only on the current token id (a lookup table)."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = torch.nn.Parameter(table.clone(), requires_grad=False)

    def forward(self, input_ids, attention_mask=None, position_ids=None, logits_to_keep=0):
        logits = self.table[input_ids]  # (B, T, V)
        if logits_to_keep:  # HF semantics: only the last positions' logits (0 = all)
            logits = logits[:, -logits_to_keep:]
        return type("Out", (), {"logits": logits})()


def test_policy_entropy_matches_hand_computed_distributions():
    # vocab 4. After token 1 the policy is uniform over 4 (H = ln 4); after token 2 it puts
    # probability 1/2, 1/4, 1/8, 1/8 (H = 1.75 bits = 1.75 ln 2); after token 3 it is uniform
    # over two tokens (H = ln 2). Token 0 = pad.
    neg = -1e9
    table = torch.tensor([
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
        [math.log(4), math.log(2), 0.0, 0.0],
        [0.0, 0.0, neg, neg],
    ])
    model = FixedLogits(table)
    # sample A: prompt [1], completion [2, 3]: distributions after 1 and after 2
    # sample B: prompt [1, 2] (longer: left padding), completion [3, 1]: after 2, after 3
    h_uniform4, h_skewed, h_two = math.log(4), 1.75 * math.log(2), math.log(2)
    mean, tokens = policy_entropy(model, [[1], [1, 2]], [[2, 3], [3, 1]], pad_id=0)
    assert tokens == 4
    assert mean == pytest.approx((h_uniform4 + 2 * h_skewed + h_two) / 4, rel=1e-6)


def test_mean_token_entropy_weights_tokens_not_samples():
    per = [torch.tensor([1.0, 1.0, 1.0]), torch.tensor([4.0])]
    assert mean_token_entropy(per) == pytest.approx(7.0 / 4)  # sample mean would be 2.5
    assert math.isnan(mean_token_entropy([torch.zeros(0)]))


# ---- which RL prompts the entropy is measured on ------------------------------------------
def test_group_rows_keeps_the_domain_group_of_the_rl_stage():
    import polars as pl

    from pipeline.schema import TASK, frame
    from pipeline.stages.select import group_rows
    from pipeline.tasks import generate

    tasks = generate("math", 3, seed=1) + generate("ifeval", 2, seed=1) + generate("code", 2, seed=1)
    df = pl.DataFrame(frame(tasks, TASK))
    assert group_rows(df, "reasoning", "rl.parquet")["domain"].to_list() == ["math"] * 3 + ["code"] * 2
    assert group_rows(df, "general", "rl.parquet")["domain"].to_list() == ["ifeval"] * 2
    assert group_rows(df, "all", "rl.parquet").height == 7
    only_math = df.filter(pl.col("domain") == "math")
    with pytest.raises(ValueError, match=r"rl\.parquet: no RL prompts of domain group 'general'.*\['math'\]"):
        group_rows(only_math, "general", "rl.parquet")


# ---- the select stage end to end (tiny MoE, real torch engine, real verifier) ------------
@pytest.mark.integration
def test_select_stage_writes_choice_table_and_plot(tmp_path, monkeypatch):
    import json

    import polars as pl
    import yaml

    from pipeline.model import load_model, save_checkpoint, tiny_test_model
    from pipeline.schema import TASK, frame
    from pipeline.stages import select
    from pipeline.tasks import generate

    torch.set_num_threads(1)
    monkeypatch.setenv("RINGLITE_TRACKING", "off")
    monkeypatch.chdir(tmp_path)
    model, tok = tiny_test_model()
    save_checkpoint(model, tok, "sft/epoch_1")
    with torch.no_grad():  # sharper logits -> strictly lower entropy at every position
        model.lm_head.weight.mul_(4.0)
    save_checkpoint(model, tok, "sft/epoch_2")
    (tmp_path / "sft" / "epoch_2" / "latest").write_text("global_step9")  # DeepSpeed leftover
    tasks = generate("math", 6, seed=1)
    # ifeval prompts too: the default domain_group (reasoning) must leave them out
    pl.DataFrame(frame(tasks + generate("ifeval", 6, seed=1), TASK)).write_parquet("rl.parquet")
    pl.DataFrame(frame(tasks[:3], TASK)).write_parquet("val.parquet")
    params = {"seed": 3, "select": {"prompts": 4, "samples_per_prompt": 2, "max_new_tokens": 12,
                                    "val_prompts": 3, "band_low": 0.0, "band_high": 0.0}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    measured = select.measure
    seen_domains: set[str] = set()

    def spy(path, epoch, rl, *args, **kw):
        seen_domains.update(r["domain"] for r in rl)
        return measured(path, epoch, rl, *args, **kw)

    monkeypatch.setattr(select, "measure", spy)
    select.main(["--sft", "sft", "--tasks", "rl.parquet", "--val", "val.parquet",
                 "--out", "selected", "--report-dir", "rep"])
    assert seen_domains == {"math"}

    table = pl.read_csv("rep/checkpoints.csv").sort("epoch")
    assert table["epoch"].to_list() == [1, 2]
    e1, e2 = table["entropy"].to_list()
    assert 0 < e2 < e1 <= math.log(len(tok)) + 1e-4  # bounded by the uniform distribution
    assert table["val_accuracy"].to_list() == [0.0, 0.0]  # an untrained model solves nothing
    # band [0, 0] holds no checkpoint: the closest (lowest entropy) is chosen, with a warning
    choice = json.loads((tmp_path / "selected" / "choice.json").read_text())
    assert choice["epoch"] == 2 and choice["in_band"] is False and choice["warning"]
    assert choice["entropy"] == pytest.approx(e2)
    assert table["chosen"].to_list() == [False, True]
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert metrics["chosen_epoch"] == 2 and metrics["checkpoints"] == 2
    assert (tmp_path / "rep" / "entropy.png").stat().st_size > 1000
    assert not (tmp_path / "selected" / "latest").exists()
    copied, _ = load_model(tmp_path / "selected")
    assert torch.equal(copied.lm_head.weight, model.lm_head.weight)
