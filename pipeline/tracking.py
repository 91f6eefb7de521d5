"""MLflow tracking for stage runs.

Every stage ``main()`` wraps its work in :func:`stage_run`::

    with stage_run("curate", params) as run:
        run.step(0, loss=1.2)                  # per-step metric, logged as it happens
        run.metrics({"kept": 10})              # summary metrics
        run.artifact("data/curated/stats.json")

Where runs go:
- ``MLFLOW_TRACKING_URI`` if set (a shared server), else a sqlite store ``mlflow.db`` in the
  working directory (the repo root, where DVC runs stages) with artifacts in ``mlartifacts/``.
- Experiment: ``MLFLOW_EXPERIMENT_NAME`` or ``ringlite``.
- Under the Prefect flow, ``RINGLITE_PARENT_RUN_ID`` holds the flow's parent run: stage runs
  nest under it and share its ``pipeline_run_id`` tag. Under a plain ``dvc repro`` each stage
  run stands alone and is its own pipeline run.
- ``RINGLITE_TRACKING=off`` disables tracking (unit tests of stage cores); every call is a no-op.

Tags on every stage run: ``stage``, ``git_commit``, ``pipeline_run_id``.
Metrics are files first (DVC tracks them); MLflow gets what a person reads: per-step curves
under plain names (``loss``, ``reward``), a few headline values under ``summary/`` (the chart
view draws them in a section of their own, apart from the curves), and the detail (per domain,
per benchmark, per epoch) as tables and files. A stage run stays within
:data:`METRIC_BUDGET` metric keys (the bench run within :data:`BENCH_METRIC_BUDGET`); a run
that logs more says so on stderr when it ends.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pipeline.atomic import write_text
from pipeline.params import as_dict, flatten

PARENT_ENV = "RINGLITE_PARENT_RUN_ID"
# A name for the next stage run other than its stage (an experiment arm: "findings/<arm>")
RUN_NAME_ENV = "RINGLITE_RUN_NAME"
PIPELINE_ENV = "RINGLITE_PIPELINE_RUN_ID"
DEFAULT_EXPERIMENT = "ringlite"
SUMMARY = "summary/"  # prefix of a run's headline values (an MLflow chart section)
METRIC_BUDGET = 40  # metric keys per stage run
BENCH_METRIC_BUDGET = 60
# MLflow's experiment type: a training experiment (runs, models, registry), not a GenAI one.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
EXPERIMENT_NOTE = (
    "Ring-lite pipeline runs. Each pipeline execution is one parent run named "
    "`pipeline: ...` (what ran, what was cached, the bench headline); its stage runs "
    "(`curate` ... `bench`) are nested under it. The final model is registered under "
    "*Models* with its bench scores in the version's description."
)


def tracking_enabled() -> bool:
    return os.environ.get("RINGLITE_TRACKING", "on").lower() not in ("off", "0", "false")


def tracking_uri(root: Path | None = None) -> str:
    root = root or Path.cwd()
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlflow.db').resolve()}"


def git_commit(root: Path | None = None) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root or Path.cwd(), capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def setup_mlflow(root: Path | None = None):
    """Point mlflow at the store and experiment; return the mlflow module."""
    import mlflow

    root = root or Path.cwd()
    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT)
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        artifact_location = None
        if uri.startswith("sqlite:"):
            artifact_location = (root / "mlartifacts").resolve().as_uri()
        tags = {**EXPERIMENT_KIND, "mlflow.note.content": EXPERIMENT_NOTE}
        with contextlib.suppress(Exception):  # created concurrently by another process
            mlflow.create_experiment(name, artifact_location=artifact_location, tags=tags)
    elif any(exp.tags.get(k) != v for k, v in EXPERIMENT_KIND.items()):
        for k, v in EXPERIMENT_KIND.items():  # an experiment created before the tag existed
            mlflow.MlflowClient().set_experiment_tag(exp.experiment_id, k, v)
    mlflow.set_experiment(name)
    return mlflow


def experiment_id() -> str | None:
    """The id of the active experiment (after :func:`setup_mlflow`)."""
    import mlflow

    exp = mlflow.get_experiment_by_name(
        os.environ.get("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT))
    return exp.experiment_id if exp else None


def ui_base_url() -> str:
    """Where a person opens the MLflow UI: the tracking server itself when it is one, else
    ``MLFLOW_UI_URL`` or the address ``make ui`` serves (http://127.0.0.1:5000)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    return os.environ.get("MLFLOW_UI_URL", "http://127.0.0.1:5000").rstrip("/")


def run_url(exp_id: str, run_id: str) -> str:
    return f"{ui_base_url()}/#/experiments/{exp_id}/runs/{run_id}"


def local_source(path: str | Path) -> Any:
    """An MLflow dataset source for a local file, named explicitly: a bare path string matches
    two registered source types (for "" and "file:" URIs) and MLflow warns that it had to
    guess."""
    from mlflow.data.dataset_source_registry import get_registered_sources

    cls = next(s for s in get_registered_sources() if s.__name__ == "LocalArtifactDatasetSource")
    return cls(Path(path).resolve().as_uri())


def clip_spikes(values: list[float], factor: float = 3.0) -> float:
    """The last of ``values`` capped at ``factor`` x the median of the positive values so far
    (all of them, the last included): one spike no longer flattens the rest of a chart. With no
    positive value yet the last value is returned as it is."""
    positive = [v for v in values if v > 0]
    last = values[-1]
    if not positive:
        return last
    return min(last, factor * statistics.median(positive))


class StageRun:
    """Handle passed to a stage's main(); every method is a no-op when tracking is off."""

    def __init__(self, mlflow_module: Any | None, run: Any | None):
        self._mlflow = mlflow_module
        self.run = run
        self.steps: list[dict[str, Any]] = []
        self.metric_keys: set[str] = set()  # every metric key logged to MLflow

    @property
    def run_id(self) -> str | None:
        return self.run.info.run_id if self.run else None

    def step(self, step: int, **metrics: float) -> None:
        """Log per-step metrics now, and keep them for :meth:`write_steps`."""
        self.steps.append({"step": step, **metrics})
        self.log_at(step, metrics)

    def record(self, step: int, row: Mapping[str, Any], chart: Mapping[str, Any]) -> None:
        """Keep the whole ``row`` for :meth:`write_steps`; log only ``chart`` (the curves worth
        drawing) to MLflow."""
        self.steps.append({"step": step, **row})
        self.log_at(step, chart)

    def log_at(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Log metrics at ``step`` to MLflow only (not kept for :meth:`write_steps`)."""
        if self._mlflow:
            clean = {k: float(v) for k, v in metrics.items() if v is not None}
            self.metric_keys.update(clean)
            self._mlflow.log_metrics(clean, step=step)

    def metrics(self, values: Mapping[str, Any], prefix: str = SUMMARY) -> None:
        """Log headline values under ``prefix`` (nested dicts are flattened; booleans count as
        0/1; other non-numbers are skipped)."""
        if not self._mlflow:
            return
        nums = {f"{prefix}{k}": float(v) for k, v in numeric(values).items()}
        if nums:
            self.metric_keys.update(nums)
            self._mlflow.log_metrics(nums)

    def params(self, values: Mapping[str, Any]) -> None:
        if self._mlflow:
            flat = {k: str(v)[:6000] for k, v in flatten(values).items()}
            self._mlflow.log_params(flat)

    def tags(self, values: Mapping[str, Any]) -> None:
        if self._mlflow:
            self._mlflow.set_tags({k: str(v) for k, v in values.items()})

    def artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        p = Path(path)
        if not self._mlflow or not p.exists():
            return
        if p.is_dir():
            self._mlflow.log_artifacts(str(p), artifact_path=artifact_path or p.name)
        else:
            self._mlflow.log_artifact(str(p), artifact_path=artifact_path)

    def table(self, rows: Any, artifact_file: str) -> None:
        """Log a table (polars/pandas frame, dict of columns, or list of row dicts) as an MLflow
        table artifact."""
        if not self._mlflow:
            return
        if isinstance(rows, list):
            import pandas as pd

            rows = pd.DataFrame(rows)
        if hasattr(rows, "to_pandas"):
            rows = rows.to_pandas()
        self._mlflow.log_table(data=rows, artifact_file=artifact_file)

    def dataset(self, df: Any, name: str, source: str, context: str = "input") -> None:
        """Log a polars frame as an MLflow input dataset (with its digest)."""
        if not self._mlflow:
            return
        import mlflow.data

        pdf = df.to_pandas() if hasattr(df, "to_pandas") else df
        with warnings.catch_warnings():
            # MLflow's hint that integer columns cannot hold missing values: ours hold none
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
            ds = mlflow.data.from_pandas(pdf, source=local_source(source), name=name)
            self._mlflow.log_input(ds, context=context)

    def figure(self, fig: Any, artifact_file: str) -> None:
        if self._mlflow:
            self._mlflow.log_figure(fig, artifact_file)

    def text(self, text: str, artifact_file: str) -> None:
        if self._mlflow:
            self._mlflow.log_text(text, artifact_file)

    def write_steps(self, path: str | Path) -> None:
        """Write the per-step metrics as a CSV (a DVC plots file), atomically."""
        keys: list[str] = []
        for row in self.steps:
            keys += [k for k in row if k not in keys]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(self.steps)
        write_text(path, buf.getvalue())


class StepWindow:
    """Per-step metrics averaged over windows of ``every`` steps before they reach MLflow.

    A synchronous MLflow write costs a few milliseconds to tens of milliseconds (sqlite
    store, 2 busy cores: 18 ms measured), as much as a tenth of a small SFT step. One point per
    window keeps the curves (and the MLflow store) light; the stage still writes every step
    to its ``steps.csv``. Each metric is the window's mean, except the ``last`` keys (a
    schedule position such as lr or epoch), which take the window's last value. Call
    :meth:`flush` at the end of an epoch or a run so a partial window is not lost.
    """

    def __init__(self, run: StageRun, every: int, last: tuple[str, ...] = ()):
        if every < 1:
            raise ValueError(f"StepWindow: every must be >= 1, got {every}")
        self.run, self.every, self.last = run, every, set(last)
        self.rows: list[tuple[int, Mapping[str, Any]]] = []

    def add(self, step: int, metrics: Mapping[str, Any]) -> None:
        self.rows.append((step, metrics))
        if len(self.rows) >= self.every:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        step = self.rows[-1][0]
        self.run.log_at(step, window_means([m for _, m in self.rows], self.last))
        self.rows = []


def numeric(values: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a (nested) mapping, flattened to dotted keys; booleans as 0/1."""
    return {k: float(v) for k, v in flatten(values).items()
            if isinstance(v, int | float) and v == v}


def rows_of(nested: Mapping[str, Mapping[str, Any]], key: str) -> list[dict[str, Any]]:
    """``{"math": {"kept": 3}}`` -> ``[{key: "math", "kept": 3}]``: one table row per entry."""
    return [{key: name, **flatten(values)} for name, values in nested.items()]


def within_budget(keys: set[str], budget: int, stage: str) -> bool:
    """Whether a run's metric keys fit its budget; if not, say so on stderr."""
    if len(keys) <= budget:
        return True
    print(f"{stage}: {len(keys)} MLflow metric keys, over the budget of {budget} "
          f"(pipeline.tracking): {sorted(keys)}", file=sys.stderr)
    return False


def window_means(rows: list[Mapping[str, Any]], last: set[str]) -> dict[str, float]:
    """Mean of each metric over ``rows`` (None and NaN skipped); ``last`` keys: last value."""
    out: dict[str, float] = {}
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    for k in keys:
        vals = [float(r[k]) for r in rows if r.get(k) is not None and r[k] == r[k]]
        if vals:
            out[k] = vals[-1] if k in last else sum(vals) / len(vals)
    return out


@contextlib.contextmanager
def stage_run(stage: str, params: Any = None, run_name: str | None = None,
              metric_budget: int = METRIC_BUDGET) -> Iterator[StageRun]:
    """Open the MLflow run of one stage execution (nested under the flow's run if any)."""
    if not tracking_enabled():
        yield StageRun(None, None)
        return
    mlflow = setup_mlflow()
    parent = os.environ.get(PARENT_ENV) or None
    tags = {"stage": stage, "git_commit": git_commit()}
    t0 = time.time()
    with mlflow.start_run(
        run_name=run_name or os.environ.get(RUN_NAME_ENV) or stage, parent_run_id=parent,
        nested=parent is not None, tags=tags,
    ) as run:
        mlflow.set_tag("pipeline_run_id", os.environ.get(PIPELINE_ENV) or parent or run.info.run_id)
        handle = StageRun(mlflow, run)
        if params is not None:
            handle.params(as_dict(params) if not isinstance(params, Mapping) else params)
        try:
            yield handle
        finally:
            handle.metrics({"stage_seconds": time.time() - t0})
            within_budget(handle.metric_keys, metric_budget, stage)
