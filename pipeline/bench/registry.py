"""Register the final model in the MLflow model registry with its bench results.

The model is logged with the ``transformers`` flavor (model + tokenizer, task
``text-generation``) from its HF folder, registered under ``name``, given ``alias`` (e.g.
``candidate``), and tagged with the bench metrics (``bench.<benchmark>.<metric>``) both on the
model version and as the logged model's metrics. Load it back with::

    import mlflow
    parts = mlflow.transformers.load_model("models:/ringlite@candidate", return_type="components")
    model, tokenizer = parts["model"], parts["tokenizer"]
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pipeline.params import flatten


def bench_tags(metrics: Mapping[str, Any]) -> dict[str, str]:
    """Flat ``bench.<benchmark>.<metric>`` -> value strings (domains included)."""
    return {f"bench.{k}": f"{v:.4f}" if isinstance(v, float) else str(v)
            for k, v in flatten(metrics).items()}


def register_model(model_dir: str | Path, name: str, alias: str,
                   metrics: Mapping[str, Any]) -> Any:
    """Log ``model_dir`` in the active run, register it as ``name``, set ``alias``.

    Returns the registered ModelVersion.
    """
    import mlflow
    from mlflow import MlflowClient
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    tags = bench_tags(metrics)
    numeric = {k: float(v) for k, v in flatten(metrics).items()
               if isinstance(v, int | float) and not isinstance(v, bool)}
    with _hub_offline():  # a local model: no model card or license lookup on a hub
        info = mlflow.transformers.log_model(
            transformers_model={"model": model, "tokenizer": tokenizer},
            name="model", task="text-generation", registered_model_name=name,
            model_card=_card(name, metrics), metadata={"source_dir": str(model_dir)}, tags=tags,
            pip_requirements=[f"transformers=={_version('transformers')}",
                              f"torch=={_version('torch')}"],
        )
    if numeric:
        mlflow.log_metrics({f"bench.{k}": v for k, v in numeric.items()}, model_id=info.model_id)
    client = MlflowClient()
    version = info.registered_model_version
    for k, v in tags.items():
        client.set_model_version_tag(name, str(version), k, v)
    client.set_registered_model_alias(name, alias, str(version))
    return client.get_model_version(name, str(version))


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """huggingface_hub refuses network calls inside (it checks this flag per request)."""
    import huggingface_hub.constants as hub

    old = hub.HF_HUB_OFFLINE
    hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = old


def _card(name: str, metrics: Mapping[str, Any]) -> Any:
    from huggingface_hub import ModelCard

    lines = "\n".join(f"- {k}: {v}" for k, v in bench_tags(metrics).items())
    return ModelCard(f"---\nlicense: apache-2.0\n---\n# {name}\n\nRing-lite-style tiny MoE "
                     f"trained by the ringlite pipeline.\n\n## Bench\n{lines}\n")


def _version(pkg: str) -> str:
    from importlib.metadata import version

    return version(pkg).split("+")[0]
