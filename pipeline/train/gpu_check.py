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
                row_tokens=8192, steps=12, warmup=3, prompts=256, max_new_tokens=256),
    "small": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, num_experts=4, num_experts_per_tok=2,
                  moe_intermediate_size=64, shared_expert_intermediate_size=128,
                  intermediate_size=128, vocab_size=512, max_position_embeddings=1024,
                  row_tokens=512, steps=4, warmup=1, prompts=8, max_new_tokens=32),
}
RUN_KEYS = ("row_tokens", "steps", "warmup", "prompts", "max_new_tokens")


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


if __name__ == "__main__":
    phase, folder = sys.argv[1], Path(sys.argv[2])
    folder.mkdir(parents=True, exist_ok=True)
    {"train": train, "vllm": rollouts}[phase](folder)
