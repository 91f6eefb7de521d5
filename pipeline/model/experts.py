"""Routed experts for training: transformers' grouped-matmul forward, a cheaper backward.

transformers' ``grouped_mm`` experts forward sorts the (token, expert) pairs by expert, gathers
each pair's hidden state with ``hidden_states[perm // top_k]``, runs two grouped matmuls, and
puts the pairs back in token order with ``out[inverse_perm]``. Autograd differentiates each
gather as a scatter-add (``index_put_`` with ``accumulate=True``), which on CPU takes ~0.7 ms
per call for a 1,024-token micro-batch of the default model: about 8% of an SFT step.

Both gathers here are inverted by gathers. ``perm`` is a permutation, so the gradient of
``x[perm]`` is ``grad[inverse_perm]``, and a token's ``top_k`` copies are summed as a reshape
``(tokens, top_k, hidden).sum(1)``. The forward runs the same ops as transformers' (same
sort, same grouped matmuls, same order), so outputs are identical. With ``top_k`` = 2 (the
default model) the gradients are bit-identical too: each token's gradient is the sum of its
two copies, and a sum of two floats does not depend on the order. With a larger ``top_k``
they differ from transformers' scatter-add in the order of the summands only.

:func:`use_grouped_experts` switches a loaded model to it (``pipeline.model.load_model`` and
``build_tiny_moe`` do). What this forward does not cover runs transformers' own ``grouped_mm``
forward: tensors off the CPU (GPUs keep transformers' kernels), hidden states in another
dtype than the expert weights, and experts with biases, transposed or ungated weights or
expert parallelism.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers.integrations.moe import ExpertsInterface, grouped_mm_experts_forward

IMPLEMENTATION = "ringlite_grouped_mm"


class _Gather(torch.autograd.Function):
    """``x[index]`` where ``index`` lists every row of ``x`` ``repeat`` times, given
    ``inverse`` with ``index[inverse]`` = rows in order, each repeated ``repeat`` times."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor,
                repeat: int) -> torch.Tensor:
        ctx.save_for_backward(inverse)
        ctx.repeat, ctx.rows = repeat, x.shape[0]
        return x[index]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (inverse,) = ctx.saved_tensors
        grad = grad[inverse]
        if ctx.repeat > 1:
            grad = grad.view(ctx.rows, ctx.repeat, -1).sum(1)
        return grad, None, None, None


def _covered(experts: Any, hidden_states: torch.Tensor) -> bool:
    return (
        getattr(experts, "has_gate", False)
        and not getattr(experts, "has_bias", True)
        and not getattr(experts, "is_transposed", True)
        and not getattr(experts, "_is_expert_parallel", True)
        and hasattr(F, "grouped_mm")
        and hidden_states.dtype == experts.gate_up_proj.dtype
        and hidden_states.device.type == "cpu"
    )


def grouped_experts_forward(experts: Any, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                            top_k_weights: torch.Tensor) -> torch.Tensor:
    """Routed experts of ``hidden_states`` (tokens, hidden); see the module docstring."""
    if not _covered(experts, hidden_states):
        return grouped_mm_experts_forward(experts, hidden_states, top_k_index, top_k_weights)
    tokens, hidden = hidden_states.shape
    top_k = top_k_index.shape[-1]
    expert_ids, perm = torch.sort(top_k_index.reshape(-1))  # the pairs grouped by expert
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel(), device=perm.device)
    x = _Gather.apply(hidden_states, perm // top_k, inverse, top_k)
    weights = top_k_weights.reshape(-1)[perm]
    counts = torch.histc(expert_ids.float(), bins=experts.num_experts, min=0,
                         max=experts.num_experts - 1)
    offsets = torch.cumsum(counts, dim=0, dtype=torch.int32)
    h = F.grouped_mm(x, experts.gate_up_proj.transpose(-2, -1), offs=offsets)
    h = experts._apply_gate(h)
    h = F.grouped_mm(h, experts.down_proj.transpose(-2, -1), offs=offsets)
    h = _Gather.apply(h * weights.unsqueeze(-1), inverse, perm, 1)  # back to token order
    return h.view(tokens, top_k, hidden).sum(dim=1)


ExpertsInterface.register(IMPLEMENTATION, grouped_experts_forward)


def use_grouped_experts(model: Any) -> Any:
    """Run ``model``'s routed experts through :func:`grouped_experts_forward` (no-op for models
    without transformers' switchable experts, by transformers' own test); returns ``model``."""
    can_set = getattr(model, "_can_set_experts_implementation", None)
    if can_set is not None and can_set():
        model.set_experts_implementation(IMPLEMENTATION)
    return model
