"""DeepSpeed engine setup shared by SFT and RL.

Usage::

    from pipeline.train.deepspeed_engine import OptimParams, init_engine
    engine = init_engine(model, OptimParams(lr=2e-3, zero_stage=1), total_steps=200)
    loss = ...; engine.backward(loss); engine.step()

What it does:
- :func:`setup_dist_env` makes a plain ``python -m ...`` run look like a one-rank launch
  (``RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=<free port>``); under
  ``torchrun`` / the ``deepspeed`` launcher the launcher's values are kept. Without them
  DeepSpeed falls back to MPI discovery (mpi4py), which is not installed.
- ``TORCH_EXTENSIONS_DIR`` defaults to ``<repo>/.cache/torch_extensions``: on CPU DeepSpeed
  JIT-compiles its shared-memory all-reduce op on the first ``initialize`` (~30-45 s on 2 CPU
  cores); later runs reuse it. One CPU rank has no all-reduce to speed up and skips the build
  (:func:`_skip_shm_comm_build`).
- Backend: gloo on CPU, nccl on CUDA. Precision: fp32 on CPU, bf16 on CUDA (``precision``).
- Optimizer: ``torch.optim.AdamW`` (decoupled weight decay; no weight decay on biases, norms and
  embeddings-free 1-D params). DeepSpeed's ``DeepSpeedCPUAdam`` would need another JIT compile
  and ``FusedAdam`` is CUDA-only; torch's AdamW is a ZeRO-supported client optimizer on both
  CPU and GPU (``fused=True`` on CUDA), so one code path serves both.
- Schedule: linear warm-up to ``lr`` over ``warmup_ratio * total_steps`` steps, then cosine
  decay to ``min_lr_ratio * lr`` at ``total_steps`` (a torch ``LambdaLR`` handed to DeepSpeed,
  so it is saved and restored with the DeepSpeed checkpoint).
- Gradient clipping by global norm (``grad_clip``) inside DeepSpeed; read the pre-clip norm
  with :func:`grad_norm` after ``engine.step()`` (ZeRO 1-3 and ZeRO-0 alike).
- ZeRO stage: 0 for one rank (the embedded default). ZeRO partitions optimizer state,
  gradients or weights across ranks; with a single rank there is nothing to partition, and
  ZeRO-1 only adds flat-buffer copies, about 25 ms of a ~190 ms SFT step on 2 CPU cores.
  Use 1-3 across GPUs. Under ZeRO-3 the module's own weights are empty outside a gather:
  save and evaluate through :func:`whole_copy` / :func:`whole_model`.
- Collectives on plain tensors (the ranks' metric sums) go through :func:`collective_device`:
  NCCL moves CUDA tensors only.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import math
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class OptimParams:
    """Optimizer / DeepSpeed settings; SFT and RL params nest or mirror these fields."""

    lr: float = 2e-3  # peak learning rate (after warm-up)
    weight_decay: float = 0.1  # AdamW decoupled weight decay on matrices
    betas: tuple[float, ...] = (0.9, 0.95)
    eps: float = 1e-8
    warmup_ratio: float = 0.05  # fraction of total steps spent warming up linearly
    min_lr_ratio: float = 0.1  # cosine floor as a fraction of lr
    grad_clip: float = 1.0  # max global grad norm (0 = no clipping)
    zero_stage: int = 0  # DeepSpeed ZeRO stage 0-3 (one rank: 0, nothing to partition)
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU


def free_port() -> int:
    """A TCP port that is free right now on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launched() -> bool:
    """True when a launcher (torchrun / deepspeed) already set the rank environment."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup_dist_env() -> None:
    """Fill in the one-process distributed env and the extensions cache (idempotent)."""
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO_ROOT / ".cache" / "torch_extensions"))
    if launched():
        os.environ.setdefault("LOCAL_RANK", os.environ["RANK"])
        return
    os.environ["RANK"] = "0"
    os.environ["WORLD_SIZE"] = "1"
    os.environ["LOCAL_RANK"] = "0"
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(free_port())


def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def collective_device() -> torch.device:
    """Where a tensor for a ``torch.distributed`` collective must live: the rank's GPU under
    NCCL (it moves no CPU tensors), else the CPU (gloo)."""
    d = torch.distributed
    if d.is_available() and d.is_initialized() and d.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def use_bf16(cfg: Any) -> bool:
    precision = getattr(cfg, "precision", "auto")
    if precision == "auto":
        return torch.cuda.is_available()
    return precision == "bf16"


def ds_config(cfg: Any, micro_batch_size: int = 1, grad_accum: int = 1) -> dict[str, Any]:
    """The DeepSpeed config dict for ``cfg`` (an :class:`OptimParams`-like object)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    conf: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": micro_batch_size * grad_accum * world,
        "gradient_clipping": float(cfg.grad_clip),
        "zero_optimization": {"stage": int(cfg.zero_stage)},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,  # we log ourselves
        "wall_clock_breakdown": False,
    }
    if use_bf16(cfg):
        conf["bf16"] = {"enabled": True}
    return conf


