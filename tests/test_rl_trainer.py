"""The RL loop on a tiny trained MoE: smoke run, budget accounting, zero signal, resume, stage.

Run as a script (``python tests/test_rl_trainer.py MODEL_DIR RESUME_DIR OUT_JSON``) it is the child
process of the kill -9 resume test.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.engines import make_engine  # noqa: E402
from pipeline.engines.fixtures import tiny_trained_moe, toy_examples  # noqa: E402
from pipeline.engines.scoring import length_chunks, policy_forward  # noqa: E402
from pipeline.model.checkpoint import load_model, save_checkpoint  # noqa: E402
from pipeline.rl import trainer  # noqa: E402
from pipeline.rl.budget import group_advantages  # noqa: E402
from pipeline.rl.optim import make_updater  # noqa: E402
from pipeline.rl.params import RLOptim, RLParams  # noqa: E402
from pipeline.rl.rollout import rollout, score  # noqa: E402
from pipeline.rl.trainer import FAULT_ENV, RLRun, rl_step, train  # noqa: E402
from pipeline.verify.result import Score  # noqa: E402

TIMING = ("time_", "cpu_", "tokens_per_s")  # wall and CPU seconds vary run to run


def toy_tasks() -> list[dict]:
    """'add a and b' prompts; the answer is the number inside the reference's \\boxed{}."""
    return [{"id": str(i), "domain": "math", "prompt": p, "answer": r.split("boxed{")[1][:-1]}
            for i, (p, r) in enumerate(toy_examples())]


def toy_score(tasks, texts):
    """1 if the response holds \\boxed{<the sum>}, else 0 (stands in for the verifier)."""
    hits = [f"\\boxed{{{t['answer']}}}" in x for t, x in zip(tasks, texts, strict=True)]
    return [Score(float(h), h, "ok" if h else "wrong") for h in hits]


def make_run(params: RLParams, seed: int = 3, score_fn=toy_score, model_dir: str | None = None
             ) -> RLRun:
    torch.manual_seed(seed)
    model, tok = load_model(model_dir) if model_dir else tiny_trained_moe()
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    model.train()
    updater = make_updater(model, params.optim, params.steps * params.updates_per_rollout,
                           params.deepspeed)
    engine = make_engine("torch", model=updater.local, tokenizer=tok)
    return RLRun(params, seed, tok, updater, reference, engine, toy_tasks(), score_fn)


SMALL = dict(steps=2, prompts_per_step=4, samples_per_prompt=4, max_new_tokens=24,
             eval_tasks=8, eval_samples=1, eval_every=2, checkpoint_every=2,
             holdout_prompts=0, max_rollout_rounds=1)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_two_steps_change_every_parameter_with_exact_budget():
    # Large budget share, no zero-variance dropping and strong MoE losses: every tensor gets
    # a gradient (balance loss reaches every router row; the trained tokens reach the experts).
    p = RLParams(**{**SMALL, "prompts_per_step": 8}, token_budget=240, drop_zero_variance=False,
                 deepspeed=True, updates_per_rollout=2,
                 balance_coef=1e-2, z_coef=1e-3,
                 optim=RLOptim(lr=1e-2, zero_stage=1, warmup_ratio=0.0))
    run = make_run(p)
    before = {n: t.detach().clone() for n, t in run.updater.module.named_parameters()}
    # which expert slices got a nonzero gradient in some backward: an expert gets one only from
    # trained (unmasked) tokens routed to it, and which experts those are depends on the float
    # rounding of the machine
    expert_params = {n: t for n, t in run.updater.module.named_parameters() if "experts" in n}
    got_grad: dict[str, set[int]] = {}
    hooks = []
    for n, t in expert_params.items():
        def record(g, n=n):
            got_grad.setdefault(n, set()).update(g.flatten(1).abs().sum(1).nonzero().flatten().tolist())
        hooks.append(t.register_hook(record))
    rows = [rl_step(run, s) for s in (1, 2)]
    for h in hooks:
        h.remove()
    for r in rows:
        assert r["tokens_generated"] > 240  # supply exceeds Φ, so exactly Φ are trained
        assert r["tokens_trained"] == 240 and r["tokens_selected"] == 240
        assert r["tokens_dropped"] == r["tokens_generated"] - 240
        assert r["logprob_mismatch_abs"] < 1e-4  # same torch model samples and trains
    unchanged = [n for n, t in run.updater.module.named_parameters()
                 if torch.equal(t.detach(), before[n])]
    assert unchanged == []
    # experts are stacked in one tensor per layer: every expert slice with a gradient moved,
    # and most slices had one (the check is not a vacuous one)
    slices = sum(t.shape[0] for t in expert_params.values())
    assert sum(len(v) for v in got_grad.values()) >= 0.75 * slices, got_grad
    for n, t in expert_params.items():
        for e in sorted(got_grad.get(n, ())):
            assert not torch.equal(t[e].detach(), before[n][e]), f"{n}[{e}] unchanged"


