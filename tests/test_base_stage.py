"""Tests of the base stage: tokenizer corpus, tiny MoE build, local-checkpoint copy, main()."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import polars as pl
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from pipeline.atomic import write_parquet
from pipeline.model import format_prompt, save_checkpoint, tiny_test_model
from pipeline.schema import TASK, SchemaError, frame, make_task
from pipeline.stages import base

torch.set_num_threads(1)

SMALL_MODEL = """\
seed: 7
model:
  source: {source}
  vocab_size: 400
  hidden_size: 64
  num_layers: 2
  num_heads: 2
  num_kv_heads: 1
  num_experts: 4
  experts_per_token: 2
  expert_ffn_size: 32
  shared_expert_ffn_size: 64
  max_positions: 128
"""


def _task(i: int, split: str) -> dict[str, str]:
    return make_task("math", f"What is {i} + {i + 1}?", {"answer": str(2 * i + 1)}, "test",
                     split=split)


def _fake_trace(task) -> str:
    a = json.loads(task["reference"])["answer"]
    return f"<think>add them: {a}</think>\n\\boxed{{{a}}}"


@pytest.fixture
def curated(tmp_path: Path) -> Path:
    d = tmp_path / "curated"
    write_parquet(d / "sft.parquet", frame([_task(i, "sft") for i in range(30)], TASK))
    write_parquet(d / "rl.parquet", frame([_task(i, "rl") for i in range(100, 110)], TASK))
    return d


def test_corpus_has_every_prompt_and_each_sft_trace():
    pools = {"sft": [_task(1, "sft"), _task(2, "sft")], "rl": [_task(9, "rl")]}
    texts, stats = base.tokenizer_corpus(pools, _fake_trace)
    assert texts == [
        "What is 1 + 2?", "What is 2 + 3?", "What is 9 + 10?",
        "<think>add them: 3</think>\n\\boxed{3}", "<think>add them: 5</think>\n\\boxed{5}",
    ]
    assert (stats["corpus_prompts"], stats["corpus_traces"], stats["trace_failed"]) == (3, 2, {})
    assert stats["corpus_chars"] == sum(map(len, texts))


def test_corpus_counts_untraceable_tasks_and_fails_when_none_trace():
    pools = {"sft": [_task(1, "sft"), _task(2, "sft")], "rl": []}

    def picky(task):
        if "1 + 2" in task["prompt"]:
            raise KeyError("no teacher")
        return "ok"

    texts, stats = base.tokenizer_corpus(pools, picky)
    assert stats["corpus_traces"] == 1 and stats["trace_failed"] == {"KeyError": 1}
    assert pools["sft"][0]["id"] in stats["trace_failed_examples"]["KeyError"]

    def never(task):
        raise ValueError("user task")

    with pytest.raises(RuntimeError, match="no SFT task could be traced"):
        base.tokenizer_corpus(pools, never)


def test_real_teacher_traces_round_trip_through_the_trained_tokenizer():
    tasks_mod = pytest.importorskip("pipeline.tasks")
    sft = [t for d in tasks_mod.DOMAINS for t in tasks_mod.generate(d, 6, seed=3)]
    texts, stats = base.tokenizer_corpus({"sft": sft, "rl": []}, tasks_mod.teacher_trace)
    assert stats["corpus_traces"] == len(sft) and stats["trace_failed"] == {}
    tok = base.train_tokenizer(texts, 1024)
    for t in texts:
        assert tok.decode(tok.encode(t, add_special_tokens=False)) == t


def _run_main(tmp_path: Path, curated: Path, source: str, monkeypatch) -> tuple[dict, Path]:
    monkeypatch.setenv("RINGLITE_TRACKING", "off")
    fake = types.ModuleType("pipeline.tasks")
    fake.teacher_trace = _fake_trace  # the stage's wiring, independent of the real teachers
    monkeypatch.setitem(sys.modules, "pipeline.tasks", fake)
    tmp_path.mkdir(parents=True, exist_ok=True)
    params = tmp_path / "params.yaml"
    params.write_text(SMALL_MODEL.format(source=source))
    out, report = tmp_path / "models" / "base", tmp_path / "reports" / "base"
    stats = base.main(["--curated-dir", str(curated), "--out", str(out),
                       "--report-dir", str(report), "--params", str(params)])
    assert json.loads((report / "stats.json").read_text()) == json.loads(json.dumps(stats))
    return stats, out


def test_main_builds_the_tiny_moe_folder(tmp_path, curated, monkeypatch):
    stats, out = _run_main(tmp_path, curated, "tiny_moe", monkeypatch)
    assert (stats["corpus_prompts"], stats["corpus_traces"]) == (40, 30)
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert model.config.model_type == "qwen2_moe" and model.config.num_experts == 4
    assert model.config.vocab_size == len(tok) == stats["vocab_size"] <= 400
    assert stats["params_total"] == sum(p.numel() for p in model.parameters())
    assert stats["vllm_cpu_problems"] == [] and stats["texts_over_max_positions"] == 0
    assert tok.model_max_length == 128
    assert format_prompt(tok, "hi") == "<|user|>\nhi\n<|assistant|>\n"
    # the tokenizer learned the corpus: a trace encodes in fewer tokens than its bytes
    trace = _fake_trace(_task(3, "sft"))
    assert len(tok.encode(trace, add_special_tokens=False)) < len(trace.encode())
    # same params + data + seed -> the same weights
    again, out2 = _run_main(tmp_path / "again", curated, "tiny_moe", monkeypatch)
    m2 = AutoModelForCausalLM.from_pretrained(out2, local_files_only=True)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                  m2.state_dict().values(), strict=True))


def test_main_copies_a_local_checkpoint(tmp_path, curated, monkeypatch):
    model, tok = tiny_test_model()
    src = save_checkpoint(model, tok, tmp_path / "my_ckpt")
    stats, out = _run_main(tmp_path, curated, str(src), monkeypatch)
    assert stats["copied_from"] == str(src.resolve())
    # counted from the safetensors headers; the module's own count (tied weights once) agrees
    assert stats["params_total"] == sum(p.numel() for p in model.parameters())
    assert json.loads((tmp_path / "reports/base/headline.json").read_text()) == {
        "params_total": stats["params_total"]}
    assert (out / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in src.iterdir())


def test_main_refuses_a_missing_local_checkpoint(tmp_path, curated, monkeypatch):
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        _run_main(tmp_path, curated, "Qwen/Qwen1.5-MoE-A2.7B", monkeypatch)


def test_bad_curated_input_names_the_file(tmp_path, curated, monkeypatch):
    (curated / "rl.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="rl.parquet"):
        base.read_pools(curated)
    write_parquet(curated / "rl.parquet", pl.DataFrame({"id": ["x"], "prompt": ["p"]}))
    with pytest.raises(SchemaError, match="rl.parquet: missing columns"):
        base.read_pools(curated)