def lr_lambda(total_steps: int, warmup_ratio: float, min_lr_ratio: float):
    """Multiplier of the peak lr at step ``s``: linear warm-up, then cosine to the floor."""
    warmup = max(1, round(warmup_ratio * total_steps)) if warmup_ratio > 0 else 0
    total = max(total_steps, warmup + 1)

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only (biases and norm gains are 1-D and left alone)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def init_distributed() -> None:
    """Set the env and start the process group (gloo on CPU, nccl on CUDA) once."""
    import deepspeed

    setup_dist_env()
    if torch.cuda.is_available():
        torch.cuda.set_device(device())
    elif int(os.environ.get("WORLD_SIZE", "1")) == 1:
        _skip_shm_comm_build()
    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        deepspeed.init_distributed(dist_backend=backend, verbose=False)


def _skip_shm_comm_build() -> None:
    """One CPU rank: keep DeepSpeed from JIT-building its shared-memory all-reduce op.

    ``deepspeed.comm.torch.TorchBackend`` builds ``deepspeed_shm_comm`` on every CPU start
    (30-55 s on 2 cores the first time in a checkout, a second or so to load it after). The op
    only speeds up collectives between ranks on one host; a world of one has none, and the
    backend runs without it (``shm_comm_op`` None: plain gloo). Under torchrun with more
    ranks it is built as usual.
    """
    # not ``import deepspeed.comm.torch as m``: that resolves the attribute ``torch`` of
    # ``deepspeed.comm``, which is the torch package itself
    ds_torch = importlib.import_module("deepspeed.comm.torch")
    if hasattr(ds_torch, "build_shm_op"):
        ds_torch.build_shm_op = lambda: None


def init_engine(
    model: torch.nn.Module, cfg: Any, total_steps: int, micro_batch_size: int = 1,
    grad_accum: int = 1, zero_options: dict[str, Any] | None = None,
) -> Any:
    """Wrap ``model`` in a DeepSpeed engine with AdamW, warm-up + cosine and clipping.

    ``cfg`` needs the fields of :class:`OptimParams`; ``zero_options`` adds entries to the
    config's ``zero_optimization`` section. Returns the ``DeepSpeedEngine``; its ``module`` is
    the (possibly bf16) model on the right device, its ``lr_scheduler`` the schedule (stepped
    by ``engine.step()``).
    """
    import deepspeed

    init_distributed()
    if use_bf16(cfg):
        model = model.to(torch.bfloat16)
    model = model.to(device())
    # CUDA: the fused kernel. CPU: the multi-tensor (foreach) kernels, bit-identical to the
    # per-parameter loop torch picks there by default; the fused CPU kernel is faster but rounds
    # differently (docs/sft.md).
    fast = {"fused": True} if torch.cuda.is_available() else {"foreach": True}
    opt = torch.optim.AdamW(
        param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
        **fast,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_lambda(total_steps, cfg.warmup_ratio, cfg.min_lr_ratio)
    )
    config = ds_config(cfg, micro_batch_size, grad_accum)
    config["zero_optimization"].update(zero_options or {})
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=opt, lr_scheduler=sched, config=config,
    )
    if int(cfg.zero_stage) == 0 and not use_bf16(cfg):
        _keep_fp32_clip_norm(engine)
    return engine


