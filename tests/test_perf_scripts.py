"""Helpers of the performance scripts (scripts/perf): stage_time, step_profile,
engine_throughput, compiled_decode."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

from pipeline.engines.fast_decode import MoeDecoder
from scripts.perf.compiled_decode import dense_experts, step_inputs, traceable_step
from scripts.perf.engine_throughput import build_model, calls, prompts_needed
from scripts.perf.stage_time import digest, redirect_outputs, stage_command
from scripts.perf.step_profile import kind_of


def test_stage_command_is_dvc_yaml_command_and_its_data_deps():
    argv, deps = stage_command("sft")
    assert argv[:3] == ["python", "-m", "pipeline.stages.sft"]
    assert argv[argv.index("--out") + 1] == "models/sft"
    assert "data/distill/traces.parquet" in deps and "models/base" in deps
    assert not any(d.startswith("pipeline") for d in deps)


def test_outputs_are_redirected_and_inputs_kept(tmp_path):
    argv = ["python", "-m", "x", "--traces", "data/t.parquet", "--out", "models/sft",
            "--report-dir", "reports/sft"]
    out = redirect_outputs(argv, tmp_path)
    assert out[0] == sys.executable
    assert out[4] == "data/t.parquet"
    assert out[6] == str(tmp_path / "models_sft")
    assert out[8] == str(tmp_path / "reports_sft")


def test_digest_compares_weights_and_data_only(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.safetensors").write_bytes(b"w")
    (tmp_path / "metrics.json").write_text('{"tokens_per_s": 1}')
    files = digest(tmp_path)
    assert list(files) == [str(Path("m") / "model.safetensors")]


def test_op_kinds():
    assert kind_of("aten::_grouped_mm") == "grouped matmul (experts)"
    assert kind_of("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    assert kind_of("aten::bmm") == "attention"
    assert kind_of("aten::mm") == "dense matmul"
    assert kind_of("aten::index_put_") == "index (gather/scatter)"
    assert kind_of("aten::_foreach_lerp_") == "optimizer and clipping"
    assert kind_of("aten::mul") == "elementwise and other"
    assert kind_of("aten::rms_norm") == "elementwise and other"
    assert kind_of("aten::_log_softmax") == "elementwise and other"


def test_engine_throughput_has_a_distinct_prompt_for_every_row():
    # batch 1 and 16 make 16 calls / 1 call of 16 rows (min 16 rows); 256 makes one of 256
    assert [calls(b, 16) for b in (1, 16, 64, 256)] == [16, 1, 1, 1]
    assert prompts_needed([1, 16, 64, 256], 16) == 256
    assert prompts_needed([1, 4], 16) == 16
    _, _, prompts = build_model(300)
    assert len(prompts) == len(set(prompts)) == 300
    # the first 128 prompts (and the model) are the ones the committed figures used
    assert build_model()[2] == prompts[:128]


def test_compiled_decode_arm_computes_the_engine_step():
    """The experiment's traceable step (dense experts, whole-width masked attention, tensor
    column) is the engine's decode step up to float rounding, cache writes included."""
    model, _, _ = build_model(1)
    dec = MoeDecoder(model)
    inp = step_inputs(dec, rows=5, width=24, column=17)
    inp["mask"][1, :3] = float("-inf")  # a left-padded row
    mine = copy.deepcopy(inp)
    with torch.inference_mode():
        ref = dec.step(inp["tokens"], inp["positions"], 17, inp["keys"], inp["values"],
                       inp["mask"], inp["rope"])
        got = traceable_step(dec)(mine["tokens"], mine["positions"], torch.tensor(17),
                                  mine["keys"], mine["values"], mine["mask"], *mine["rope"])
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
        for a, b in zip(mine["keys"] + mine["values"], inp["keys"] + inp["values"], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)  # column 17 written alike
        # the dense experts alone, against the routed grouped matmuls
        g = torch.Generator().manual_seed(1)
        h = torch.randn(7, model.config.hidden_size, generator=g)
        logits = torch.randn(7, model.config.num_experts, generator=g)
        w = dec.layers[0]
        torch.testing.assert_close(dense_experts(dec, h, logits, w), dec._experts(h, logits, w),
                                   rtol=1e-5, atol=1e-6)
