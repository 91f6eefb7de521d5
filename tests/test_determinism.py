"""Same seeds -> same numbers: the deterministic-algorithms switch the RL stages turn on."""

from __future__ import annotations

import hashlib

import pytest
import torch

from pipeline.rl.params import RLParams
from pipeline.train.determinism import set_deterministic


@pytest.fixture
def two_threads():
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(det)


def _gather_grads(repeats: int) -> set[str]:
    """Distinct gradients of ``x[index]`` (many repeated indices) over ``repeats`` backwards:
    the op the RL forward uses to repeat a prompt's KV cache and the MoE uses per expert."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2048, generator=g, requires_grad=True)
    index = torch.randint(0, 64, (20000,), generator=g)
    w = torch.randn(20000, 2048, generator=g)
    seen = set()
    for _ in range(repeats):
        x.grad = None
        (x[index] * w).sum().backward()
        seen.add(hashlib.sha1(x.grad.numpy().tobytes()).hexdigest())
    return seen


def test_indexing_backward_is_bit_stable_when_deterministic(two_threads):
    set_deterministic(True)
    assert torch.are_deterministic_algorithms_enabled()
    assert len(_gather_grads(8)) == 1
    # and it is the same sum as a plain sequential reference (index_add_ in index order)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, generator=g, requires_grad=True)
    index = torch.tensor([0, 2, 0, 4, 0, 2])
    w = torch.randn(6, 3, generator=g)
    (x[index] * w).sum().backward()
    expected = torch.zeros(5, 3).index_add_(0, index, w)
    assert torch.equal(x.grad, expected)


def test_stage_turns_deterministic_mode_on_by_default(monkeypatch):
    """build_run applies ``params.deterministic`` before it builds the policy."""
    from pipeline.rl import stage

    assert RLParams().deterministic is True
    calls = []
    monkeypatch.setattr(stage, "set_deterministic", calls.append)

    class Stop(Exception):
        pass

    def no_model(*a, **k):
        raise Stop

    monkeypatch.setattr("pipeline.model.checkpoint.load_model", no_model)
    for flag in (True, False):
        with pytest.raises(Stop):
            stage.build_run(RLParams(deterministic=flag), 1, "unused", [], None)
    assert calls == [True, False]
