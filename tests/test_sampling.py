"""The shared "load a checkpoint, make an engine, sample and score" path of select, difficulty
and bench (``pipeline.bench.sampling``)."""

from __future__ import annotations

import pytest
import torch

import pipeline.engines
from pipeline.bench.sampling import Sampling, open_checkpoint, sample_and_score, sample_checkpoint


class RecordingEngine:
    def __init__(self, calls: list, kind: str, kwargs: dict):
        calls.append((kind, kwargs))
        self.calls = calls

    def close(self):
        self.calls.append("closed")


@pytest.fixture
def checkpoint(tmp_path):
    from pipeline.model import save_checkpoint, tiny_test_model

    model, tok = tiny_test_model()
    save_checkpoint(model, tok, tmp_path / "ckpt")
    return tmp_path / "ckpt"


def test_torch_engine_gets_the_loaded_model_and_vllm_the_path(checkpoint, monkeypatch):
    calls: list = []
    monkeypatch.setattr(pipeline.engines, "make_engine",
                        lambda kind, **kw: RecordingEngine(calls, kind, kw))
    with open_checkpoint(checkpoint, "torch") as (model, tok, engine):
        assert not model.training
        kind, kwargs = calls[0]
        assert kind == "torch" and kwargs["model"] is model and kwargs["tokenizer"] is tok
        assert kwargs["model_path"] == str(checkpoint)
        assert calls[-1] != "closed"
    assert calls[-1] == "closed"

    calls.clear()
    with pytest.raises(RuntimeError, match="boom"):
        with open_checkpoint(checkpoint, "vllm") as (model, tok, engine):
            assert calls[0] == ("vllm", {"model_path": str(checkpoint)})
            raise RuntimeError("boom")
    assert calls[-1] == "closed"  # closed on error too


def test_sample_checkpoint_equals_loading_and_sampling_by_hand(checkpoint):
    """Same seeds, same rows as the inline code the three stages used to repeat."""
    from pipeline.engines import make_engine
    from pipeline.model import load_model
    from pipeline.tasks import generate

    torch.set_num_threads(1)
    tasks = generate("math", 3, seed=1) + generate("countdown", 2, seed=1)
    sampling = Sampling(n=2, max_new_tokens=8, temperature=1.0, top_p=1.0, seed=11,
                        batch_prompts=2)
    batches: list[int] = []
    got = sample_checkpoint(checkpoint, "torch", tasks, sampling, "m",
                            on_batch=lambda b, rows: batches.append(len(rows)))
    model, tok = load_model(str(checkpoint))
    engine = make_engine("torch", model_path=str(checkpoint), model=model, tokenizer=tok)
    try:
        want = sample_and_score(engine, tok, tasks, sampling, "m")
    finally:
        engine.close()
    assert got == want
    assert len(got) == 5 * 2 and [r["sample_index"] for r in got[:2]] == [0, 1]
    assert batches == [4, 4, 2]  # 5 tasks in batches of 2 prompts, 2 samples each
