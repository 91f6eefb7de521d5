"""The whole recipe, tiny: every real stage through the real Prefect flow and `dvc repro`.

A copy of the project in a temp dir (git + DVC) with shrunken params runs the flow once (all
stages run, MLflow has the parent run with one child per stage, outputs exist), then again
(every stage is up to date).
"""

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import RANK_ENV, REPO, VENV_BIN

pytestmark = pytest.mark.integration

# Shrink every stage (same code path, small counts).
TINY = {
    "model": {"vocab_size": 512, "num_layers": 2},
    "curate": {"generators": {d: {"n": n, "bench_n": 8} for d, n in
                              [("math", 60), ("countdown", 30), ("sudoku", 30),
                               ("knights_knaves", 30), ("code", 30), ("ifeval", 40),
                               ("open_qa", 40)]}},
    "sft": {"epochs": 2, "eval_tasks": 8, "save_every_steps": 10, "log_every_steps": 2},
    "select": {"prompts": 4, "samples_per_prompt": 2, "val_prompts": 4, "max_new_tokens": 48},
    # an undertrained tiny model solves nothing: keep the teacher-solvable prompts anyway
    "difficulty": {"samples_per_prompt": 2, "max_prompts": {"reasoning": 24}, "max_new_tokens": 48,
                   "max_unsolved_share": 1.0},
    "rl_reasoning": {"steps": 2, "prompts_per_step": 2, "samples_per_prompt": 2,
                     "max_new_tokens": 32, "eval_every": 2, "eval_tasks": 4,
                     "checkpoint_every": 1, "token_budget": 64, "eval_samples": 1,
                     "holdout_prompts": 4, "holdout_samples": 1,
                     # the tiny policy rarely solves anything: train on all groups so every
                     # step updates (and logs its KL) whatever the rewards
                     "drop_zero_variance": False},
    "rl_general": {"steps": 2, "prompts_per_step": 2, "samples_per_prompt": 2,
                   "max_new_tokens": 32, "eval_every": 2, "eval_tasks": 4,
                   "checkpoint_every": 1, "token_budget": 64, "eval_samples": 1,
                   "holdout_prompts": 4, "holdout_samples": 1},
    "bench": {"samples_per_problem": 2, "pass_k": [1, 2], "max_problems": 3,
              "max_new_tokens": 32},
}


def merge(base, over):
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict) and k != "generators":
            merge(base[k], v)
        elif k == "generators":
            for d, g in v.items():
                base[k].setdefault(d, {}).update(g)
        else:
            base[k] = v
    return base


