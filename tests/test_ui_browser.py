"""Headless Chromium walks the README's walkthrough of the MLflow and Prefect UIs after pipeline
runs through the real flow (a tiny two-stage project, run twice: once running both stages,
once with both cached) and a model registered by the real registry code.

MLflow is served as ``make ui`` serves it (``mlflow ui --app-name ringlite``), to a browser with
a fresh profile (MLflow's own default: the GenAI mode). From the experiments list a click on the
experiment must land on its runs with a Models link, not on the GenAI overview; the pipeline
runs are named after what they did; the registered model version shows its description.
A screenshot of every page of the walkthrough is saved under test-artifacts/ (CI keeps them).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from importlib.metadata import entry_points

import pytest

from tests.conftest import REPO, VENV_BIN, free_port, make_mini_project

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"
CHROME_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EXPERIMENT = "ringlite"
MODEL = "ringlite-ui"
REGISTER = """
import json, sys
from pipeline.bench.registry import Provenance, register_model
from pipeline.model import save_checkpoint, tiny_test_model
from pipeline.tracking import stage_run

model, tok = tiny_test_model()
save_checkpoint(model, tok, "models/final")
metrics = json.loads(sys.argv[1])
with stage_run("bench", {}) as run:
    run.tags({"headline": sys.argv[2]})
    prov = Provenance("final", run.run_id, "0123456789abcdef", "abcdef012345", sys.argv[2])
    register_model("models/final", sys.argv[3], "candidate", metrics, prov)
