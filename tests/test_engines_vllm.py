"""The vLLM engine: the same contract as the torch engine, and exact weight sync for our MoE.

One engine (started in this process, ~15-30 s) serves every test of the module. References:
the torch engine and a teacher-forced forward pass on the same weights.
"""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch
from test_engines import (
    QUESTIONS,
    check_both_finish_reasons,
    check_logprobs_match_scoring,
    check_seeds,
    check_shapes,
)

from pipeline.engines import make_engine
from pipeline.engines.fixtures import save_model, tiny_trained_moe
from pipeline.engines.vllm_engine import checkpoint_tensors, worker_reload
from pipeline.model.chat import format_prompt

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed"),
]

GREEDY = dict(n=1, max_new_tokens=24, temperature=0.0, top_p=1.0, seed=0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    model, tok = tiny_trained_moe()
    folder = save_model(model, tok, str(tmp_path_factory.mktemp("tiny_moe")))
    engine = make_engine("vllm", model_path=folder)
    torch.set_num_threads(1)
    yield model, tok, engine, folder
    engine.close()


@pytest.fixture(scope="module")
def prompts(setup):
    return [format_prompt(setup[1], q) for q in QUESTIONS]


def assert_same_greedy(vllm_out, torch_out, tol: float = 1e-4) -> None:
    for v, t in zip(vllm_out, torch_out, strict=True):
        assert v[0].token_ids == t[0].token_ids
        assert v[0].finish_reason == t[0].finish_reason
        worst = max(abs(a - b) for a, b in zip(v[0].logprobs, t[0].logprobs, strict=True))
        assert worst < tol, worst


def perturbed(model: torch.nn.Module, scale: float, seed: int) -> torch.nn.Module:
    out = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))
    return out


def test_vllm_shapes_and_both_finish_reasons(setup, prompts):
    model, tok, engine, _ = setup
    check_both_finish_reasons(engine, prompts, tok)
    check_shapes(engine.generate(prompts, n=2, max_new_tokens=1, temperature=1.0, top_p=1.0,
                                 seed=0), prompts, 2, 1, tok)


def test_vllm_seeds_repeatable(setup, prompts):
    check_seeds(setup[2], prompts)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_vllm_logprobs_match_teacher_forcing(setup, prompts, temperature):
    model, tok, engine, _ = setup
    check_logprobs_match_scoring(engine, model, tok, prompts, temperature)


def test_vllm_greedy_equals_torch(setup, prompts):
    model, tok, engine, _ = setup
    torch_engine = make_engine("torch", model=model, tokenizer=tok)
    assert_same_greedy(engine.generate(prompts, **GREEDY), torch_engine.generate(prompts, **GREEDY))


def test_vllm_weight_sync_exact_for_moe(setup, prompts, tmp_path):
    model, tok, engine, _ = setup
    new = perturbed(model, 0.05, seed=1)
    torch_new = make_engine("torch", model=new, tokenizer=tok).generate(prompts, **GREEDY)
    before = engine.generate(prompts, **GREEDY)
    assert [r[0].logprobs for r in before] != [r[0].logprobs for r in torch_new]

    # control: vLLM's plain reload (no MoE re-processing) does NOT reproduce the new weights
    weights = list(checkpoint_tensors(new.state_dict()))
    engine.llm.collective_rpc(worker_reload, kwargs={"weights": weights, "reset_moe": False})
    engine.llm.reset_prefix_cache()
    plain = engine.generate(prompts, **GREEDY)
    with pytest.raises(AssertionError):
        assert_same_greedy(plain, torch_new)

    # the engine's path: in-memory tensors, MoE kernels re-prepared -> equal to torch
    engine.update_weights(new)
    assert engine.last_update_s < 5.0
    assert_same_greedy(engine.generate(prompts, **GREEDY), torch_new)
    check_logprobs_match_scoring(engine, new, tok, prompts, 1.0)

    # the folder path (used when the engine runs in its own process), back to another model
    newer = perturbed(model, 0.05, seed=2)
    save_model(newer, tok, str(tmp_path / "newer"))
    engine.update_weights_from_folder(str(tmp_path / "newer"))
    torch_newer = make_engine("torch", model=newer, tokenizer=tok).generate(prompts, **GREEDY)
    assert_same_greedy(engine.generate(prompts, **GREEDY), torch_newer)

    engine.update_weights(model)  # leave the shared engine as the other tests expect it


def test_vllm_seeded_batch_larger_than_one_step_of_tokens(setup):
    """Hundreds of seeded prompts in one call (an RL rollout batch): more prompt tokens than
    vLLM's CPU default step budget (4,096), which used to split a prompt and crash the engine
    ("CPU Generator does not use offset"). The engine prefills prompts whole on CPU."""
    model, tok, engine, _ = setup
    base = [format_prompt(tok, f"{q} Think it through, step by step, then answer.")
            for q in QUESTIONS]
    many = [base[i % len(base)] for i in range(240)]
    prompt_tokens = sum(len(tok.encode(p, add_special_tokens=False)) for p in many)
    assert prompt_tokens > 4096
    args = dict(n=2, max_new_tokens=4, temperature=1.0, top_p=1.0, seed=7)
    first = engine.generate(many, **args)
    assert len(first) == len(many) and all(len(g) == 2 for g in first)
    again = engine.generate(many, **args)
    assert [[c.token_ids for c in g] for g in first] == [[c.token_ids for c in g] for g in again]
