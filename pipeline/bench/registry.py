"""Register the final model in the MLflow model registry with its bench results.

The model is logged with the ``transformers`` flavor (model + tokenizer, task
``text-generation``) from its HF folder, registered under ``name`` and given ``alias`` (e.g.
``candidate``). The model version's description says what trained it, its headline scores and
its per-benchmark table, the params digest and the commit; its tags are a handful
(:func:`version_tags`, at most :data:`MAX_VERSION_TAGS`); the logged model carries the bench
run's headline scores of this model as metrics. Load it back with::

    import mlflow
    parts = mlflow.transformers.load_model("models:/ringlite@candidate", return_type="components")
    model, tokenizer = parts["model"], parts["tokenizer"]
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.bench.report import ROLLUPS, score_keys

MAX_VERSION_TAGS = 10
RECIPE = ("curate -> base -> distill -> sft -> select -> difficulty -> rl_reasoning -> "
          "rl_general -> bench")


@dataclass(frozen=True)
class Provenance:
    """What produced a registered model: its stage, the bench run, commit, params digest."""

    stage: str
    run_id: str | None
    commit: str
    params_digest: str
    headline: str


def _pct(v: float) -> str:
    return f"{100 * v:.1f}"


def version_tags(metrics: Mapping[str, Any], prov: Provenance) -> dict[str, str]:
    """The model version's tags: provenance and the pooled scores (avg@k, highest pass@k)."""
    tags = {"stage": prov.stage, "git_commit": prov.commit[:12],
            "params_digest": prov.params_digest}
    for group in ROLLUPS:
        entry = metrics.get(group)
        if entry:
            for k in (score_keys(entry)[0], score_keys(entry)[-1]):
                tags[f"bench.{group}.{k}"] = f"{entry[k]:.4f}"
    return dict(list(tags.items())[:MAX_VERSION_TAGS])


def description(name: str, metrics: Mapping[str, Any], prov: Provenance) -> str:
    """Markdown: what trained the model, the headline, its scores per benchmark, provenance."""
    benches = sorted(b for b in metrics if not b.startswith("_"))
    keys = score_keys(metrics[benches[0]]) if benches else []
    head = "| benchmark | problems | " + " | ".join(keys) + " |"
    rows = [f"| {b} | {metrics[b].get('problems', '-')} | "
            + " | ".join(_pct(metrics[b][k]) if k in metrics[b] else "-" for k in keys) + " |"
            for b in benches]
    return "\n".join([
        f"**{prov.headline}**", "",
        f"The `{prov.stage}` model of the ringlite pipeline ({RECIPE}), registered as "
        f"`{name}` by the bench stage.", "",
        head, "|---|---:|" + "---:|" * len(keys), *rows, "",
        "Scores in % (avg@k over k samples per problem; unbiased pass@k).", "",
        f"- bench run: `{prov.run_id}`",
        f"- git commit: `{prov.commit}`",
        f"- params digest (SHA-256 of params.yaml): `{prov.params_digest}`",
    ])


def register_model(model_dir: str | Path, name: str, alias: str,
                   metrics: Mapping[str, Any], prov: Provenance,
                   linked: Mapping[str, float] | None = None) -> Any:
    """Log ``model_dir`` in the active run, register it as ``name`` with a description and
    :func:`version_tags`, set ``alias``. ``linked``: run metrics to show on the logged model
    too (MLflow logs a model's metrics into the active run, so they are keys the run already
    has). Returns the registered ModelVersion."""
    import mlflow
    from mlflow import MlflowClient
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    tags = version_tags(metrics, prov)
    text = description(name, metrics, prov)
    with _hub_offline():  # a local model: no model card or license lookup on a hub
        info = mlflow.transformers.log_model(
            transformers_model={"model": model, "tokenizer": tokenizer},
            name="model", task="text-generation", registered_model_name=name,
            model_card=_card(text), metadata={"source_dir": str(model_dir)}, tags=tags,
            pip_requirements=[f"transformers=={_version('transformers')}",
                              f"torch=={_version('torch')}"],
        )
    if linked:
        mlflow.log_metrics(dict(linked), model_id=info.model_id)
    client = MlflowClient()
    version = str(info.registered_model_version)
    client.update_model_version(name, version, description=text)
    for k, v in tags.items():
        client.set_model_version_tag(name, version, k, v)
    client.set_registered_model_alias(name, alias, version)
    return client.get_model_version(name, version)


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


def _card(text: str) -> Any:
    from huggingface_hub import ModelCard

    return ModelCard(f"---\nlicense: apache-2.0\n---\n{text}\n")


def _version(pkg: str) -> str:
    from importlib.metadata import version

    return version(pkg).split("+")[0]