"""
HEADLINE = "final: reasoning avg@k 42.0% (base 10.0)."
SCORES = {"math": {"problems": 3, "samples": 6, "avg_at_k": 0.5, "pass_at_1": 0.5,
                   "pass_at_2": 0.667},
          "all_reasoning": {"problems": 3, "samples": 6, "avg_at_k": 0.42, "pass_at_1": 0.42,
                            "pass_at_2": 0.6}}


def wait_http(url, timeout=120):
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
           "PREFECT_HOME": str(tmp / "prefect-home"), "MLFLOW_EXPERIMENT_NAME": EXPERIMENT,
           "RINGLITE_TRACKING": "on"}
    for k in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "RINGLITE_PARENT_RUN_ID",
              "RINGLITE_PIPELINE_RUN_ID"):
        env.pop(k, None)
    for _ in range(2):  # both stages run; then both are cached
        r = subprocess.run([sys.executable, "-m", "flows.pipeline"], cwd=root, env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-c", REGISTER, json.dumps(SCORES), HEADLINE, MODEL],
                       cwd=root, env={**env, "PYTHONPATH": str(root)}, capture_output=True,
                       text=True, timeout=300)
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


def shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(1500)  # let charts and tables finish drawing
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def close_assistant(page):
    """MLflow opens its assistant panel on a first visit; close it, as a person would."""
    close = page.locator("button[aria-label='Close']")
    if close.count():
        close.last.click()


def dismiss_dialogs(page):
    """The registry pages open a dialog advertising a new registry UI; close it."""
    page.wait_for_timeout(1500)
    if page.get_by_role("dialog").count():
        page.keyboard.press("Escape")


def test_mlflow_walkthrough(pipeline_run, browser):
    root, env = pipeline_run
    assert "ringlite" in {e.name for e in entry_points(group="mlflow.app")}, (
        "the MLflow app `ringlite` is not installed: run `make install` (pyproject.toml "
        "declares it)")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = serve([str(VENV_BIN / "mlflow"), "ui", "--app-name", "ringlite",
                    "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--host",
                    "127.0.0.1", "--port", str(port), "--workers", "1"],
                   {**env, "PYTHONPATH": os.pathsep.join(
                       filter(None, [str(root), env.get("PYTHONPATH")]))}, root, f"{base}/health")
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})  # a fresh profile
        page.goto(f"{base}/")
        page.get_by_role("link", name="Experiments").first.click()
        page.get_by_role("link", name=EXPERIMENT, exact=True).first.wait_for(timeout=60_000)
        close_assistant(page)
        shot(page, "mlflow_1_experiments")

        # the experiment opens on its runs, with Models in the sidebar, not the GenAI overview
        page.get_by_role("link", name=EXPERIMENT, exact=True).first.click()
        page.get_by_text("pipeline: ran 2 stages").first.wait_for(timeout=60_000)
        page.get_by_text("pipeline: all cached").first.wait_for(timeout=30_000)
        assert "/overview" not in page.url and "/runs" in page.url, page.url
        assert page.get_by_text("No data available").count() == 0
        for link in ("Runs", "Models", "Model registry"):
            page.get_by_role("link", name=link, exact=True).first.wait_for(timeout=30_000)
        shot(page, "mlflow_2_runs")

        # a pipeline run unfolds into its stage runs (the expander left of its name)
        box = page.get_by_text("pipeline: ran 2 stages", exact=True).first.bounding_box()
        page.mouse.click(box["x"] - 30, box["y"] + box["height"] / 2)
        for name in ("make_numbers", "sum_numbers"):
            page.get_by_text(name, exact=True).first.wait_for(timeout=30_000)
        shot(page, "mlflow_3_stage_runs")

        # the cached run's page: its description says what happened and links the stage runs
        page.get_by_role("link", name="pipeline: all cached").first.click()
        page.get_by_text("All cached in").first.wait_for(timeout=30_000)
        page.get_by_text("Show more").first.click()
        stage_links = page.locator("a[target='_blank'][href*='/runs/']")
        assert [stage_links.nth(i).inner_text() for i in range(stage_links.count())] == [
            "make_numbers", "sum_numbers"]  # the description's links to the stage runs
        shot(page, "mlflow_4_pipeline_run")

        # a stage run's charts (the link opens a tab): the summary values in a section of their
        # own, then the curves
        with page.context.expect_page() as opened:
            stage_links.first.click()
        page = opened.value
        page.get_by_text("Model metrics", exact=True).first.click()
        page.get_by_text("summary", exact=True).first.wait_for(timeout=30_000)
        page.get_by_text("value", exact=True).first.wait_for(timeout=30_000)
        shot(page, "mlflow_5_stage_charts")

        # the model registry: the registered version and its description
        page.get_by_role("link", name="Model registry", exact=True).first.click()
        dismiss_dialogs(page)
        page.get_by_role("link", name=MODEL, exact=True).first.click()
        page.get_by_role("link", name="Version 1").first.click()
        page.get_by_text(HEADLINE).first.wait_for(timeout=30_000)
        page.get_by_text("abcdef012345").first.wait_for(timeout=30_000)  # the params digest
        shot(page, "mlflow_6_model_version")
    finally:
        stop(server)


def test_prefect_walkthrough(pipeline_run, browser):
    root, env = pipeline_run
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    server_env = {**env, "PREFECT_UI_API_URL": api, "PREFECT_API_URL": api}
    server = serve([str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                    "--port", str(port)], server_env, root, f"{api}/health")
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}/runs")
        page.get_by_text("ringlite-pipeline").first.wait_for(timeout=60_000)
        page.get_by_text("Completed").first.wait_for(timeout=30_000)
        shot(page, "prefect_1_runs")

        # the list shows the newest run first; the links are read here, on the list itself,
        # because after a back navigation the previous page may still be drawn (its breadcrumb
        # links to its own run) when the next click lands
        runs = page.locator("a[href*='/runs/flow-run/']")
        assert runs.count() == 2
        newer, older = (runs.nth(i).get_attribute("href") for i in range(2))
        assert newer != older

        # the older flow run ran both stages: its log, each line at its level
        runs.last.click()
        page.wait_for_url(f"**{older}**")
        page.get_by_text("Running stage 'make_numbers'").first.wait_for(timeout=30_000)
        shot(page, "prefect_2_flow_run_log")

        # the newer one found both stages cached: named and in the state that says so
        page.goto(f"http://127.0.0.1:{port}{newer}")
        page.get_by_text("Task Runs", exact=True).first.click()
        page.get_by_text("make_numbers (cached)").first.wait_for(timeout=90_000)  # the UI polls
        page.get_by_text("Cached").first.wait_for(timeout=30_000)
        shot(page, "prefect_3_cached_task_runs")

        page.get_by_text("Artifacts", exact=True).first.click()
        page.get_by_text("pipeline-summary").first.click()
        page.get_by_text("Ring-lite pipeline: all cached").first.wait_for(timeout=30_000)
        assert page.locator("a[href*='#/experiments/']").count() >= 3  # parent + 2 stage runs
        shot(page, "prefect_4_summary")
    finally:
        stop(server)
