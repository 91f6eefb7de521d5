"""GPU check: SFT steps of a ~1B-parameter MoE from config (bf16 + ZeRO), then vLLM rollouts.

Run through ``scripts/gpu_check.sh``. Two phases in separate processes (vLLM wants the GPU to
itself):

- ``train OUT``: builds a qwen2_moe of :data:`SIZES` (``GPU_CHECK_SMALL=1``: a tiny one for a
  CPU smoke run), trains ``steps`` DeepSpeed steps on packed rows of random samples, prints
  tokens/s and MFU (model FLOPs utilisation: ``6 * active_params + 12 * layers * hidden *
  seq`` FLOPs per token over the peak, ``GPU_PEAK_TFLOPS``, default 989 = H100/H200 dense bf16),
  and saves the model + a tokenizer to ``OUT`` for phase 2.
- ``vllm OUT``: loads ``OUT`` in vLLM and times ``prompts x max_new_tokens`` sampled tokens
  (``ignore_eos``: random weights never stop on their own), printing generated tokens/s.
- ``rl OUT``: a few C3PO steps of the RL loop (:mod:`pipeline.rl.trainer`) on ``OUT``: the
  policy in DeepSpeed (bf16, ZeRO ``GPU_CHECK_ZERO``), the frozen reference on the policy's
  device and dtype, rollouts from vLLM with the policy's weights synced in memory after every
  step (the torch engine where vLLM is missing), a reward with variance in every group (the
  parity of the response's length) so every step trains exactly Φ tokens. Prints per step
  the tokens trained, step time, rollout/train split, tokens/s and the engine/trainer
  log-prob mismatch (mean |Δ log p| and k3 KL over the trained tokens).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

SIZES = {
    # 1.08B total / 0.35B active: 16 layers x (24 routed experts top-4 + 1 shared expert)
    "big": dict(hidden_size=1024, num_hidden_layers=16, num_attention_heads=16,
                num_key_value_heads=4, num_experts=24, num_experts_per_tok=4,
                moe_intermediate_size=704, shared_expert_intermediate_size=2816,
                intermediate_size=2816, vocab_size=32000, max_position_embeddings=8192,
                row_tokens=8192, steps=12, warmup=3, prompts=256, max_new_tokens=256,
                rl_prompts=32, rl_k=8, rl_budget=32768, rl_steps=4),
    "small": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, num_experts=4, num_experts_per_tok=2,
                  moe_intermediate_size=64, shared_expert_intermediate_size=128,
                  intermediate_size=128, vocab_size=512, max_position_embeddings=1024,
                  row_tokens=512, steps=4, warmup=1, prompts=8, max_new_tokens=32,
                  rl_prompts=4, rl_k=4, rl_budget=128, rl_steps=3),
}
RUN_KEYS = ("row_tokens", "steps", "warmup", "prompts", "max_new_tokens", "rl_prompts", "rl_k",
            "rl_budget", "rl_steps")


def sizes() -> dict:
    return SIZES["small" if os.environ.get("GPU_CHECK_SMALL") == "1" else "big"]


def active_params(cfg) -> tuple[int, int]:
    """(total, active per token) parameters, embeddings excluded from active."""
    from transformers import Qwen2MoeForCausalLM

    model = Qwen2MoeForCausalLM(cfg) if not isinstance(cfg, torch.nn.Module) else cfg
    total = sum(p.numel() for p in model.parameters())
    routed = sum(p.numel() for n, p in model.named_parameters() if ".mlp.experts." in n)
    embed = model.get_input_embeddings().weight.numel()
    frac = cfg.num_experts_per_tok / cfg.num_experts
    return total, int(total - embed - routed + routed * frac)


def tokenizer(vocab_size: int):
    from pipeline.model.tokenizer import train_tokenizer

    texts = [f"Task {i}: add {i} and {i * 3} then think step by step." for i in range(500)]
    return train_tokenizer(texts, vocab_size=min(vocab_size, 1024), min_frequency=1)


def train(out: Path) -> None:
    from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

    from pipeline.train.deepspeed_engine import OptimParams, init_engine
    from pipeline.train.packing import Sample, pack_row
    from pipeline.train.sft import train_step

    s = sizes()
    cfg = Qwen2MoeConfig(**{k: v for k, v in s.items() if k not in RUN_KEYS},
                         decoder_sparse_step=1, router_aux_loss_coef=0.001)
    torch.manual_seed(0)
    model = Qwen2MoeForCausalLM(cfg)
    total, active = active_params(model)
    print(f"model: {total / 1e6:.1f}M params, {active / 1e6:.1f}M active per token, "
          f"experts impl {cfg._experts_implementation}, attn {cfg._attn_implementation}")
    zero = int(os.environ.get("GPU_CHECK_ZERO", "2"))
    engine = init_engine(model, OptimParams(lr=1e-4, zero_stage=zero), total_steps=s["steps"])
    g = torch.Generator().manual_seed(0)

    def row():
        samples, n = [], 0
        while n < s["row_tokens"]:
            k = min(int(torch.randint(64, s["row_tokens"] // 4, (1,), generator=g)),
                    s["row_tokens"] - n)
            ids = torch.randint(0, cfg.vocab_size, (k,), generator=g).tolist()
            samples.append(Sample(tuple(ids), tuple([False] * (k // 2) + [True] * (k - k // 2))))
            n += k
        return pack_row(samples)

    tokens, seconds = 0, 0.0
    for i in range(s["steps"]):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        m = train_step(engine, [row()], 0.001)
        if i >= s["warmup"]:
            tokens += m["tokens"]
            seconds += m["tokens"] / m["tokens_per_s"]
        print(f"step {i}: loss {m['loss']:.3f} grad_norm {m['grad_norm']:.3f} "
              f"{m['tokens_per_s']:.0f} tokens/s")
    tps = tokens / seconds
    flops_per_token = 6 * active + 12 * cfg.num_hidden_layers * cfg.hidden_size * s["row_tokens"]
    peak = float(os.environ.get("GPU_PEAK_TFLOPS", "989")) * 1e12
    mfu = tps * flops_per_token / peak
    mem = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
    mfu_s = f"MFU {mfu:.2%} (peak {peak / 1e12:.0f} TFLOPS)" if mem else "MFU n/a on CPU"
    print(f"SFT train: {tps:.0f} tokens/s, {mfu_s}, "
          f"ZeRO-{zero}, bf16={engine.bfloat16_enabled()}, peak mem {mem:.1f} GiB")
    engine.module.to(torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    engine.module.save_pretrained(out)
    tokenizer(cfg.vocab_size).save_pretrained(out)
    (out / "train.json").write_text(json.dumps({"tokens_per_s": tps, "mfu": mfu}))


def rollouts(out: Path) -> None:
    from vllm import LLM, SamplingParams

    s = sizes()
    cpu = not torch.cuda.is_available()
    llm = LLM(model=str(out), dtype="bfloat16" if not cpu else "float32", seed=0,
              enforce_eager=cpu, max_model_len=1024 if cpu else 4096,
              gpu_memory_utilization=0.1 if cpu else 0.6)
    prompts = [f"Task {i}: add {i} and {i * 3}" for i in range(s["prompts"])]
    sp = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=s["max_new_tokens"],
                        ignore_eos=True, seed=0)
    llm.generate(prompts[:2], sp)  # warm-up
    t0 = time.perf_counter()
    outs = llm.generate(prompts, sp)
    seconds = time.perf_counter() - t0
    n = sum(len(o.outputs[0].token_ids) for o in outs)
    print(f"vLLM rollouts: {n} tokens in {seconds:.1f} s = {n / seconds:.0f} tokens/s "
          f"({len(prompts)} prompts x {s['max_new_tokens']} new tokens)")


def length_parity(tasks, texts):
    from pipeline.verify.result import Score

    return [Score(float(len(x) % 2), bool(len(x) % 2), "") for x in texts]


def rl(out: Path) -> None:
    """A few C3PO steps on the phase-1 model (see the module docstring)."""
    from pipeline.engines import make_engine
    from pipeline.model.checkpoint import load_model
    from pipeline.rl.optim import make_updater
    from pipeline.rl.params import RLOptim, RLParams
    from pipeline.rl.stage import frozen_like
    from pipeline.rl.trainer import RLRun, rl_step

    s = sizes()
    zero = int(os.environ.get("GPU_CHECK_ZERO", "2"))
    p = RLParams(steps=s["rl_steps"], prompts_per_step=s["rl_prompts"],
                 samples_per_prompt=s["rl_k"], max_new_tokens=s["max_new_tokens"],
                 token_budget=s["rl_budget"], max_rollout_rounds=1, deterministic=False,
                 optim=RLOptim(lr=1e-6, zero_stage=zero, warmup_ratio=0.0))
    torch.manual_seed(0)
    policy, tok = load_model(str(out))
    policy = policy.float().train()
    upd = make_updater(policy, p.optim, p.steps, True)
    reference = frozen_like(load_model(str(out))[0], upd.module)
    param = next(upd.module.parameters())
    print(f"RL: policy {param.dtype} on {param.device}, reference "
          f"{next(reference.parameters()).dtype} on {next(reference.parameters()).device}, "
          f"ZeRO-{zero}")
    try:
        import vllm  # noqa: F401

        with upd.full_weights():  # ZeRO-3: the first sync needs the whole weights too
            engine = make_engine("vllm", model_path=str(out), model=upd.module,
                                 max_model_len=1024 if not torch.cuda.is_available() else 4096,
                                 llm_kwargs={"gpu_memory_utilization": 0.35}
                                 if torch.cuda.is_available() else None)
        kind = "vLLM, weights synced in memory"
    except ImportError:
        engine = make_engine("torch", model=upd.local, tokenizer=tok)
        kind = "torch engine (vLLM not installed)"
    tasks = [{"id": str(i), "domain": "math", "prompt": f"Task {i}: add {i} and {i * 3}"}
             for i in range(256)]
    run = RLRun(p, 0, tok, upd, reference, engine, tasks, length_parity)
    print(f"RL rollouts: {kind}; L={p.prompts_per_step} K={p.samples_per_prompt} "
          f"max_new_tokens={p.max_new_tokens} Φ={p.token_budget}")
    for step in range(1, p.steps + 1):
        r = rl_step(run, step)
        print(f"RL step {step}: trained {r['tokens_trained']:.0f} of "
              f"{r['tokens_generated']:.0f} tokens, step {r['time_step_s']:.2f} s (rollout "
              f"{r['time_rollout_s']:.2f}, train {r['time_train_s']:.2f}), "
              f"{r['tokens_per_s']:.0f} tokens/s, log-prob mismatch |Δ| "
              f"{r['logprob_mismatch_abs']:.2e} KL {r['logprob_mismatch_kl']:.2e}, "
              f"grad_norm {r['grad_norm']:.3f}")
    engine.close()


if __name__ == "__main__":
    phase, folder = sys.argv[1], Path(sys.argv[2])
    folder.mkdir(parents=True, exist_ok=True)
    {"train": train, "vllm": rollouts, "rl": rl}[phase](folder)
