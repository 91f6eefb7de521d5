"""Tests of pipeline.model: tokenizer, tiny MoE, checkpoints (and vLLM loading, integration)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

from pipeline.model import (
    SPECIAL_TOKENS,
    ModelParams,
    build_tiny_moe,
    copy_checkpoint,
    count_parameters,
    format_prompt,
    load_model,
    save_checkpoint,
    tiny_test_model,
    train_tokenizer,
    vllm_cpu_problems,
)
from pipeline.model.moe import check_sizes
from pipeline.model.tiny import TINY_PARAMS
from pipeline.params import load_section

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)

TRACES = [
    "<think>Step 1: 12 + 30 = 42.\nStep 2: check 42 - 30 = 12.</think>\nThe answer is \\boxed{42}.",
    "<think>3 * 5 = 15\n15 + 7 = 22</think>\n\\boxed{(3*5)+7}",
    "<think>write it</think>\n```python\ndef f(xs):\n\tif not xs:\n        return 0\n    return sum(xs)  # ok\n```",
    "<think>Alice says Bob is a knave.</think>\nAlice: knight\nBob: knave",
    "  leading and trailing spaces   \n\n\n",
    "unicode: héllo wörld, ∑x², 日本語, emoji 🙂",
    "<|user|>\nWhat is 1+1?\n<|assistant|>\n<think>1+1=2</think>\\boxed{2}<|end|>",
]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TRACES * 20, vocab_size=400)


# --- tokenizer -----------------------------------------------------------------------------


def test_format_prompt_is_exactly_the_chat_format(tok):
    assert format_prompt(tok, "hi") == "<|user|>\nhi\n<|assistant|>\n"


def test_special_tokens_are_single_distinct_ids(tok):
    ids = []
    for s in SPECIAL_TOKENS:
        enc = tok.encode(s, add_special_tokens=False)
        assert len(enc) == 1, (s, enc)
        ids.append(enc[0])
    assert len(set(ids)) == len(SPECIAL_TOKENS)
    # inside running text too (no merge swallows them)
    enc = tok.encode("a<think>b</think>c<|end|>", add_special_tokens=False)
    assert tok.convert_ids_to_tokens(enc)[1] == "<think>"
    assert enc[-1] == tok.convert_tokens_to_ids("<|end|>")
    assert (tok.pad_token, tok.pad_token_id) == ("<|pad|>", 0)
    assert (tok.eos_token, tok.eos_token_id) == ("<|end|>", 1)
    assert tok.bos_token is None


@pytest.mark.parametrize("text", TRACES)
def test_encode_decode_round_trip_is_lossless(tok, text):
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text


def test_think_markers_survive_skip_special_tokens(tok):
    ids = tok.encode("<think>x</think>y<|end|>", add_special_tokens=False)
    assert tok.decode(ids, skip_special_tokens=True) == "<think>x</think>y"


def test_digits_are_split_one_by_one(tok):
    toks = tok.tokenize("12345")
    assert toks == ["1", "2", "3", "4", "5"]


def test_vocab_size_is_an_upper_bound_and_has_a_floor():
    tok = train_tokenizer(TRACES * 20, vocab_size=300)
    assert len(tok) == 300  # 256 bytes + 4 control + 2 markers + 38 merges (text has plenty)
    tiny = train_tokenizer(["ab"], vocab_size=1000)
    assert 262 <= len(tiny) < 1000  # too little text to fill the vocabulary
    with pytest.raises(ValueError, match="vocab_size=100"):
        train_tokenizer(TRACES, vocab_size=100)


def test_training_is_deterministic():
    a = train_tokenizer(TRACES * 5, vocab_size=320)
    b = train_tokenizer(TRACES * 5, vocab_size=320)
    assert a.get_vocab() == b.get_vocab()


# --- model ---------------------------------------------------------------------------------


def expected_params(p: ModelParams, vocab: int) -> tuple[int, int]:
    """Parameter count of the qwen2_moe layout, by hand: (total, active per token)."""
    h, hd = p.hidden_size, p.hidden_size // p.num_heads
    kv = p.num_kv_heads * hd
    attn = (h * h + h) + 2 * (h * kv + kv) + h * h  # q, k, v with bias; o without
    experts = p.num_experts * 3 * h * p.expert_ffn_size  # gate+up (2 I x H) and down (H x I)
    shared = 3 * h * p.shared_expert_ffn_size + h  # MLP + sigmoid gate (1 x H)
    layer = attn + 2 * h + p.num_experts * h + experts + shared  # 2 RMSNorms, router
    total = 2 * vocab * h + h + p.num_layers * layer  # embed + lm_head (untied) + final norm
    active = total - p.num_layers * experts * (p.num_experts - p.experts_per_token) // p.num_experts
    return total, active


class _FakeTok:
    pad_token_id, eos_token_id = 0, 1

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


@pytest.mark.parametrize("p", [TINY_PARAMS, ModelParams()], ids=["tiny", "default"])
def test_parameter_count_matches_hand_count(p):
    model = build_tiny_moe(p, _FakeTok(1000))
    total, active = expected_params(p, 1000)
    assert count_parameters(model) == {"params_total": total, "params_active": active}


def test_default_model_is_a_few_million_params_in_the_ling_layout():
    model = build_tiny_moe(ModelParams(), _FakeTok(1024))
    n = count_parameters(model)["params_total"]
    assert 1_000_000 < n < 5_000_000
    block = model.model.layers[0].mlp
    assert block.experts.gate_up_proj.shape == (8, 2 * 128, 128)  # routed experts
    assert block.shared_expert.gate_proj.weight.shape == (256, 128)  # shared expert
    assert model.config.num_experts_per_tok == 2


def test_same_seed_same_weights_other_seed_other_weights():
    a = build_tiny_moe(TINY_PARAMS, _FakeTok(300), seed=1).state_dict()
    b = build_tiny_moe(TINY_PARAMS, _FakeTok(300), seed=1).state_dict()
    c = build_tiny_moe(TINY_PARAMS, _FakeTok(300), seed=2).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["model.embed_tokens.weight"], c["model.embed_tokens.weight"])


def test_router_logits_and_balance_loss_match_an_independent_computation():
    model, tok = tiny_test_model()
    ids = torch.tensor([tok.encode("<think>12 + 30 = 42</think>\\boxed{42}")])  # (1, T)
    out = model(input_ids=ids, labels=ids, output_router_logits=True)
    p = TINY_PARAMS
    assert len(out.router_logits) == p.num_layers
    assert all(r.shape == (ids.shape[1], p.num_experts) for r in out.router_logits)
    # Switch-style balance loss B = N_e * sum_e P_e * F_e over all layers' tokens, with P_e the
    # mean router probability and F_e the fraction of top-k assignments that went to e.
    logits = torch.cat(out.router_logits)  # (L*T, E)
    probs = logits.softmax(-1)
    top = probs.topk(p.experts_per_token, dim=-1).indices
    counts = torch.zeros(p.num_experts).index_add_(0, top.flatten(), torch.ones(top.numel()))
    balance = p.num_experts * (probs.mean(0) * counts / logits.shape[0]).sum()
    torch.testing.assert_close(out.aux_loss, balance)
    plain = model(input_ids=ids, labels=ids).loss  # no router logits: plain cross-entropy
    torch.testing.assert_close(out.loss, plain + p.router_aux_loss_coef * balance)


def test_size_checks_name_the_key():
    with pytest.raises(ValueError, match="model.num_heads"):
        check_sizes(dataclasses.replace(ModelParams(), num_heads=3))
    with pytest.raises(ValueError, match="model.experts_per_token"):
        check_sizes(dataclasses.replace(ModelParams(), experts_per_token=9))
    assert vllm_cpu_problems(ModelParams()) == []
    bad = vllm_cpu_problems(dataclasses.replace(ModelParams(), hidden_size=80))  # head 20
    assert any("head size 20" in b for b in bad) and any("hidden_size 80" in b for b in bad)


def test_repo_params_yaml_model_section_loads():
    p = load_section("model", ModelParams, REPO / "params.yaml")
    assert p.is_tiny_moe and vllm_cpu_problems(p) == []


def test_tiny_test_model_gives_independent_copies():
    m1, tok = tiny_test_model()
    with torch.no_grad():
        m1.model.embed_tokens.weight.zero_()
    m2, _ = tiny_test_model()
    assert m2.model.embed_tokens.weight.abs().sum() > 0
    assert format_prompt(tok, "hi") == "<|user|>\nhi\n<|assistant|>\n"


# --- checkpoints ---------------------------------------------------------------------------


def test_saved_folder_loads_with_auto_classes_and_round_trips_exactly(tmp_path):
    model, tok = tiny_test_model()
    out = save_checkpoint(model, tok, tmp_path / "ckpt")
    names = {f.name for f in out.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= names
    loaded = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    ltok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    sd, lsd = model.state_dict(), loaded.state_dict()
    assert sd.keys() == lsd.keys()
    assert all(torch.equal(sd[k], lsd[k]) for k in sd)
    assert format_prompt(ltok, "hi") == "<|user|>\nhi\n<|assistant|>\n"
    assert (ltok.pad_token_id, ltok.eos_token_id, ltok.padding_side) == (0, 1, "left")
    gen = json.loads((out / "generation_config.json").read_text())
    assert (gen["eos_token_id"], gen["pad_token_id"]) == (1, 0)
    m2, t2 = load_model(out)
    assert not m2.training and m2.dtype == torch.float32
    assert t2.decode(t2.encode(TRACES[2], add_special_tokens=False)) == TRACES[2]


def test_save_replaces_the_folder_atomically(tmp_path):
    model, tok = tiny_test_model()
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    save_checkpoint(model, tok, out)
    assert not (out / "stale.txt").exists()

    class Broken:  # a tokenizer whose files fail to write half-way through the save
        pad_token_id, eos_token_id = tok.pad_token_id, tok.eos_token_id

        def save_pretrained(self, path):
            raise OSError("disk full")

    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, Broken(), out)
    assert sorted(p.name for p in out.iterdir()) == before  # old checkpoint untouched
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temp folder left behind


def test_load_model_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(tmp_path / "empty")


def test_load_model_takes_any_local_causal_lm_and_sets_pad(tmp_path):
    _, tok = tiny_test_model()
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    dense = Qwen2ForCausalLM(cfg)
    dense.save_pretrained(tmp_path / "dense")
    tok.pad_token = None  # a foreign tokenizer without a pad token
    tok.save_pretrained(tmp_path / "dense")
    model, ltok = load_model(tmp_path / "dense")
    assert isinstance(model, Qwen2ForCausalLM)
    assert ltok.pad_token == ltok.eos_token == "<|end|>"


def test_copy_checkpoint_copies_files_not_links(tmp_path):
    model, tok = tiny_test_model()
    src = save_checkpoint(model, tok, tmp_path / "src")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("x")
    out = copy_checkpoint(src, tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        p.name for p in src.iterdir() if p.name != ".git"
    )
    a, b = src / "model.safetensors", out / "model.safetensors"
    assert a.read_bytes() == b.read_bytes() and os.stat(a).st_ino != os.stat(b).st_ino


# --- vLLM (integration) --------------------------------------------------------------------

VLLM_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = "1"
    os.environ["VLLM_HOST_IP"] = "127.0.0.1"

    def main():
        from vllm import LLM, SamplingParams
        path, prompts, n = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
        llm = LLM(model=path, enforce_eager=True, dtype="float32", seed=0,
                  max_model_len=256, max_num_seqs=4)
        sp = SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True)
        outs = llm.generate([{"prompt_token_ids": p} for p in prompts], sp)
        print("RESULT " + json.dumps([list(o.outputs[0].token_ids) for o in outs]), flush=True)

    if __name__ == "__main__":
        main()
    """
)


def hf_greedy(model, ids: list[int], n: int) -> list[int]:
    """``n`` argmax tokens by plain full forwards (EOS not special, like ignore_eos)."""
    seq = list(ids)
    with torch.no_grad():
        for _ in range(n):
            seq.append(int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax()))
    return seq[len(ids):]


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_vllm_loads_the_default_model_and_matches_hf_greedy(tmp_path):
    tok = train_tokenizer(TRACES * 20, vocab_size=400)
    # Default sizes (what models/base uses); a larger init spread makes greedy choices clear
    # so fp32 rounding differences between the two engines cannot flip an argmax.
    params = dataclasses.replace(ModelParams(), init_std=0.1)
    model = build_tiny_moe(params, tok, seed=0).eval()
    path = save_checkpoint(model, tok, tmp_path / "base")
    prompts = [tok.encode(format_prompt(tok, q)) for q in ("What is 12 + 30?", "Solve x+1=2")]
    n = 12
    hf = [hf_greedy(model, ids, n) for ids in prompts]
    script = tmp_path / "run_vllm.py"
    script.write_text(VLLM_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(script), str(path), json.dumps(prompts), str(n)],
                          capture_output=True, text=True, timeout=580, env=env)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads(lines[0][len("RESULT "):]) == hf
