#!/usr/bin/env bash
# GPU check: SFT steps of a ~1B-param MoE from config (bf16 + ZeRO) with tokens/s and MFU, then
# vLLM rollout tokens/s on the same model, then a few C3PO RL steps on it (vLLM rollouts synced
# in memory; tokens/s, step time, engine/trainer log-prob mismatch), then the rollout paths on
# the default tiny MoE against plain transformers `generate` (scripts/perf/engine_throughput.py,
# the speed target of 5x at batch >= 16). See pipeline/train/gpu_check.py.
#
#   bash scripts/gpu_check.sh                    # on a CUDA machine (~1B MoE)
#   GPU_CHECK_SMALL=1 bash scripts/gpu_check.sh  # CPU smoke run with a tiny config
#
# Env: GPU_CHECK_ZERO (ZeRO stage, default 2), GPU_PEAK_TFLOPS (default 989, H100/H200 bf16),
# PYTHON (default .venv/bin/python if present), GPU_CHECK_OUT (model folder, default a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
OUT="${GPU_CHECK_OUT:-$(mktemp -d -t gpu_check.XXXXXX)}"
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$PWD/.cache/torch_extensions}"
export RINGLITE_TRACKING=off
if [ "${GPU_CHECK_SMALL:-0}" = "1" ]; then
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
  export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}" VLLM_HOST_IP=127.0.0.1
fi
echo "== torch $("$PY" -c 'import torch; print(torch.__version__, "cuda" if torch.cuda.is_available() else "cpu")')"
echo "== phase 1: SFT steps (DeepSpeed) -> $OUT"
"$PY" -m pipeline.train.gpu_check train "$OUT"
echo "== phase 2: vLLM rollouts on the same model"
"$PY" -m pipeline.train.gpu_check vllm "$OUT"
echo "== phase 3: C3PO RL steps (DeepSpeed policy + vLLM rollouts)"
"$PY" -m pipeline.train.gpu_check rl "$OUT"
echo "== phase 4: rollout engines against plain generate (default tiny MoE)"
if [ "${GPU_CHECK_SMALL:-0}" = "1" ]; then
  "$PY" scripts/perf/engine_throughput.py --paths generate torch --batches 16 --repeats 1 \
    --max-new-tokens 32 --threads "$OMP_NUM_THREADS" --json "$OUT/engine_throughput.json"
else
  "$PY" scripts/perf/engine_throughput.py --device cuda --dtype bfloat16 --batches 16 64 256 \
    --json "$OUT/engine_throughput.json"
fi
