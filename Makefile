# FreshCart: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOT ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.8
KAFKA_JARS := services/kafka/target/jars
FRESHCART := $(VENV)/bin/freshcart

.PHONY: help setup lock services-up services-down services-status demo check test test-unit test-integration bench clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(VENV)/.installed $(KAFKA_JARS)/.copied system-packages tools ## Install everything: Python env from the lock, Kafka jars, Redis and PostgreSQL, the chart tools

$(VENV)/.installed: requirements/lock.txt pyproject.toml
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	@test -x $(UV) || $(PY) -m pip install -q "uv==$(UV_VERSION)"
	$(UV) pip sync -q --python $(PY) requirements/lock.txt
	$(UV) pip install -q --python $(PY) --no-deps -e .
	@touch $@

$(KAFKA_JARS)/.copied: services/kafka/pom.xml
	@echo "fetching the Kafka broker jars from Maven Central"
	@mvn -q -B -f services/kafka/pom.xml dependency:copy-dependencies \
	  -DoutputDirectory=target/jars -DincludeScope=runtime > services/kafka/mvn.log 2>&1 \
	  || { cat services/kafka/mvn.log; exit 1; }
	@touch $@

.PHONY: system-packages
system-packages:
	@scripts/install-system-packages.sh

.PHONY: tools
tools: $(VENV)/.installed ## Chart tools into .tools/bin (helm, kubeconform + schemas, helm-unittest, kube-score, etcd, kube-apiserver); present ones are skipped
	@scripts/build-tools.sh

lock: ## Re-resolve requirements/requirements.in into requirements/lock.txt
	$(UV) pip compile -q requirements/requirements.in -o requirements/lock.txt \
	  --python-version 3.11 --no-header --annotation-style line

services-up: setup ## Start Kafka (and Redis + PostgreSQL with FRESHCART_PROFILE=production)
	$(FRESHCART) services up

services-down: ## Stop the servers that services-up started
	@if [ -x $(FRESHCART) ]; then $(FRESHCART) services down; fi

services-status: ## Show the servers, their pids and ports
	$(FRESHCART) services status

demo: setup services-up ## The main job: simulate a week, replay a slice through Kafka, print a summary
	$(FRESHCART) demo

check: $(VENV)/.installed ## Supply chain: bandit over freshcart/ dags/ bentos/ plugins/ (.bandit.yaml), pip-audit of the lock (docs/security.md)
	$(VENV)/bin/bandit -c .bandit.yaml -b .bandit-baseline.json -r freshcart dags bentos plugins -q
	$(PY) scripts/audit_dependencies.py

test: setup ## Unit and integration tests against real servers (starts and stops them)
	scripts/run-tests.sh

test-unit: setup ## Unit tests only (no servers)
	$(PY) -m pytest tests/unit -q

bench: setup ## Benchmarks: simulator, materialisation, training set, stream and its restore, training, serving, monitoring, replay (simulated and REES46)
	$(PY) bench/bench_simulator.py
	@if [ -f bench/bench_materialize.py ]; then $(PY) bench/bench_materialize.py; fi
	$(PY) bench/bench_training_set.py
	FRESHCART_PROFILE=production $(FRESHCART) services up
	$(PY) bench/bench_stream.py
	$(PY) bench/bench_stream_restore.py
	$(PY) bench/bench_training.py
	$(PY) bench/bench_serving.py
	$(PY) bench/bench_monitoring.py
	$(PY) bench/bench_recommendation.py
	$(PY) bench/bench_rees46.py

clean: services-down ## Remove generated data (keeps the environment)
	rm -rf data

# Airflow: its home under the data dir, DAGs from dags/, tasks writing to the same data dir.
FRESHCART_DATA_DIR ?= $(CURDIR)/data
AIRFLOW_PORT ?= 8080
.PHONY: airflow
FRESHCART_BIND_HOST ?= 127.0.0.1
airflow: $(VENV)/.installed ## Airflow 3 standalone with dags/ and plugins/ (UI and the FreshCart page on 127.0.0.1:8080; admin's password generated once, printed, kept in data/secrets)
	@mkdir -p "$(FRESHCART_DATA_DIR)/airflow" "$(FRESHCART_DATA_DIR)/secrets" && chmod 700 "$(FRESHCART_DATA_DIR)/secrets"
	umask 077; PATH="$(CURDIR)/$(VENV)/bin:$$PATH" FRESHCART_DATA_DIR="$(FRESHCART_DATA_DIR)" \
	  AIRFLOW_HOME="$(FRESHCART_DATA_DIR)/airflow" AIRFLOW__CORE__DAGS_FOLDER="$(CURDIR)/dags" \
	  AIRFLOW__CORE__PLUGINS_FOLDER="$(CURDIR)/plugins" FRESHCART_MONITOR_UI_URL=http://127.0.0.1:$(EVIDENTLY_PORT) \
	  AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=False \
	  AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$(FRESHCART_DATA_DIR)/secrets/airflow_passwords.json" \
	  AIRFLOW__API__HOST=$(FRESHCART_BIND_HOST) \
	  AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__API__PORT=$(AIRFLOW_PORT) \
	  AIRFLOW__API__BASE_URL=http://localhost:$(AIRFLOW_PORT) airflow standalone

MLFLOW_PORT ?= 5000
.PHONY: mlflow-ui
mlflow-ui: $(VENV)/.installed ## MLflow tracking UI for the profile's store on http://127.0.0.1:5000 (MLFLOW_PORT); production: the basic-auth tracking server
	$(PY) -m freshcart.training.ui --port $(MLFLOW_PORT)

EVIDENTLY_PORT ?= 8000
.PHONY: monitor-ui
monitor-ui: $(VENV)/.installed ## Evidently UI (project freshcart-propensity) on http://127.0.0.1:8000 (EVIDENTLY_PORT), telemetry off
	$(PY) -m freshcart.monitoring.workspace --port $(EVIDENTLY_PORT)

# Serving: the BentoML service on loopback with the profile's settings (FRESHCART_* environment).
SERVE_PORT ?= 3000
.PHONY: serve bento bento-gpu
serve: $(VENV)/.installed ## The scoring service (bentoml serve in bentos/) on http://127.0.0.1:3000 (SERVE_PORT)
	$(FRESHCART) serve --port $(SERVE_PORT)

bento: $(VENV)/.installed ## Build the scoring service's bento (repository root as build context); then `bentoml containerize`
	$(PY) -c "from freshcart.serving.bento import build_bento; b = build_bento('cpu'); print(b.tag, b.dockerfile)"

bento-gpu: $(VENV)/.installed ## Build the CUDA variant of the bento (resources gpu: 1, nvidia/cuda base image)
	$(PY) -c "from freshcart.serving.bento import build_bento; b = build_bento('gpu'); print(b.tag, b.dockerfile)"
