"""Headless Chromium opens the MLflow UI and the Prefect UI after a pipeline run through the
real flow, and finds the pipeline run, its stage runs, and the flow run. Screenshots are saved
under test-artifacts/ (CI keeps them)."""

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import REPO, VENV_BIN, free_port, make_mini_project

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"
CHROME_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def wait_http(url, timeout=90):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui")
    root = make_mini_project(tmp / "proj")
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
           "PREFECT_HOME": str(tmp / "prefect-home"), "MLFLOW_EXPERIMENT_NAME": "uitest",
           "RINGLITE_TRACKING": "on"}
    for k in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "RINGLITE_PARENT_RUN_ID",
              "RINGLITE_PIPELINE_RUN_ID"):
        env.pop(k, None)
    r = subprocess.run([sys.executable, "-m", "flows.pipeline"], cwd=root, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return root, env


def serve(cmd, env, cwd, health):
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_http(health)
    except TimeoutError:
        proc.kill()
        raise
    return proc


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        yield b
        b.close()


def test_mlflow_ui_shows_pipeline_and_stage_runs(pipeline_run, browser):
    root, env = pipeline_run
    port = free_port()
    server = serve([str(VENV_BIN / "mlflow"), "ui", "--backend-store-uri",
                    f"sqlite:///{root / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(port)],
                   env, root, f"http://127.0.0.1:{port}/health")
    try:
        from mlflow.tracking import MlflowClient

        exp = MlflowClient(f"sqlite:///{root / 'mlflow.db'}").get_experiment_by_name("uitest")
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"http://127.0.0.1:{port}/#/experiments/{exp.experiment_id}/runs")
        page.get_by_text("pipeline", exact=True).first.wait_for(timeout=60_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "mlflow_ui_pipeline.png"), full_page=True)
        # Stage runs are folded under the pipeline run: click the expander left of its name.
        box = page.get_by_text("pipeline", exact=True).first.bounding_box()
        page.mouse.click(box["x"] - 30, box["y"] + box["height"] / 2)
        for name in ("make_numbers", "sum_numbers"):
            page.get_by_text(name, exact=True).first.wait_for(timeout=30_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "mlflow_ui.png"), full_page=True)
    finally:
        stop(server)


def test_prefect_ui_shows_the_flow_run(pipeline_run, browser):
    root, env = pipeline_run
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    server_env = {**env, "PREFECT_UI_API_URL": api, "PREFECT_API_URL": api}
    server = serve([str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                    "--port", str(port)], server_env, root, f"{api}/health")
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"http://127.0.0.1:{port}/runs")
        page.get_by_text("ringlite-pipeline").first.wait_for(timeout=60_000)
        page.get_by_text("Completed").first.wait_for(timeout=30_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "prefect_ui.png"), full_page=True)
    finally:
        stop(server)