def _keep_fp32_clip_norm(engine: Any) -> None:
    """ZeRO-0 in fp32: keep the global norm DeepSpeed's clipping computes.

    Without ZeRO and without mixed precision, ``DeepSpeedEngine._take_model_step`` clips with
    ``deepspeed.runtime.utils.clip_grad_norm_`` through ``clip_fp32_gradients`` and drops the
    norm it returns, so ``get_global_grad_norm()`` would stay ``None``. The same call, with
    its result stored where the ZeRO optimizers put theirs. With ``grad_clip`` 0 DeepSpeed
    does not clip, and the norm stays unknown (nan in the logs).
    """
    from deepspeed.runtime.utils import clip_grad_norm_

    def clip() -> None:
        engine._global_grad_norm = clip_grad_norm_(
            parameters=engine.module.parameters(), max_norm=engine.gradient_clipping(),
            mpu=engine.mpu)

    engine.clip_fp32_gradients = clip


def grad_norm(engine: Any) -> float:
    """Global gradient norm (before clipping) of the last ``engine.step()``; nan if unknown."""
    norm = engine.get_global_grad_norm()
    if norm is None:
        return float("nan")
    return float(norm.item() if torch.is_tensor(norm) else norm)


def current_lr(engine: Any) -> float:
    return float(engine.optimizer.param_groups[0]["lr"])


def whole_copy(model: torch.nn.Module, cfg: Any, rank: int) -> torch.nn.Module | None:
    """Rank 0's copy of ``model`` outside DeepSpeed under ZeRO-3 (None otherwise), on the CPU,
    to save and evaluate whole weights from (:func:`whole_model`). Call before
    :func:`init_engine`: ZeRO-3 partitions the model's weights in place, after which each rank
    holds a shard and ``engine.module``'s parameters are empty outside a gather."""
    if int(cfg.zero_stage) != 3 or rank != 0:
        return None
    return copy.deepcopy(model).cpu().requires_grad_(False)


@contextlib.contextmanager
def whole_model(engine: Any, whole: torch.nn.Module | None) -> Iterator[torch.nn.Module | None]:
    """The engine's model with whole weights: ZeRO 0-2 keep them on every rank, so it is
    ``engine.module``. Under ZeRO-3 every rank must enter (the gather is collective); the
    weights are gathered once, copied into rank 0's ``whole`` (:func:`whole_copy`, cast to
    the engine's dtype) and released again; rank 0 gets ``whole``, the others None.
    The copy runs outside DeepSpeed's hooks, so rank 0 can evaluate it while the others wait."""
    if engine.zero_optimization_stage() != 3:
        yield engine.module
        return
    import deepspeed

    params = list(engine.module.parameters())
    with deepspeed.zero.GatheredParameters(params):
        if whole is not None:
            copy_weights(whole.to(dtype=params[0].dtype), engine.module)
    yield whole


def copy_weights(dst: torch.nn.Module, src: torch.nn.Module) -> None:
    """Copy ``src``'s parameters into ``dst``'s, name by name (a copy of the same model;
    under ZeRO-3 call it where ``src``'s weights are gathered)."""
    with torch.no_grad():
        for (name, d), (src_name, s) in zip(dst.named_parameters(), src.named_parameters(),
                                            strict=True):
            if name != src_name:
                raise RuntimeError(f"model copy out of step: {name} vs {src_name}")
            d.copy_(s)

