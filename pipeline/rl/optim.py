"""The policy's optimizer: DeepSpeed (as in SFT) or plain torch AdamW with the same schedule.

Both expose ``module`` (the model to run forward on), ``step(loss) -> grad norm before
clipping``, ``lr``, ``save(dir)`` / ``load(dir)`` of the whole optimizer state (weights,
moments, schedule) for resume, and ``full_weights()``, a context in which ``module`` holds its
whole weights (ZeRO-3 keeps them partitioned outside a forward and gathers them there; a no-op
otherwise). DeepSpeed setup is the shared
:func:`pipeline.train.deepspeed_engine.init_engine` (ZeRO stage, gloo on CPU, bf16 on GPU).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from pipeline.train.deepspeed_engine import grad_norm, init_engine, lr_lambda, param_groups

TAG = "rl"


class DeepSpeedUpdater:
    def __init__(self, model: torch.nn.Module, optim: Any, total_steps: int) -> None:
        self.engine = init_engine(model, optim, total_steps=total_steps)
        self.module = self.engine.module

    def forward_model(self) -> Any:
        return self.engine

    def step(self, loss: torch.Tensor) -> float:
        self.engine.backward(loss)
        self.engine.step()
        return grad_norm(self.engine)

    @property
    def lr(self) -> float:
        return float(self.engine.optimizer.param_groups[0]["lr"])

    @contextlib.contextmanager
    def full_weights(self) -> Iterator[None]:
        """Collective under ZeRO-3 (every rank enters it)."""
        if self.engine.zero_optimization_stage() == 3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(self.module.parameters())):
                yield
        else:
            yield

    def save(self, folder: Path) -> None:
        self.engine.save_checkpoint(str(folder), tag=TAG, save_latest=False)

    def load(self, folder: Path) -> None:
        path, _ = self.engine.load_checkpoint(str(folder), tag=TAG)
        if path is None:
            raise FileNotFoundError(f"{folder}: no DeepSpeed checkpoint tagged {TAG!r}")


class TorchUpdater:
    def __init__(self, model: torch.nn.Module, optim: Any, total_steps: int) -> None:
        self.module = model
        self.clip = float(optim.grad_clip)
        self.opt = torch.optim.AdamW(param_groups(model, optim.weight_decay), lr=optim.lr,
                                     betas=tuple(optim.betas), eps=optim.eps)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lr_lambda(total_steps, optim.warmup_ratio, optim.min_lr_ratio))

    def forward_model(self) -> Any:
        return self.module

    def step(self, loss: torch.Tensor) -> float:
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.module.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, self.clip if self.clip > 0 else float("inf"))
        self.opt.step()
        self.sched.step()
        return float(norm)

    @property
    def lr(self) -> float:
        return float(self.opt.param_groups[0]["lr"])

    @contextlib.contextmanager
    def full_weights(self) -> Iterator[None]:
        yield

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({"model": self.module.state_dict(), "opt": self.opt.state_dict(),
                    "sched": self.sched.state_dict()}, folder / "optim.pt")

    def load(self, folder: Path) -> None:
        state = torch.load(folder / "optim.pt", weights_only=False)
        self.module.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])


def make_updater(model: torch.nn.Module, optim: Any, total_steps: int, deepspeed: bool) -> Any:
    cls = DeepSpeedUpdater if deepspeed else TorchUpdater
    return cls(model, optim, total_steps)