def test_zero3_in_one_process_trains_as_zero0():
    # An update runs several forwards (length-sorted chunks; a chunk's shared prompts apart
    # from its responses) before its one backward: ZeRO-3 must reduce every gradient once
    # (DeepSpeed's leaf MoE blocks are off: pipeline/rl/optim.py) and give ZeRO-0's step.
    p = RLParams(**SMALL, token_budget=150, drop_zero_variance=False, deepspeed=True,
                 forward_rows=3, kl_coef=0.05, optim=RLOptim(lr=5e-3, warmup_ratio=0.0))
    def parity(tasks, texts):  # rewards with variance in every group
        return [Score(float(len(x) % 2), bool(len(x) % 2), "") for x in texts]

    rows = {}
    for zero in (0, 3):
        run = make_run(dataclasses.replace(p, optim=dataclasses.replace(p.optim,
                                                                         zero_stage=zero)),
                       score_fn=parity)
        assert run.updater.partitioned == (zero == 3)
        rows[zero] = [rl_step(run, s) for s in (1, 2)]
    (z0, _), (z3, second) = rows[0], rows[3]
    assert z0["tokens_trained"] == z3["tokens_trained"] == 150.0 and z0["grad_norm"] > 0.1
    for k in ("loss", "grad_norm", "entropy"):
        assert z3[k] == pytest.approx(z0[k], rel=1e-5, abs=1e-8), k
    assert second["tokens_trained"] == 150.0 and second["grad_norm"] > 0


def test_no_signal_means_no_update():
    # All rewards equal -> A = 0; with KL, entropy and MoE terms off the loss has zero
    # gradient, and AdamW (no weight decay) then leaves every weight exactly where it was.
    p = RLParams(**SMALL, token_budget=64, drop_zero_variance=False, deepspeed=False,
                 kl_coef=0.0, entropy_coef=0.0, balance_coef=0.0, z_coef=0.0)
    run = make_run(p, score_fn=lambda tasks, texts: [Score(1.0, True, "")] * len(texts))
    before = {n: t.detach().clone() for n, t in run.updater.module.named_parameters()}
    row = rl_step(run, 1)
    assert row["zero_variance_groups"] == 4 and row["grad_norm"] == 0.0
    assert all(torch.equal(t, before[n]) for n, t in run.updater.module.named_parameters())


def test_zero_variance_groups_dropped_before_budget():
    p = RLParams(**SMALL, token_budget=64, drop_zero_variance=True, deepspeed=False)
    run = make_run(p, score_fn=lambda tasks, texts: [Score(0.0, False, "")] * len(texts))
    row = rl_step(run, 1)
    assert row["zero_variance_groups"] == 4
    assert row["tokens_selected"] == 0 and row["optimizer_steps"] == 0


def test_second_update_sees_a_real_ratio():
    # updates_per_rollout=2 on the same Φ tokens: old log-probs are from before update 1, so
    # update 2's ratio differs from 1 (update 1's is exactly 1).
    p = RLParams(**SMALL, token_budget=80, drop_zero_variance=False, deepspeed=False,
                 updates_per_rollout=2, optim=RLOptim(lr=2e-2, warmup_ratio=0.0))
    row = rl_step(make_run(p), 1)
    assert row["optimizer_steps"] == 2
    assert abs(row["ratio_mean"] - 1.0) > 1e-4


class _GradOnly:
    """An updater that only back-propagates (records the gradient, never steps)."""

    def __init__(self, module):
        self.module, self.grads = module, None

    def forward_model(self):
        return self.module

    def step(self, loss):
        self.module.zero_grad(set_to_none=True)
        loss.backward()
        self.grads = {n: t.grad.clone() for n, t in self.module.named_parameters()
                      if t.grad is not None}
        return 0.0


