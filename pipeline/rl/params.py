"""RLParams: one frozen dataclass for both RL stages (sections ``rl_reasoning``, ``rl_general``).

Every field is a hyperparameter of the C3PO step (``docs/rl.md`` explains each choice the
paper leaves open). Symbols: L = ``prompts_per_step``, K = ``samples_per_prompt``,
Φ = ``token_budget``, ε = ``clip_eps``, β = ``kl_coef``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pipeline.rl.budget import WalkOrder
from pipeline.rl.c3po import KlEstimator, Normaliser
from pipeline.rl.prompts import PromptOrder


@dataclass(frozen=True)
class RLOptim:
    """Optimizer / DeepSpeed settings (fields of ``pipeline.train.deepspeed_engine.OptimParams``)."""

    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, ...] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_ratio: float = 0.15
    min_lr_ratio: float = 1.0  # 1.0 = constant lr after warm-up
    grad_clip: float = 1.0
    zero_stage: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"


@dataclass(frozen=True)
class RLParams:
    """One RL stage: rollout, reward, C3PO update, evaluation and checkpoint cadence."""

    steps: int = 60  # RL steps (one rollout batch each)
    prompts_per_step: int = 32  # L
    samples_per_prompt: int = 8  # K
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    # domain -> sampling weight for the step's prompts; empty = each task equally likely.
    domain_mix: Mapping[str, float] = field(default_factory=dict)
    # epochs: without replacement (a prompt returns only after the whole pool has been drawn);
    # with_replacement: independent draws (pipeline/rl/prompts.py)
    prompt_order: PromptOrder = "epochs"
    # Dynamic sampling: while the step's groups with reward variance hold fewer than Φ tokens
    # (budget normaliser; L groups otherwise), roll out another L prompts, at most this many
    # rounds in all (a cap: a step that ends short trains what it has, and says so in its
    # ``budget_fill``). 1 = one rollout of L prompts per step.
    max_rollout_rounds: int = 6
    # A seeded slice of the pool never trained on, scored every eval_every steps with
    # holdout_samples samples at the rollout decoding (0 = none).
    holdout_prompts: int = 150
    holdout_samples: int = 4
    # Placebo control: rewards shuffled within each group before the advantages (same group
    # means, same zero-variance groups, zero expected gradient). Logged rewards stay the real ones.
    placebo: bool = False
    # Φ: tokens trained per optimizer step when normaliser == "budget".
    token_budget: int = 12288
    # "step": one selection of Φ tokens per rollout batch, reused by every update (PPO epochs);
    # "minibatch": the walk fills updates_per_rollout mini-batches of Φ tokens each.
    budget_granularity: Literal["step", "minibatch"] = "step"
    updates_per_rollout: int = 1  # optimizer steps per rollout batch (ratio/clip real from #2)
    walk_order: WalkOrder = "interleaved"
    drop_zero_variance: bool = True  # remove all-equal-reward groups before the budget walk
    normaliser: Normaliser = "budget"  # budget (C3PO) | token_mean (DAPO) | seq_mean (GRPO)
    clip_eps: float = 0.2
    kl_coef: float = 0.1  # β, against the frozen start model
    kl_estimator: KlEstimator = "k2"  # k1 | k2 | k3 (pipeline/rl/c3po.py)
    entropy_coef: float = 0.0  # α_ent, exploration bonus (subtracted)
    balance_coef: float = 1e-5  # α_bal, MoE load balance
    z_coef: float = 1e-7  # α_z, router z-loss
    adv_eps: float = 1e-6
    optim: RLOptim = field(default_factory=RLOptim)
    deepspeed: bool = True  # False: plain torch AdamW (same schedule/clip), for quick tests
    # torch deterministic algorithms: reruns with the same seeds give the same weights
    # (pipeline/train/determinism.py says why they would not otherwise)
    deterministic: bool = True
    engine: Literal["torch", "vllm"] = "torch"
    # engine "vllm" on a GPU: the share of the GPU's memory vLLM takes (weights + KV cache);
    # the policy, the reference and the optimizer states share the same GPU
    vllm_gpu_memory: float = 0.3
    forward_rows: int = 32  # rows per length-sorted forward chunk (scoring and update)
    eval_every: int = 60  # held-out eval every N steps (and at step 0 and the end)
    eval_tasks: int = 350  # held-out tasks of the stage's domain group (a stratified sample)
    eval_samples: int = 4  # samples per held-out task (avg@k, with its standard error)
    eval_temperature: float = 1.0  # 0 = greedy
    eval_top_p: float = 0.95
    checkpoint_every: int = 10  # resume state every N steps (0 = only at the end)
    reward_workers: int = 2
    reward_timeout_s: float = 10.0
    # Data-parallel ranks (docs/rl.md, "Several ranks and machines"): ranks per node and
    # nodes; > 1 rank in all re-runs the stage under torchrun. Each rank rolls out its share of
    # a step's prompts; Φ is global (summed over ranks). NNODES, NODE_RANK, MASTER_ADDR and
    # MASTER_PORT in the environment override the last four.
    num_processes: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500

    def __post_init__(self) -> None:
        positive = ("steps", "prompts_per_step", "samples_per_prompt", "max_new_tokens",
                    "token_budget", "updates_per_rollout", "forward_rows", "eval_tasks",
                    "eval_samples", "max_rollout_rounds", "holdout_samples", "num_processes",
                    "nnodes")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"rl.{name}: must be > 0, got {getattr(self, name)}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"rl.top_p: must be in (0, 1], got {self.top_p}")
        if not 0 < self.eval_top_p <= 1:
            raise ValueError(f"rl.eval_top_p: must be in (0, 1], got {self.eval_top_p}")
        if not 0 < self.vllm_gpu_memory < 1:
            raise ValueError(f"rl.vllm_gpu_memory: must be in (0, 1), got {self.vllm_gpu_memory}")
        if self.temperature <= 0:
            raise ValueError(f"rl.temperature: rollouts sample, so it must be > 0, got "
                             f"{self.temperature}")
        if self.holdout_prompts < 0:
            raise ValueError(f"rl.holdout_prompts: must be >= 0, got {self.holdout_prompts}")
        if not 0 <= self.node_rank < self.nnodes:
            raise ValueError(f"rl.node_rank: must be in [0, nnodes={self.nnodes}), got "
                             f"{self.node_rank}")
        if self.num_processes * self.nnodes > 1:
            check_ranks(self)
        for domain, w in self.domain_mix.items():
            if w < 0:
                raise ValueError(f"rl.domain_mix.{domain}: weight must be >= 0, got {w}")


def check_ranks(p: RLParams) -> None:
    """What several ranks need: DeepSpeed (it all-reduces the policy's gradients). Any ZeRO
    stage works; under ZeRO-3, which gathers every layer's weights in a collective at each
    forward, the ranks sample and score on a plain copy of the policy and pad their training
    forwards to the same count (:mod:`pipeline.rl.optim`, :func:`pipeline.rl.trainer.update_loss`)."""
    if not p.deepspeed:
        raise ValueError("rl.num_processes / rl.nnodes: several ranks need deepspeed: true "
                         "(DeepSpeed all-reduces the policy's gradients)")