def flat(d, prefix=""):
    """Leaf keys of a nested dict, dotted (as ``dvc metrics show`` prints them)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e") / "proj"
    root.mkdir()
    for name in ("pipeline", "flows"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "prefect.yaml", "pyproject.toml"):
        shutil.copy(REPO / name, root / name)
    params = merge(yaml.safe_load((REPO / "params.yaml").read_text()), TINY)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
           "PREFECT_HOME": str(root / ".prefect"), "MLFLOW_EXPERIMENT_NAME": "e2e",
           "RINGLITE_TRACKING": "on", "PYTHONPATH": str(root)}
    for k in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "RINGLITE_PARENT_RUN_ID",
              "RINGLITE_PIPELINE_RUN_ID", *RANK_ENV):
        env.pop(k, None)
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "ci@example.com"],
                ["git", "config", "user.name", "ci"], [str(VENV_BIN / "dvc"), "init", "-q"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "e2e"]):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True, env=env)
    return root, env


def flow(root, env):
    r = subprocess.run([sys.executable, "-m", "flows.pipeline"], cwd=root, env=env,
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-6000:]
    rows = [ln.split() for ln in r.stdout.splitlines()]
    return {ln[0]: ln[1] for ln in rows if len(ln) >= 3 and ln[1] in ("ran", "cached")}


def test_tiny_recipe_end_to_end_then_cached(project):
    root, env = project
    stages = list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])
    first = flow(root, env)
    assert first == {s: "ran" for s in stages}

    for out in ("data/curated/sft.parquet", "data/distill/traces.parquet",
                "models/sft/epoch_2/config.json", "models/selected/choice.json",
                "data/rl/reasoning.parquet", "models/rl_reasoning/config.json",
                "models/rl_general/config.json", "reports/bench/table.md",
                "reports/bench/chart.png"):
        assert (root / out).exists(), out
    assert json.loads((root / "data/curated/stats.json").read_text())["balanced"] is True
    # every stage's DVC metric is its headline: a few figures, no timings
    for stage, spec in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items():
        (metric,) = [next(iter(m)) for m in spec["metrics"]]
        assert metric == f"reports/{stage}/headline.json"
        leaves = flat(json.loads((root / metric).read_text()))
        assert 0 < len(leaves) <= 8, (stage, leaves)
        assert not [k for k in leaves if "second" in k or "per_s" in k or "time" in k], stage
    bench = json.loads((root / "reports/bench/metrics.json").read_text())
    assert set(bench) >= {"base", "sft", "rl_reasoning", "rl_general"}
    assert "all_reasoning" in bench["sft"] and "all_general" in bench["sft"]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("e2e").experiment_id])
    parent = [r for r in runs if r.data.tags.get("stage") == "pipeline"]
    assert len(parent) == 1
    children = {r.data.tags["stage"]: r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id}
    assert set(children) == set(stages)
    sft_loss = client.get_metric_history(children["sft"].info.run_id, "loss")
    assert len(sft_loss) > 2  # per-step metrics, logged as it went
    # ... as means over windows of log_every_steps=2 steps, a window closing at an epoch's end
    rows = list(csv.DictReader((root / "reports/sft/steps.csv").open()))
    want, window = [], []
    for r in rows:
        window.append(float(r["loss"]))
        if len(window) == 2 or float(r["epoch"]).is_integer():
            want.append((int(r["step"]), sum(window) / len(window)))
            window = []
    assert len(rows) > len(want) > 2
    got = sorted((m.step, m.value) for m in sft_loss)
    assert [s for s, _ in got] == [s for s, _ in want]
    assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-9)
    versions = client.search_model_versions("name='ringlite'")
    assert versions, "bench registered no model"
    # what a person reads: a few metric keys per run, a described model version with few tags
    for stage, run in children.items():
        assert len(run.data.metrics) <= (60 if stage == "bench" else 40), stage
    assert {"reward", "kl", "kl_clipped", "summary/eval_accuracy_gain"} <= set(
        children["rl_reasoning"].data.metrics)
    version = client.get_model_version("ringlite", versions[0].version)
    assert len(version.tags) <= 10 and "params_digest" in version.tags
    assert version.description.startswith("**rl_general: reasoning avg@k")
    assert parent[0].info.run_name == "pipeline: ran 9 stages"
    assert parent[0].data.tags["headline"] == children["bench"].data.tags["headline"]

    second = flow(root, env)
    assert second == {s: "cached" for s in stages}


def test_exp_run_on_an_rl_param_reruns_only_rl_and_bench(project):
    """`dvc exp run -S rl_reasoning.<key>=...` reruns rl_reasoning, rl_general and bench only.

    Runs after the end-to-end test (same module-scoped project); runs the flow first when
    alone. Every earlier stage, `sft` with its persisted resume state included, is skipped.
    """
    root, env = project
    flow(root, env)  # no-op when the first test ran
    r = subprocess.run([str(VENV_BIN / "dvc"), "exp", "run", "-S", "rl_reasoning.kl_coef=0.002"],
                       cwd=root, env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-6000:]
    out = r.stdout + r.stderr
    ran = {s for s in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
           if f"Running stage '{s}'" in out}
    assert ran == {"rl_reasoning", "rl_general", "bench"}, out[-4000:]
    assert yaml.safe_load((root / "params.yaml").read_text())["rl_reasoning"]["kl_coef"] == 0.002