@pytest.mark.parametrize("normaliser", ["budget", "token_mean", "seq_mean"])
def test_chunked_update_equals_one_pass(normaliser):
    # The update's forward runs in length-sorted chunks of forward_rows rows; the loss (and so
    # the gradient) must equal one forward over the whole mini-batch. MoE losses are off: they
    # are averaged over chunks, not summed, so only the policy/KL/entropy terms are exact.
    base = RLParams(**SMALL, token_budget=150, drop_zero_variance=False, deepspeed=False,
                    normaliser=normaliser, balance_coef=0.0, z_coef=0.0, entropy_coef=0.01,
                    kl_coef=0.1)
    run = make_run(base)
    tasks = run.tasks[:4]
    ro = rollout(run.engine, run.tokenizer, tasks, k=4, max_new_tokens=24, temperature=1.0,
                 top_p=1.0, seed=5)
    ro.rewards, ro.correct = score(run.score_fn, ro.tasks, ro.texts, ro.k)
    adv, zero_var = group_advantages(ro.rewards)
    sel = trainer._select(run, ro, zero_var, 1)
    with torch.no_grad():  # move the policy off the reference so the KL term is not zero
        for t in run.updater.module.parameters():
            t.add_(1e-2 * torch.randn_like(t))
    mb = trainer._minibatch(run, ro, adv, sel.minibatches[0], score_old=True)
    assert len({len(c) for c in mb.completion_ids}) > 1 and len(mb.completion_ids) > 6
    out = {}
    for rows in (1000, 3):
        run.params = dataclasses.replace(base, forward_rows=rows)
        run.updater = _GradOnly(run.updater.module)
        stats = trainer._update(run, mb)
        out[rows] = (stats, run.updater.grads)
    (one, g1), (chunked, g3) = out[1000], out[3]
    assert one["loss"] == pytest.approx(chunked["loss"], rel=1e-5, abs=1e-7)
    for k in ("kl", "entropy", "ratio_mean", "tokens_trained"):
        assert one[k] == pytest.approx(chunked[k], rel=1e-5)
    assert g1.keys() == g3.keys()
    for n in g1:
        torch.testing.assert_close(g3[n], g1[n], rtol=1e-4, atol=1e-7)


def test_shared_prompt_forward_equals_one_row_per_prompt():
    # Groups of rows share a prompt: running each prompt once and repeating its KV cache must
    # give the same log-probs, entropies and gradients as running every row in full.
    model, tok = tiny_trained_moe()
    g = torch.Generator().manual_seed(0)
    prompts = [[int(x) for x in torch.randint(5, 200, (n,), generator=g)] for n in (7, 12, 9)]
    rows_p, rows_c = [], []
    for i, p in enumerate(prompts):
        for j in range(3):  # responses of 1..11 tokens, one of 1 token (no second forward part)
            rows_p.append(p)
            n = 1 + (i * 3 + j * 5) % 11
            rows_c.append([int(x) for x in torch.randint(5, 200, (n,), generator=g)])
    out = {}
    for share in (False, True):
        model.zero_grad()
        f = policy_forward(model, rows_p, rows_c, tok.pad_token_id, with_entropy=True,
                           with_router=True, share_prompts=share)
        weights = torch.linspace(-1, 1, f.logp.shape[1])
        ((f.logp * weights).sum() + f.entropy.sum()).backward()
        grads = {n: t.grad.clone() for n, t in model.named_parameters() if t.grad is not None}
        out[share] = (f, grads)
    (full, g_full), (shared, g_shared) = out[False], out[True]
    torch.testing.assert_close(shared.logp, full.logp, rtol=0, atol=1e-5)
    torch.testing.assert_close(shared.entropy, full.entropy, rtol=0, atol=1e-5)
    assert torch.equal(shared.mask, full.mask)
    assert g_full.keys() == g_shared.keys() and len(g_full) > 10
    for n in g_full:  # float32 sums in another order: tolerance relative to the tensor's scale
        scale = float(g_full[n].abs().max())
        torch.testing.assert_close(g_shared[n], g_full[n], rtol=1e-4, atol=1e-4 * scale)
    # router rows: each distinct prompt's tokens once, then the response tokens fed as input
    # (the widest response's last token is never input; shorter rows feed all theirs)
    width = max(len(c) for c in rows_c)
    fed = sum(min(len(c), width - 1) for c in rows_c)
    assert float(shared.attention.sum()) == sum(len(p) for p in prompts) + fed
    assert shared.router_logits[0].shape[0] == shared.attention.numel()


