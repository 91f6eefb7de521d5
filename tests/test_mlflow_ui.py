"""The MLflow server app `make ui` runs: MLflow's page with the training mode as a new browser's
starting choice (the browser test checks where a click then lands)."""

import tomllib

from pipeline import mlflow_ui
from tests.conftest import REPO


def test_the_snippet_goes_first_in_head_once():
    html = b'<!doctype html><html><head><meta charset="utf-8"/><script src="a.js"></script>'
    out = mlflow_ui.with_training_default(html)
    assert out.index(mlflow_ui.SNIPPET) < out.index(b'<script src="a.js">')
    assert out.count(mlflow_ui.SNIPPET) == 1
    assert mlflow_ui.with_training_default(out) == out
    assert mlflow_ui.with_training_default(b"{}") == b"{}"  # not a page: unchanged
    # it only fills in a missing choice: a browser's own choice is kept
    assert b'localStorage.getItem("mlflow.workflowType_v1")===null' in mlflow_ui.SNIPPET


def test_mlflow_serves_its_page_with_the_snippet_and_its_api_untouched(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("_MLFLOW_SGI_NAME", raising=False)  # the Flask app, not uvicorn's
    app = mlflow_ui.create_app()
    client = app.test_client()
    page = client.get("/")
    assert page.status_code == 200 and mlflow_ui.SNIPPET in page.data
    assert b"<script" in page.data[page.data.index(mlflow_ui.SNIPPET) + 10:]  # the app follows
    health = client.get("/health")
    assert health.data == b"OK"


def test_pyproject_registers_the_app_make_ui_names():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["mlflow.app"] == {
        "ringlite": "pipeline.mlflow_ui:create_app"}
    assert "--app-name ringlite" in (REPO / "Makefile").read_text()
