"""init_engine: ZeRO-0 and ZeRO-1 train alike and report the pre-clip gradient norm (each engine
in a child process: see run_child).

The reference is plain torch: AdamW with the same parameter groups and schedule, and
``torch.nn.utils.clip_grad_norm_`` before each step.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys

import pytest
import torch

from pipeline.train.deepspeed_engine import (
    OptimParams,
    grad_norm,
    init_engine,
    lr_lambda,
    param_groups,
    whole_copy,
    whole_model,
)
from tests.conftest import RANK_ENV, REPO

STEPS = 4


def tiny_model():
    from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

    cfg = Qwen2MoeConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, moe_intermediate_size=32,
        shared_expert_intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, num_experts=4, num_experts_per_tok=2, max_position_embeddings=64,
    )
    torch.manual_seed(0)
    return Qwen2MoeForCausalLM(cfg)


def batches():
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 64, (2, 24), generator=g) for _ in range(STEPS)]


def loss_of(model, ids):
    return model(input_ids=ids, labels=ids).loss


def reference(model, cfg: OptimParams):
    """(pre-clip norms, final weights) of plain torch AdamW with clipping."""
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr,
                            betas=tuple(cfg.betas), eps=cfg.eps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_lambda(STEPS, cfg.warmup_ratio, cfg.min_lr_ratio))
    norms = []
    for ids in batches():
        opt.zero_grad()
        loss_of(model, ids).backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)))
        opt.step()
        sched.step()
    return norms, {k: v.detach().clone() for k, v in model.state_dict().items()}


def with_deepspeed(model, cfg: OptimParams):
    engine = init_engine(model, cfg, total_steps=STEPS, micro_batch_size=2)
    norms = []
    for ids in batches():
        engine.backward(loss_of(engine, ids))
        engine.step()
        norms.append(grad_norm(engine))
    return norms, {k: v.detach().clone() for k, v in engine.module.state_dict().items()}


def check_stage(stage: int) -> None:
    """The comparison itself; runs in a child process (see the test below)."""
    torch.set_num_threads(1)
    base = tiny_model()
    cfg = OptimParams(lr=1e-2, weight_decay=0.1, warmup_ratio=0.25, min_lr_ratio=0.1,
                      grad_clip=0.5, zero_stage=stage, precision="fp32")
    ref_norms, ref_w = reference(copy.deepcopy(base), cfg)
    assert ref_norms[0] > cfg.grad_clip  # clipping is active, so a missed clip would show
    ds_norms, ds_w = with_deepspeed(copy.deepcopy(base), cfg)
    assert ds_norms == pytest.approx(ref_norms, rel=1e-4)
    moved = 0.0
    for k, v in ref_w.items():
        torch.testing.assert_close(ds_w[k], v, rtol=1e-4, atol=1e-5, msg=k)
        moved = max(moved, float((v - base.state_dict()[k]).abs().max()))
    assert moved > 1e-3  # the weights did change
    print(f"stage {stage} ok: norms {[round(n, 4) for n in ds_norms]}")


def check_zero3_whole_model() -> None:
    """ZeRO-3 partitions the weights in place (each parameter of ``engine.module`` is empty
    outside a gather): what the SFT stage saves and evaluates is rank 0's whole copy, which
    must hold the trained weights, equal to plain torch AdamW's (as ZeRO 0 and 1 are above)."""
    torch.set_num_threads(1)
    base = tiny_model()
    cfg = OptimParams(lr=1e-2, weight_decay=0.1, warmup_ratio=0.25, min_lr_ratio=0.1,
                      grad_clip=0.5, zero_stage=3, precision="fp32")
    _, ref_w = reference(copy.deepcopy(base), cfg)
    model = copy.deepcopy(base)
    assert whole_copy(model, cfg, rank=1) is None  # only rank 0 keeps one
    whole = whole_copy(model, cfg, rank=0)
    engine = init_engine(model, cfg, total_steps=STEPS, micro_batch_size=2)
    assert all(t.numel() == 0 for t in engine.module.parameters())
    for ids in batches():
        engine.backward(loss_of(engine, ids))
        engine.step()
    with whole_model(engine, whole) as got:
        assert got is whole
        weights = got.state_dict()
        # ZeRO-3 reduces its partitions' gradients in another order: every weight within
        # 1.8e-5 of AdamW's after 4 steps that moved each by about 3e-2
        for k, v in ref_w.items():
            torch.testing.assert_close(weights[k], v, rtol=1e-4, atol=1e-4, msg=k)
        moved = max(float((weights[k] - v).abs().max()) for k, v in base.state_dict().items())
        assert moved > 1e-3  # trained weights, not the copy's starting ones
    zero0 = init_engine(copy.deepcopy(base), dataclasses.replace(cfg, zero_stage=0),
                        total_steps=STEPS)
    with whole_model(zero0, None) as same:
        assert same is zero0.module
    print("zero3 whole model ok")


def run_child(code: str, env_extra: dict[str, str] | None = None):
    """Run ``code`` in a fresh interpreter at the repo root, one rank, one thread.

    DeepSpeed keeps process groups and group caches in module globals; another in-process
    user of torch.distributed (vLLM's engine tests tear down the default group) would leave
    them stale for later tests. A child process keeps this file's engines to itself.
    """
    env = {k: v for k, v in os.environ.items() if k not in RANK_ENV}
    env |= {"OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300, cwd=REPO)


@pytest.mark.parametrize("stage", [0, 1])
def test_zero_stage_matches_torch_adamw_with_clipping(stage):
    out = run_child(f"from tests.test_deepspeed_engine import check_stage; check_stage({stage})")
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"stage {stage} ok" in out.stdout


def test_one_cpu_rank_skips_the_shared_memory_op_build(tmp_path):
    """A fresh extensions cache stays empty: no JIT build of deepspeed_shm_comm for one rank."""
    code = (
        "import torch\n"
        "from pipeline.train.deepspeed_engine import OptimParams, grad_norm, init_engine\n"
        "import deepspeed.comm.comm as dist\n"
        "m = torch.nn.Linear(4, 2)\n"
        "e = init_engine(m, OptimParams(zero_stage=0, precision='fp32'), total_steps=2)\n"
        "loss = e(torch.ones(1, 4)).sum()\n"
        "e.backward(loss); e.step()\n"
        "print('shm', dist.cdb.shm_comm_op, 'norm', round(grad_norm(e), 4))\n"
    )
    ext = tmp_path / "ext"
    out = run_child(code, {"TORCH_EXTENSIONS_DIR": str(ext)})
    assert out.returncode == 0, out.stderr[-3000:]
    # d(sum(Wx + b))/dW = ones(2, 4), /db = ones(2): norm sqrt(10) = 3.1623
    assert "shm None norm 3.1623" in out.stdout
    assert not any(ext.rglob("*shm*")), sorted(p.name for p in ext.rglob("*"))


def test_zero3_saves_and_evaluates_whole_weights():
    out = run_child("from tests.test_deepspeed_engine import check_zero3_whole_model; "
                    "check_zero3_whole_model()")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "zero3 whole model ok" in out.stdout
