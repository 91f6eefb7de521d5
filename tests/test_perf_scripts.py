"""Helpers of the performance scripts (scripts/perf): stage_time, step_profile and
engine_throughput."""

from __future__ import annotations

import sys
from pathlib import Path

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
