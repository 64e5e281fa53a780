# tickerlake: `make demo` sets everything up and runs the main job; `make test` sets up and tests.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY      := .venv/bin/python
UV      := .venv/bin/uv
UV_VERSION := 0.13.8
# Debian packages: the Postgres server, its JDBC driver (a Spark jar), Java for Spark, ss for a test.
# docker-compose (v1, Debian's) validates docker-compose.yml without a Docker engine (make check).
# Prometheus, Alertmanager and the Pushgateway for metrics and alerts; Chromium for the browser test.
APT_PACKAGES := postgresql libpostgresql-jdbc-java openjdk-17-jre-headless iproute2 docker-compose \
  prometheus prometheus-alertmanager prometheus-pushgateway chromium fonts-dejavu-core

.PHONY: check help setup system-packages venv env jars class-archive up down status smoke demo test chaos broker-durability dashboard airflow-ui airflow-ui-down warehouse-load bench-warehouse clean-state

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: system-packages venv env jars class-archive  ## install everything (apt packages, venv, .env, Spark jars, class archive)

system-packages:  ## apt-get the Debian packages that are missing (root or sudo)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  echo "installing: $$missing"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: .venv/.installed  ## the Python 3.11 venv with the pinned requirements

.venv/.installed: requirements.txt pyproject.toml
	test -x $(PY) || python3.11 -m venv .venv || python3 -m venv .venv
	test -x $(UV) || $(PY) -m pip install -q uv==$(UV_VERSION)
	$(UV) pip install -q -p $(PY) -r requirements.txt
	$(UV) pip install -q -p $(PY) --no-deps -e .
	touch $@

env: .env  ## .env from .env.example, with fresh random secrets

.env:
	$(PY) -m tickerlake.dev.envfile .env

jars: venv  ## the Spark jars, pinned and SHA-256-checked, into ./jars
	$(PY) -m tickerlake.dev.jars

class-archive: jars  ## the Spark driver's class archive (JVMs start sooner); made again when the JDK or a jar changes
	$(PY) -m tickerlake.dev.class_archive

up: setup  ## start the local stack (127.0.0.1: data services, metrics, alerts, dashboard) and initialise it
	$(PY) -m tickerlake.dev.stack up
	$(PY) -m minio_init

down:  ## stop the local stack and the Airflow UI (by PID)
	$(PY) -m tickerlake.dev.airflow_ui down
	$(PY) -m tickerlake.dev.stack down

status:  ## health of each local service
	$(PY) -m tickerlake.dev.stack status

smoke: up  ## run the lake_smoke DAG with `airflow dags test`
	$(PY) -m tickerlake.dev.airflow_local dags test lake_smoke 2026-01-02

demo: setup  ## THE MAIN JOB: stack up, init, DAGs, summary
	$(PY) -m tickerlake.dev.demo

dashboard: up  ## the dashboard (and Prometheus, Alertmanager) on 127.0.0.1; prints their addresses
	@$(PY) -m tickerlake.dev.demo --urls

airflow-ui: up  ## the Airflow web UI on 127.0.0.1:8080 (api-server, scheduler, dag-processor, triggerer); prints the login
	$(PY) -m tickerlake.dev.airflow_ui up

airflow-ui-down:  ## stop the Airflow components (by PID)
	$(PY) -m tickerlake.dev.airflow_ui down

warehouse-load: up  ## load the lake into the warehouse and check it, outside Airflow
	$(PY) -m tickerlake.warehouse load
	$(PY) -m tickerlake.warehouse check

check: setup  ## lint (ruff), types (mypy), import contracts (import-linter), the compose file (docker-compose config)
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/lint-imports --no-cache
	docker-compose --env-file .env.example -f docker-compose.yml config -q

test: setup  ## run the test suite (starts and stops its own private stack)
	$(PY) -m pytest

chaos: setup  ## faults under a running stream and the batch tasks, on a private stack; prints what each cost
	$(PY) -m tickerlake.dev.chaos --profile $(or $(PROFILE),full) $(if $(SEED),--seed $(SEED))

broker-durability: setup  ## does the local broker keep what it acknowledged across a clean stop? (exit 1: it did not)
	$(PY) -m tickerlake.dev.broker_durability

clean-state: down  ## delete the local stack's data (asks first)
	@read -p "delete .state/ (all local lake data)? [y/N] " answer && [ "$$answer" = y ] && rm -rf .state
