"""SFT: schedule, env setup, tokenization, the DeepSpeed loop, kill -9 resume, two ranks.

The model package's ``load_model``/``save_checkpoint`` may not exist yet while the project is
built in parallel: :data:`STANDINS` installs small stand-ins (plain ``from_pretrained`` /
``save_pretrained``) into ``pipeline.model`` only when the real ones are missing.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import torch

from pipeline.schema import TRACE, frame
from pipeline.train.deepspeed_engine import lr_lambda, setup_dist_env
from pipeline.train.sft import tokenize_traces
from tests.conftest import RANK_ENV, REPO

torch.set_num_threads(1)

STANDINS = '''
import pipeline.model as pm
if not hasattr(pm, "load_model"):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from pipeline.atomic import atomic_dir

    def load_model(path, dtype=torch.float32):
        return (AutoModelForCausalLM.from_pretrained(path, dtype=dtype),
                AutoTokenizer.from_pretrained(path))

    def save_checkpoint(model, tokenizer, out_dir):
        with atomic_dir(out_dir) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)

    pm.load_model, pm.save_checkpoint = load_model, save_checkpoint
'''

# ZeRO-3 against ZeRO-1 on 2 ranks: weights within 2.4e-6 after epochs that moved them 3e-2 to
# 6e-2 (measured)
TOL_Z3 = 1e-4

RUNNER = STANDINS + '''
import sys
from pipeline.stages.sft import main
if __name__ == "__main__":  # the verifier's worker processes re-import this file
    main(sys.argv[1:])
'''


def make_tokenizer(texts: list[str]):
    """A small byte-level BPE with the project's special tokens and chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from pipeline.model.chat import CHAT_TEMPLATE, SPECIAL_TOKENS

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>",
                                   eos_token="<|end|>", chat_template=CHAT_TEMPLATE)


def toy_traces(n: int) -> list[dict]:
    """Addition tasks with a fixed-format trace: learnable by a tiny model in a few steps."""
    rows = []
    for i in range(n):
        a, b = 3 + (i * 7) % 40, 2 + (i * 11) % 30
        rows.append({
            "task_id": f"t{i}", "domain": "math", "prompt": f"What is {a} + {b}?",
            "response": f"<think>{a} + {b} = {a + b}</think>\\boxed{{{a + b}}}",
            "teacher": "toy", "verified": True, "prompt_tokens": 0, "response_tokens": 0,
        })
    return rows


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """traces.parquet + a tiny base HF folder (Qwen2-MoE, ~60k params)."""
    from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

    root = tmp_path_factory.mktemp("sft")
    rows = toy_traces(48)
    frame(rows, TRACE).write_parquet(root / "traces.parquet")
    tok = make_tokenizer([r["prompt"] + " " + r["response"] for r in rows])
    cfg = Qwen2MoeConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, moe_intermediate_size=32,
        shared_expert_intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, num_experts=4, num_experts_per_tok=2, max_position_embeddings=256,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    Qwen2MoeForCausalLM(cfg).save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    return root


def write_params(root: Path, name: str, **sft) -> Path:
    base = {"epochs": 3, "row_tokens": 96, "micro_batch_rows": 2, "max_seq_len": 96,
            "save_every_steps": 2,
            "eval_tasks": 0, "optim": {"lr": 1e-2, "warmup_ratio": 0.1, "zero_stage": 1}}
    base.update(sft)
    path = root / f"{name}.yaml"
    path.write_text(json.dumps({"seed": 7, "sft": base}))  # JSON is YAML
    return path


def run_stage(root: Path, name: str, params: Path, **popen) -> subprocess.Popen:
    (root / "runner.py").write_text(RUNNER)
    env = {**os.environ, "RINGLITE_TRACKING": "off", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}
    for k in RANK_ENV:
        env.pop(k, None)
    cmd = [sys.executable, str(root / "runner.py"), "--traces", str(root / "traces.parquet"),
           "--base", str(root / "base"), "--out", str(root / name / "model"),
           "--report-dir", str(root / name / "reports"), "--params", str(params)]
    return subprocess.Popen(cmd, cwd=REPO, env=env, **popen)


def steps_csv(root: Path, name: str) -> list[dict]:
    with open(root / name / "reports" / "steps.csv") as f:
        return list(csv.DictReader(f))


def test_lr_schedule_by_hand():
    f = lr_lambda(total_steps=20, warmup_ratio=0.1, min_lr_ratio=0.1)  # 2 warm-up steps
    assert [f(0), f(1)] == [0.5, 1.0]
    assert f(2) == pytest.approx(1.0)  # cosine starts at the peak
    assert f(11) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through 18 decay steps
    assert f(20) == pytest.approx(0.1) and f(50) == pytest.approx(0.1)
    assert f(5) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 3 / 18)))


def test_setup_dist_env(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT", "TORCH_EXTENSIONS_DIR"):
        monkeypatch.delenv(k, raising=False)
    setup_dist_env()
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("0", "1", "0")
    assert 0 < int(os.environ["MASTER_PORT"]) < 65536
    assert os.environ["TORCH_EXTENSIONS_DIR"] == str(REPO / ".cache" / "torch_extensions")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_PORT", "12345")
    setup_dist_env()  # launched: the launcher's values stay
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["MASTER_PORT"]) == ("1", "2", "12345")


