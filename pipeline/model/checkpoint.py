"""Checkpoints are plain Hugging Face folders that transformers and vLLM both load.

A folder holds ``config.json``, ``model.safetensors``, ``generation_config.json`` (eos/pad
ids) and the tokenizer files (``tokenizer.json``, ``tokenizer_config.json``,
``chat_template.jinja``). :func:`save_checkpoint` writes it atomically (a crash never leaves a
half-written folder where the next stage looks); :func:`load_model` reads ours or any local HF
causal LM folder, never from the network.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from pipeline.atomic import atomic_dir
from pipeline.model.experts import use_grouped_experts
from pipeline.model.moe import generation_config

WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.gguf")


def _unwrap(model: Any) -> PreTrainedModel:
    """The HF model inside a DeepSpeed/DDP wrapper (``.module``), or the model itself."""
    while not isinstance(model, PreTrainedModel) and hasattr(model, "module"):
        model = model.module
    return model


def save_checkpoint(model: Any, tokenizer: Any, out_dir: str | Path) -> Path:
    """Write ``model`` (safetensors) + ``tokenizer`` + generation config to ``out_dir``.

    ``out_dir`` is replaced as a whole, atomically. Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    model = _unwrap(model)
    model.generation_config = generation_config(tokenizer)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)  # transformers 5 always writes safetensors
        tokenizer.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
    return out_dir


def check_checkpoint_dir(path: str | Path) -> Path:
    """``path`` as a Path if it is a local HF model folder; else a clear error naming it."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"{path}: not a local model folder (models are never downloaded; "
            "give a path to a Hugging Face checkpoint folder)"
        )
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: no config.json, not a Hugging Face checkpoint folder")
    if not any(any(path.glob(pat)) for pat in WEIGHT_PATTERNS):
        raise FileNotFoundError(f"{path}: no weight files ({', '.join(WEIGHT_PATTERNS)})")
    return path


def load_model(
    path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
) -> tuple[PreTrainedModel, Any]:
    """Load ``(model, tokenizer)`` from a local HF folder (ours or any causal LM); eval mode.

    Offline only (``local_files_only``). A tokenizer without a pad token gets pad = eos. Routed
    experts run through :mod:`pipeline.model.experts` (same outputs, a cheaper backward).
    """
    path = check_checkpoint_dir(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    use_grouped_experts(model)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer


def stored_parameters(folder: str | Path) -> int:
    """Number of parameters stored in the folder's ``*.safetensors`` files, read from their
    headers (no tensor is loaded, so it costs nothing for a large checkpoint)."""
    from safetensors import safe_open

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors files to count parameters in")
    total = 0
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for name in st.keys():  # noqa: SIM118 - safe_open is not a mapping
                total += math.prod(st.get_slice(name).get_shape())
    return total


def copy_checkpoint(src: str | Path, out_dir: str | Path) -> Path:
    """Place the local checkpoint folder ``src`` (weights + tokenizer) at ``out_dir``, atomically.

    Files are copied, not linked: DVC moves its outputs into its cache and may make them
    read-only, which must never touch the user's own checkpoint. The tokenizer must be
    loadable from ``src``.
    """
    src = check_checkpoint_dir(src)
    AutoTokenizer.from_pretrained(src, local_files_only=True)  # fail early, naming src
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        for f in sorted(src.rglob("*")):
            rel = f.relative_to(src)
            if any(part.startswith(".") for part in rel.parts):
                continue  # .git, .cache and the like are not part of the model
            if f.is_dir():
                (tmp / rel).mkdir(parents=True, exist_ok=True)
            else:
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f.resolve(), tmp / rel)
    return out_dir
