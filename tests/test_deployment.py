"""A real Prefect server, process work pool, worker and deployment from prefect.yaml.

Starts everything on 127.0.0.1 (random free port), deploys the flow of a tiny two-stage DVC
project, runs the deployment, checks it completed and that MLflow has the parent run with its
child stage runs, then stops the services by PID.
"""

import os
import signal
import subprocess
import time
import urllib.request

import pytest

from tests.conftest import VENV_BIN, free_port, make_mini_project

pytestmark = pytest.mark.integration


def wait_http(url, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


def stop(proc, sig):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_deployment_runs_on_a_process_worker(tmp_path):
    root = make_mini_project(tmp_path / "proj")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api,
        "RINGLITE_REPO": str(root),
        "MLFLOW_EXPERIMENT_NAME": "deploytest",
        "RINGLITE_TRACKING": "on",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    for k in ("MLFLOW_TRACKING_URI", "RINGLITE_PARENT_RUN_ID", "RINGLITE_PIPELINE_RUN_ID"):
        env.pop(k, None)
    prefect = str(VENV_BIN / "prefect")
    logs = tmp_path / "logs"
    logs.mkdir()
    server = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        cwd=root, env=env, stdout=(logs / "server.log").open("w"), stderr=subprocess.STDOUT,
    )
    worker = None
    try:
        wait_http(f"{api}/health", 90)
        run = lambda *a: subprocess.run(  # noqa: E731
            [prefect, *a], cwd=root, env=env, capture_output=True, text=True, timeout=180
        )
        r = run("work-pool", "create", "ringlite-process", "--type", "process")
        assert r.returncode == 0, r.stdout + r.stderr
        worker = subprocess.Popen(
            [prefect, "worker", "start", "--pool", "ringlite-process"],
            cwd=root, env=env, stdout=(logs / "worker.log").open("w"), stderr=subprocess.STDOUT,
        )
        r = run("--no-prompt", "deploy", "--all")
        assert r.returncode == 0, r.stdout + r.stderr
        r = run("deployment", "run", "ringlite-pipeline/full-recipe", "--watch",
                "--watch-timeout", "170")
        assert r.returncode == 0, r.stdout + r.stderr + (logs / "worker.log").read_text()
        assert "Completed" in r.stdout + r.stderr
        assert (root / "reports" / "sum.json").exists()
    finally:
        if worker:
            stop(worker, signal.SIGINT)  # the worker stops on SIGINT, not SIGTERM
        stop(server, signal.SIGTERM)
    assert server.poll() is not None and (worker is None or worker.poll() is not None)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("deploytest")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.data.tags.get("stage") == "pipeline"]
    assert len(parent) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id]
    assert sorted(r.data.tags["stage"] for r in children) == ["make_numbers", "sum_numbers"]
