"""The MLflow server app ``make ui`` runs: MLflow's own, opening experiments on their runs.

MLflow 3.17's UI decides per browser, not per experiment, what an experiment page is: a
"GenAI" one (an Overview of traces, latency, tokens and cost, with no link to Models or the
registry) or a "Model training" one (runs, models, model registry). The choice is the switch at
the top left of the UI, kept in the browser's local storage under ``mlflow.workflowType_v1``,
and "GenAI" until the person changes it; the experiment's ``mlflow.experimentKind`` tag is not
read for it. This app is MLflow's server with one addition: its HTML page starts a browser
that has made no choice yet on "Model training". The switch works as before and a choice made
with it is kept.

It is registered as the MLflow server app ``ringlite`` (``[project.entry-points."mlflow.app"]``
in pyproject.toml), so ``mlflow ui --app-name ringlite ...`` (``make ui``) serves it.
"""

from __future__ import annotations

from typing import Any

MODE_KEY = "mlflow.workflowType_v1"
TRAINING_MODE = "machine_learning"
SNIPPET = (
    f'<script>try{{if(localStorage.getItem("{MODE_KEY}")===null)'
    f'localStorage.setItem("{MODE_KEY}",JSON.stringify("{TRAINING_MODE}"))}}catch(e){{}}'
    "</script>"
).encode()


def with_training_default(html: bytes) -> bytes:
    """``html`` with :data:`SNIPPET` first in its ``<head>``, before the app's own scripts
    (unchanged if it has no ``<head>`` or already has the snippet)."""
    if SNIPPET in html or b"<head>" not in html:
        return html
    return html.replace(b"<head>", b"<head>" + SNIPPET, 1)


def _inject(response: Any) -> Any:
    if response.mimetype == "text/html" and response.status_code == 200:
        response.direct_passthrough = False
        response.set_data(with_training_default(response.get_data()))
    return response


def create_app(app: Any = None) -> Any:
    """The MLflow server app (the FastAPI app under uvicorn, as ``mlflow server`` runs it; the
    Flask app otherwise) with the training default in its HTML page."""
    from mlflow.environment_variables import _MLFLOW_SGI_NAME
    from mlflow.server import app as flask_app

    app = app or flask_app
    app.after_request(_inject)
    if _MLFLOW_SGI_NAME.get() == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        return create_fastapi_app(app)
    return app
