"""The training experts forward (pipeline.model.experts) against transformers' own.

The reference is transformers' ``grouped_mm`` experts forward and autograd's gradients
through it: outputs must be identical, gradients bit-identical at top-2 (a sum of two terms
does not depend on the order), and equal to float rounding at top-3.
"""

from __future__ import annotations

import copy

import torch

from pipeline.model import (
    ModelParams,
    build_tiny_moe,
    experts,
    load_model,
    save_checkpoint,
    tiny_test_model,
)
from pipeline.model.experts import IMPLEMENTATION, _Gather
from pipeline.model.tiny import TINY_PARAMS


def _loss_and_grads(model, ids):
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, labels=ids, output_router_logits=True)
    (out.loss + 0.01 * out.aux_loss).backward()
    return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _pair(top_k: int):
    model, tok = tiny_test_model()
    if top_k != TINY_PARAMS.experts_per_token:
        from dataclasses import replace

        model = build_tiny_moe(replace(TINY_PARAMS, experts_per_token=top_k), tok, seed=1)
    ours = model.train()
    theirs = copy.deepcopy(ours)
    theirs.set_experts_implementation("grouped_mm")
    assert ours.config._experts_implementation == IMPLEMENTATION
    ids = torch.randint(3, len(tok), (3, 40), generator=torch.Generator().manual_seed(top_k))
    return ours, theirs, ids


def test_top2_outputs_and_gradients_bit_identical(monkeypatch):
    ours, theirs, ids = _pair(2)
    calls = []
    apply = experts._Gather.apply
    monkeypatch.setattr(experts._Gather, "apply", lambda *a: calls.append(1) or apply(*a))
    logits_a, grads_a = _loss_and_grads(ours, ids)
    assert len(calls) == 2 * TINY_PARAMS.num_layers  # ours ran: two gathers per MoE layer
    calls.clear()
    logits_b, grads_b = _loss_and_grads(theirs, ids)
    assert not calls  # and the reference did not
    assert torch.equal(logits_a, logits_b)
    expert_grads = [n for n in grads_a if ".experts." in n]
    assert expert_grads and all(grads_a[n].abs().sum() > 0 for n in expert_grads)
    for name in grads_a:
        assert torch.equal(grads_a[name], grads_b[name]), name


def test_top3_gradients_equal_to_rounding():
    ours, theirs, ids = _pair(3)
    logits_a, grads_a = _loss_and_grads(ours, ids)
    logits_b, grads_b = _loss_and_grads(theirs, ids)
    assert torch.equal(logits_a, logits_b)
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-5, atol=1e-7)


def test_gather_backward_sums_each_rows_copies():
    # x has 3 rows, each gathered twice in a scrambled order; by hand: grad of row r is the
    # sum of the output gradients at the two positions that hold row r
    x = torch.arange(6.0).view(3, 2).requires_grad_()
    index = torch.tensor([2, 0, 1, 0, 2, 1])
    inverse = torch.tensor([1, 3, 2, 5, 0, 4])  # where each row's two copies sit
    assert index[inverse].tolist() == [0, 0, 1, 1, 2, 2]
    out = _Gather.apply(x, index, inverse, 2)
    assert torch.equal(out, x.detach()[index])
    g = torch.tensor([[1.0, 10], [2, 20], [3, 30], [4, 40], [5, 50], [6, 60]])
    out.backward(g)
    # row 0 sits at positions 1 and 3, row 1 at 2 and 5, row 2 at 0 and 4
    assert x.grad.tolist() == [[6.0, 60.0], [9.0, 90.0], [6.0, 60.0]]


def test_loaded_and_built_models_use_it(tmp_path):
    model, tok = tiny_test_model()
    assert model.config._experts_implementation == IMPLEMENTATION
    folder = save_checkpoint(model, tok, tmp_path / "m")
    assert "experts_implementation" not in (folder / "config.json").read_text()
    loaded, _ = load_model(folder)
    assert loaded.config._experts_implementation == IMPLEMENTATION
    built = build_tiny_moe(ModelParams(num_layers=1), tok)
    assert built.config._experts_implementation == IMPLEMENTATION