def test_length_chunks_keep_a_prompts_rows_together():
    prompts = [[1, 2], [3, 4, 5], [1, 2], [6, 7], [3, 4, 5], [6, 7]]
    comps = [[9] * n for n in (5, 1, 2, 3, 4, 1)]
    # by prompt length, then prompt, then response length
    assert length_chunks(prompts, comps, 10) == [[2, 0, 5, 3, 1, 4]]
    assert length_chunks(prompts, comps, 4) == [[2, 0, 5, 3], [1, 4]]


def test_first_update_supplies_old_logprobs():
    # Without a scoring pass the first update takes its old log-probs from its own forward:
    # the loss, the gradients and the stored old log-probs must equal the scored path's.
    base = RLParams(**SMALL, token_budget=150, drop_zero_variance=False, deepspeed=False,
                    kl_coef=0.1, entropy_coef=0.01, forward_rows=3)
    run = make_run(base)
    ro = rollout(run.engine, run.tokenizer, run.tasks[:4], k=4, max_new_tokens=24,
                 temperature=1.0, top_p=1.0, seed=5)
    ro.rewards, ro.correct = score(run.score_fn, ro.tasks, ro.texts, ro.k)
    adv, zero_var = group_advantages(ro.rewards)
    assert not zero_var.all()
    pairs = trainer._select(run, ro, zero_var, 1).minibatches[0]
    out = {}
    for score_old in (True, False):
        mb = trainer._minibatch(run, ro, adv, pairs, score_old=score_old)
        assert (mb.old_logp is None) == (not score_old)
        run.updater = _GradOnly(run.updater.module)
        out[score_old] = (trainer._update(run, mb), run.updater.grads, mb.old_logp)
    (scored, g_s, old_s), (inline, g_i, old_i) = out[True], out[False]
    torch.testing.assert_close(old_i, old_s, rtol=0, atol=1e-5)
    assert inline["loss"] == pytest.approx(scored["loss"], rel=1e-5, abs=1e-7)
    assert inline["ratio_mean"] == 1.0 and inline["clip_fraction"] == 0.0
    for n in g_s:
        torch.testing.assert_close(g_i[n], g_s[n], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("temperature", [0.6, 1.4])
def test_trainer_logprobs_follow_the_sampling_temperature(temperature):
    # The engine reports log_softmax(logits / T) for the tokens it samples; the trainer's
    # old log-probs (the first update's forward) must be the same numbers.
    p = RLParams(**SMALL, token_budget=10_000, drop_zero_variance=False, deepspeed=False,
                 temperature=temperature, optim=RLOptim(lr=0.0))
    row = rl_step(make_run(p), 1)
    assert row["tokens_trained"] > 20
    assert row["logprob_mismatch_abs"] < 1e-5


def test_reference_follows_the_policys_device_and_dtype():
    from pipeline.rl.stage import frozen_like

    model, _ = tiny_trained_moe()
    policy = copy.deepcopy(model).to(torch.bfloat16)
    ref = frozen_like(copy.deepcopy(model), policy)
    assert {t.dtype for t in ref.parameters()} == {torch.bfloat16}
    assert not any(t.requires_grad for t in ref.parameters()) and not ref.training
    on_meta = copy.deepcopy(model).to("meta")
    ref = frozen_like(copy.deepcopy(model), on_meta)
    assert {t.device.type for t in ref.parameters()} == {"meta"}


def test_stage_builds_the_reference_after_the_optimizer_moves_the_policy(tmp_path, monkeypatch):
    # build_run: the optimizer setup may move and cast the policy (bf16 on a GPU); the
    # reference must be built after it, from the same weights, in the policy's dtype.
    from pipeline.rl import stage

    model, tok = tiny_trained_moe()
    save_checkpoint(model, tok, tmp_path / "m")

    def cast_to_bf16(policy, optim, total_steps, deepspeed):
        policy.to(torch.bfloat16)
        return make_updater(policy, optim, total_steps, False)

    monkeypatch.setattr(stage, "make_updater", cast_to_bf16)
    run = stage.build_run(RLParams(**SMALL, deepspeed=False), 1, str(tmp_path / "m"),
                          toy_tasks(), toy_score)
    assert next(run.reference.parameters()).dtype == torch.bfloat16
    for (n, a), (_, b) in zip(run.reference.named_parameters(),
                              run.updater.module.named_parameters(), strict=True):
        assert torch.equal(a, b.detach()), n


def test_dynamic_sampling_rolls_out_until_the_budget_holds_signal():
    # Only tasks with an even id can be rewarded unevenly; the others always score 0 (zero
    # variance). With a budget larger than one round's signal, further rounds are drawn.
    def score_fn(tasks, texts):
        return [Score(float(int(t["id"]) % 2 == 0 and i % 2 == 0), True, "")
                for i, (t, _) in enumerate(zip(tasks, texts, strict=True))]

    base = {k: v for k, v in SMALL.items() if k != "max_rollout_rounds"} | {"prompts_per_step": 2}
    one = rl_step(make_run(RLParams(**base, token_budget=200, deepspeed=False,
                                    max_rollout_rounds=1),
                           score_fn=score_fn), 1)
    assert one["rollout_rounds"] == 1 and one["prompts_drawn"] == 2
    # one round's signal falls short of the budget, and the row says by how much
    assert one["tokens_selected"] < 200
    assert one["budget_fill"] == pytest.approx(one["tokens_selected"] / 200)
    run = make_run(RLParams(**base, token_budget=200, deepspeed=False, max_rollout_rounds=4),
                   score_fn=score_fn)
    many = rl_step(run, 1)
    assert many["rollout_rounds"] > 1
    assert many["prompts_drawn"] == 2 * many["rollout_rounds"] == run.stream.cursor
    assert many["tokens_selected"] >= one["tokens_selected"]
    # a budget the first round fills: no extra round
    small = rl_step(make_run(RLParams(**base, token_budget=8, deepspeed=False,
                                      max_rollout_rounds=4), score_fn=score_fn), 1)
    assert small["rollout_rounds"] == 1 and small["tokens_trained"] == 8
    assert small["budget_fill"] == 1.0


def test_placebo_trains_on_shuffled_rewards_but_logs_the_real_ones():
    def by_length(tasks, texts):  # a reward that depends on the response, with variance
        return [Score(float(len(x) % 2), bool(len(x) % 2), "") for x in texts]

    p = dict(SMALL, token_budget=400, drop_zero_variance=False, deepspeed=False)
    real = rl_step(make_run(RLParams(**p), score_fn=by_length), 1)
    run = make_run(RLParams(**p, placebo=True), score_fn=by_length)
    placebo = rl_step(run, 1)
    assert real["zero_variance_groups"] < 4
    assert placebo["reward"] == real["reward"]  # same samples, same verdicts, logged as they are
    assert placebo["zero_variance_groups"] == real["zero_variance_groups"]
    assert placebo["loss"] != real["loss"]  # the update saw other advantages


def _comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in rows]


