"""The policy's optimizer: DeepSpeed (as in SFT) or plain torch AdamW with the same schedule.

Both expose ``module`` (the model to run forward on), ``step(loss) -> grad norm before
clipping``, ``lr``, ``save(dir)`` / ``load(dir)`` of the whole optimizer state (weights,
moments, schedule) for resume, and ``full_weights()``, a context in which ``module`` holds its
whole weights (ZeRO-3 keeps them partitioned outside a forward and gathers them there; a no-op
otherwise). DeepSpeed setup is the shared
:func:`pipeline.train.deepspeed_engine.init_engine` (ZeRO stage, gloo on CPU, bf16 on GPU).

``local`` is the model to sample from and to score without grad: ``module`` itself, except
under ZeRO-3. There ``module`` holds only its rank's partition of each weight outside a
forward (the torch engine's decode reads the weights directly), and every forward gathers
each layer's weights in a collective, so all ranks would have to run the same forwards in the
same order, which rollouts of different lengths never do; ``local`` is then a plain copy of
the whole weights (a second copy of the model in memory), brought up to date by
``refresh_local()`` inside ``full_weights()`` (one gather per sync, which every rank enters).
``partitioned`` says whether ``module``'s forwards are collectives (ZeRO-3).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from pipeline.train.deepspeed_engine import (
    copy_weights,
    grad_norm,
    init_engine,
    lr_lambda,
    param_groups,
)

TAG = "rl"
# An RL update runs several forwards through the policy before its one backward (length-sorted
# chunks; a chunk's shared prompts run apart from its responses). DeepSpeed by default makes
# the MoE blocks of qwen2_moe and kin ZeRO-3 "leaf" modules, whose gradients are reduced after
# each backward through the block, so once per forward: ZeRO-3 then fails on a gradient reduced
# twice. Without leaves every weight is gathered by its own module and reduced once when its
# gradient is whole; the routed experts of a layer are one module (3-D weights), called at
# every forward whatever the routing, so the ranks' gathers stay in step.
ZERO3 = {"leaf_module": {"classes": []}}


class DeepSpeedUpdater:
    def __init__(self, model: torch.nn.Module, optim: Any, total_steps: int) -> None:
        # copied before DeepSpeed partitions the weights in place (ZeRO-3)
        plain = copy.deepcopy(model) if int(optim.zero_stage) == 3 else None
        self.engine = init_engine(model, optim, total_steps=total_steps,
                                  zero_options=ZERO3 if int(optim.zero_stage) == 3 else None)
        self.module = self.engine.module
        self.partitioned = self.engine.zero_optimization_stage() == 3
        self.local = self.module
        if plain is not None:
            p = next(self.module.parameters())  # device and dtype as init_engine set them
            self.local = plain.to(device=p.device, dtype=p.dtype).requires_grad_(False)
            with self.full_weights():
                self.refresh_local()

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

    def refresh_local(self) -> None:
        """Copy the policy's weights into ``local`` (inside :meth:`full_weights`, where they
        are whole); nothing to do when ``local`` is the policy itself."""
        if self.local is not self.module:
            copy_weights(self.local, self.module)

    def save(self, folder: Path) -> None:
        self.engine.save_checkpoint(str(folder), tag=TAG, save_latest=False)

    def load(self, folder: Path) -> None:
        path, _ = self.engine.load_checkpoint(str(folder), tag=TAG)
        if path is None:
            raise FileNotFoundError(f"{folder}: no DeepSpeed checkpoint tagged {TAG!r}")


class TorchUpdater:
    partitioned = False

    def __init__(self, model: torch.nn.Module, optim: Any, total_steps: int) -> None:
        self.module = self.local = model
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

    def refresh_local(self) -> None:
        """``local`` is the policy itself: nothing to copy."""

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
