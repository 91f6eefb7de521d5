"""Re-run a stage module under ``torchrun`` (the one launcher of SFT and RL).

A stage whose params ask for several ranks (``num_processes`` per node, ``nnodes`` nodes) and
that was started as a plain ``python -m pipeline.stages.<stage>`` re-executes itself through
:func:`relaunch`; a stage already started by a launcher (``torchrun``, the ``deepspeed``
launcher: ``RANK`` and ``WORLD_SIZE`` are set, see
:func:`pipeline.train.deepspeed_engine.launched`) runs with the launcher's ranks as they are.

Rendezvous:

- one node: ``torchrun --standalone --nproc_per_node=N`` (a local rendezvous on a free port);
- several nodes: ``torchrun --nnodes=M --node_rank=R --master_addr=A --master_port=P
  --nproc_per_node=N`` on every node, the same command with its own node rank. Each of
  ``NNODES``, ``NODE_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` in the environment overrides the
  params value, so one params.yaml serves every node and each node exports its ``NODE_RANK``.

The ranks run with ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger("launch")


@dataclass(frozen=True)
class Rendezvous:
    """Where and how many: ranks per node, nodes, this node's rank, the master's address."""

    nproc_per_node: int
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500

    @property
    def world(self) -> int:
        return self.nproc_per_node * self.nnodes

    @classmethod
    def resolve(cls, nproc_per_node: int, nnodes: int = 1, node_rank: int = 0,
                master_addr: str = "127.0.0.1", master_port: int = 29500,
                env: Mapping[str, str] | None = None) -> Rendezvous:
        """The params' values, each overridden by its environment variable when set."""
        env = os.environ if env is None else env
        r = cls(int(nproc_per_node), int(env.get("NNODES", nnodes)),
                int(env.get("NODE_RANK", node_rank)), str(env.get("MASTER_ADDR", master_addr)),
                int(env.get("MASTER_PORT", master_port)))
        if r.nproc_per_node < 1 or r.nnodes < 1 or not 0 <= r.node_rank < r.nnodes:
            raise ValueError(f"bad rendezvous {r}: need nproc_per_node >= 1, nnodes >= 1 and "
                             "0 <= node_rank < nnodes")
        return r


def torchrun_command(module: str, argv: Sequence[str], rdzv: Rendezvous) -> list[str]:
    """The ``torchrun`` command line that runs ``python -m module argv`` on ``rdzv``."""
    cmd = [sys.executable, "-m", "torch.distributed.run"]
    if rdzv.nnodes == 1:
        cmd.append("--standalone")
    else:
        cmd += [f"--nnodes={rdzv.nnodes}", f"--node_rank={rdzv.node_rank}",
                f"--master_addr={rdzv.master_addr}", f"--master_port={rdzv.master_port}"]
    return [*cmd, f"--nproc_per_node={rdzv.nproc_per_node}", "-m", module, *argv]


def relaunch(module: str, argv: Sequence[str], rdzv: Rendezvous) -> None:
    """Re-run ``module`` under torchrun on ``rdzv``; exits with its status."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = torchrun_command(module, argv, rdzv)
    log.info("relaunching under torchrun: %s", " ".join(cmd))
    sys.exit(subprocess.run(cmd, env=env).returncode)