@pytest.mark.integration
def test_kill9_resume_reproduces_uninterrupted_run(tmp_path):
    model, tok = tiny_trained_moe()
    save_checkpoint(model, tok, tmp_path / "model")  # every child starts from the same bytes

    from tests.conftest import RANK_ENV  # here: this file also runs as a child script

    def child(resume: Path, out: Path, kill_at: int | None) -> tuple[int, str]:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        # a DeepSpeed init in this pytest process set the rank env (and holds MASTER_PORT):
        # the child must set up its own single-process group
        for key in (FAULT_ENV, *RANK_ENV):
            env.pop(key, None)
        if kill_at is not None:
            env[FAULT_ENV] = str(kill_at)
        cmd = [sys.executable, __file__, str(tmp_path / "model"), str(resume), str(out)]
        r = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
        return r.returncode, r.stderr[-3000:]

    rc, err = child(tmp_path / "a", tmp_path / "a.json", None)
    assert rc == 0, err
    rc, err = child(tmp_path / "b", tmp_path / "b.json", 2)
    assert rc == -signal.SIGKILL, err
    assert json.loads((tmp_path / "b" / "state.json").read_text())["step"] == 2
    assert not (tmp_path / "b.json").exists()
    rc, err = child(tmp_path / "b", tmp_path / "b.json", None)
    assert rc == 0, err
    a, b = (json.loads((tmp_path / f"{x}.json").read_text()) for x in "ab")
    assert len(a["steps"]) == 4 and len(a["evals"]) == 3
    assert _comparable(a["steps"]) == _comparable(b["steps"])
    assert a["evals"] == b["evals"]
    assert a["weights"] == pytest.approx(b["weights"], abs=0.0)