def test_tokenize_traces_masks_only_the_response(workspace):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(workspace / "base")
    samples, dropped = tokenize_traces(tok, ["What is 2 + 3?", "x" * 500],
                                       ["<think>2 + 3 = 5</think>\\boxed{5}", "y"], 96)
    assert dropped == 1 and len(samples) == 1
    s = samples[0]
    n_resp = sum(s.response_mask)
    text_prompt = tok.decode(s.input_ids[:-n_resp])
    text_resp = tok.decode(s.input_ids[-n_resp:])
    assert text_prompt == "<|user|>\nWhat is 2 + 3?\n<|assistant|>\n"
    assert text_resp == "<think>2 + 3 = 5</think>\\boxed{5}<|end|>"
    assert not any(s.response_mask[:-n_resp])


@pytest.mark.integration
def test_resume_after_kill_matches_uninterrupted_run(workspace):
    """kill -9 mid-epoch, rerun: same steps and the same final loss as one clean run."""
    params = write_params(workspace, "p_resume", grad_accum=2)
    ref = run_stage(workspace, "clean", params, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
    assert ref.wait(timeout=400) == 0
    clean = steps_csv(workspace, "clean")
    metrics = json.loads((workspace / "clean" / "reports" / "metrics.json").read_text())
    assert float(clean[-1]["loss"]) < float(clean[0]["loss"]) - 0.5  # it learns
    for k in (1, 2, 3):
        assert (workspace / "clean" / "model" / f"epoch_{k}" / "config.json").exists()
    assert metrics["steps"] == len(clean)

    latest = workspace / "killed" / "model" / "ds_state" / "latest"
    proc = run_stage(workspace, "killed", params, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
        if latest.exists() and latest.read_text().strip() >= "step000004":
            break
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (workspace / "killed" / "reports" / "metrics.json").exists()
    again = run_stage(workspace, "killed", params, stdout=subprocess.PIPE,
                      stderr=subprocess.STDOUT, text=True)
    out, _ = again.communicate(timeout=400)
    assert again.returncode == 0, out[-3000:]
    assert "resuming at step" in out
    resumed = steps_csv(workspace, "killed")
    assert len(resumed) == len(clean)
    for a, b in zip(resumed, clean, strict=True):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), abs=1e-5)


@pytest.mark.integration
def test_two_process_torchrun_matches_one_process_grad_accum(workspace):
    """2 ranks x 1 row per step == 1 rank x 2 accumulated rows: same rows, same mean grad."""
    if not (workspace / "clean" / "reports" / "steps.csv").exists():
        pytest.skip("needs the clean run of the resume test")
    params = write_params(workspace, "p_two", num_processes=2)
    proc = run_stage(workspace, "two", params, stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=500)
    assert proc.returncode == 0, out[-3000:]
    assert "torchrun" in out
    two, one = steps_csv(workspace, "two"), steps_csv(workspace, "clean")
    assert len(two) == len(one)
    for a, b in zip(two, one, strict=True):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-3, abs=1e-3)
    assert (workspace / "two" / "model" / "epoch_3" / "config.json").exists()
    traces = pl.read_parquet(workspace / "traces.parquet")
    assert traces.height == 48


@pytest.mark.integration
def test_two_process_zero3_saves_the_whole_trained_model(workspace):
    """ZeRO-3 splits every weight over the ranks (rank 0's own module holds empty tensors):
    each epoch's folder must still hold the whole trained model, the same as ZeRO-1's."""
    from safetensors.torch import load_file

    if not (workspace / "two" / "model" / "epoch_3" / "config.json").exists():
        pytest.skip("needs the ZeRO-1 run of the two-rank test")
    params = write_params(workspace, "p_two_z3", num_processes=2,
                          optim={"lr": 1e-2, "warmup_ratio": 0.1, "zero_stage": 3})
    proc = run_stage(workspace, "two_z3", params, stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=500)
    assert proc.returncode == 0, out[-3000:]
    z3, z1 = steps_csv(workspace, "two_z3"), steps_csv(workspace, "two")
    assert len(z3) == len(z1)
    for a, b in zip(z3, z1, strict=True):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-3, abs=1e-3)
    start = load_file(workspace / "base" / "model.safetensors")
    for epoch in (1, 3):
        got = load_file(workspace / "two_z3" / "model" / f"epoch_{epoch}" / "model.safetensors")
        ref = load_file(workspace / "two" / "model" / f"epoch_{epoch}" / "model.safetensors")
        assert got.keys() == ref.keys()
        for k, v in ref.items():
            assert got[k].shape == v.shape, k
            torch.testing.assert_close(got[k], v, rtol=1e-3, atol=TOL_Z3, msg=k)
        moved = max(float((ref[k] - start[k]).abs().max()) for k in ref)
        assert moved > 50 * TOL_Z3  # the comparison is of trained weights


def test_greedy_responses_match_a_manual_argmax_loop(workspace):
    """The torch engine (batched, left-padded) == an explicit argmax loop, one prompt at a time."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline.model.chat import format_prompt
    from pipeline.train.greedy_eval import greedy_responses

    model = AutoModelForCausalLM.from_pretrained(workspace / "base").eval()
    tok = AutoTokenizer.from_pretrained(workspace / "base")
    prompts = ["What is 3 + 4?", "What is 12 + 30?"]
    got = greedy_responses(model, tok, prompts, max_new_tokens=6, batch_size=2)
    for prompt, text in zip(prompts, got, strict=True):
        ids = tok(format_prompt(tok, prompt), add_special_tokens=False).input_ids
        new: list[int] = []
        with torch.no_grad():
            for _ in range(6):
                nxt = int(model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
                if nxt == tok.eos_token_id:
                    break
                new.append(nxt)
        assert text == tok.decode([i for i in new if i != tok.pad_token_id],
                                  skip_special_tokens=False)
