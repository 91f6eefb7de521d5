"""A stage run against a real `mlflow server` (sqlite store) read back over the REST API."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from tests.conftest import REPO, VENV_BIN, free_port

pytestmark = pytest.mark.integration


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


def test_stage_run_against_mlflow_server(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"],
        cwd=tmp_path, env=env, stdout=(tmp_path / "server.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        t0 = time.time()
        while True:
            try:
                if get(f"{base}/health") == b"OK":
                    break
            except OSError:
                pass
            assert time.time() - t0 < 90, (tmp_path / "server.log").read_text()
            time.sleep(0.5)
        (tmp_path / "params.yaml").write_text("seed: 1\nmake_numbers: {count: 4}\n")
        stage_env = {**os.environ, "MLFLOW_TRACKING_URI": base, "RINGLITE_TRACKING": "on",
                     "MLFLOW_EXPERIMENT_NAME": "srv", "PYTHONPATH": str(REPO)}
        for k in ("RINGLITE_PARENT_RUN_ID", "RINGLITE_PIPELINE_RUN_ID"):
            stage_env.pop(k, None)
        r = subprocess.run(
            [sys.executable, str(REPO / "tests/fixtures/mini_stage.py"), "make_numbers",
             "--out", "numbers.json"],
            cwd=tmp_path, env=stage_env, capture_output=True, text=True, timeout=120,
        )
        assert r.returncode == 0, r.stderr
        assert not (tmp_path / "mlflow.db").exists()  # nothing went to the local default store

        exp = json.loads(get(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=srv"))
        body = json.dumps({"experiment_ids": [exp["experiment"]["experiment_id"]]}).encode()
        req = urllib.request.Request(f"{base}/api/2.0/mlflow/runs/search", data=body,
                                     headers={"Content-Type": "application/json"})
        runs = json.loads(urllib.request.urlopen(req, timeout=10).read())["runs"]
        assert len(runs) == 1
        run = runs[0]
        run_id = run["info"]["run_id"]
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert tags["stage"] == "make_numbers"
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        assert params == {"count": "4"}
        q = urllib.parse.urlencode({"run_id": run_id, "metric_key": "value"})
        hist = json.loads(get(f"{base}/api/2.0/mlflow/metrics/get-history?{q}"))["metrics"]
        assert sorted((m["step"], m["value"]) for m in hist) == [(i, float(i)) for i in range(4)]
        q = urllib.parse.urlencode({"run_uuid": run_id, "path": "numbers.json"})
        assert json.loads(get(f"{base}/get-artifact?{q}")) == [0, 1, 2, 3]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:  # it may ignore a first SIGTERM right after start
            server.kill()
            server.wait()