def _child_main(model_dir: str, resume: str, out: str) -> None:
    """4 DeepSpeed steps with checkpoints every 2; writes the history and a weight digest."""
    torch.set_num_threads(1)
    p = RLParams(**{**SMALL, "steps": 4}, token_budget=100, deepspeed=True,
                 optim=RLOptim(lr=5e-3, zero_stage=1, warmup_ratio=0.0), updates_per_rollout=2,
                 budget_granularity="minibatch", walk_order="shuffled")
    run = make_run(p, model_dir=model_dir)
    hist = train(run, toy_tasks()[:8], Path(resume), fingerprint="test")
    weights = [float(t.detach().double().sum()) for t in run.updater.module.parameters()]
    Path(out).write_text(json.dumps({"steps": hist.steps, "evals": hist.evals,
                                     "weights": weights}))


if __name__ == "__main__":
    _child_main(sys.argv[1], sys.argv[2], sys.argv[3])


STAGE_PARAMS = """\
seed: 5
rl_reasoning:
  steps: 3
  prompts_per_step: 4
  samples_per_prompt: 4
  max_new_tokens: 24
  token_budget: 100
  drop_zero_variance: false
  deepspeed: false
  eval_every: 2
  eval_tasks: 6
  checkpoint_every: 2
  reward_workers: 1
"""


@pytest.mark.integration
def test_stage_main_writes_outputs_with_real_verifier(tmp_path, monkeypatch):
    import polars as pl

    from pipeline.schema import TASK, frame, make_task
    from pipeline.stages import rl_reasoning

    monkeypatch.setenv("RINGLITE_TRACKING", "off")
    model, tok = tiny_trained_moe()
    save_checkpoint(model, tok, tmp_path / "selected")
    rows = [make_task("math", t["prompt"], {"answer": t["answer"]}, "toy", split="rl")
            for t in toy_tasks()]
    val = rows[:4] + [make_task("ifeval", "say hi", {"constraints": []}, "toy", split="val")]
    frame(rows, TASK).write_parquet(tmp_path / "rl.parquet")
    frame(val, TASK).write_parquet(tmp_path / "val.parquet")
    (tmp_path / "params.yaml").write_text(STAGE_PARAMS)
    out, rep = tmp_path / "out", tmp_path / "rep"
    rl_reasoning.main(["--model", str(tmp_path / "selected"), "--tasks", str(tmp_path / "rl.parquet"),
                       "--val", str(tmp_path / "val.parquet"), "--out", str(out),
                       "--report-dir", str(rep), "--params", str(tmp_path / "params.yaml")])
    assert (out / "config.json").exists() and (out / "resume" / "state.json").exists()
    steps = pl.read_csv(rep / "steps.csv")
    trained = steps.filter(pl.col("step") > 0)
    assert trained.height == 3 and trained["tokens_trained"].to_list() == [100.0] * 3
    assert steps.filter(pl.col("step") == 0)["eval_accuracy"].len() == 1
    metrics = json.loads((rep / "metrics.json").read_text())
    assert metrics["steps"] == 3 and "final_eval_accuracy_math" in metrics
    assert "eval_accuracy_ifeval" not in steps.columns  # held-out restricted to the group
    assert (rep / "reward_curve.png").stat().st_size > 1000
    loaded, _ = load_model(out)  # the final folder is a loadable HF checkpoint
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in model.parameters())


def test_stratified_eval_sample_covers_every_domain_deterministically():
    from pipeline.rl.stage import stratified

    rows = [{"id": f"a{i}", "domain": "a"} for i in range(10)] + [
        {"id": f"b{i}", "domain": "b"} for i in range(2)] + [
        {"id": f"c{i}", "domain": "c"} for i in range(10)]
    got = stratified(rows, 7, seed=3)
    counts = {d: sum(r["domain"] == d for r in got) for d in "abc"}
    assert counts == {"a": 3, "b": 2, "c": 2}  # turns a,b,c,a,b,c then a (b runs out)
    assert got == stratified(rows, 7, seed=3)
    assert len({r["id"] for r in got}) == 7
    assert stratified(rows, 100, seed=3).__len__() == 22
