# Two commands do all the set-up on a fresh Debian machine:
#   make run    install into .venv and start the monitor with Prometheus and
#               Alertmanager beside it (deploy/localstack.py); without a config, a
#               demo pipeline too, which `make demo-break` breaks
#   make test   install what the tests need (apt packages too, when root), then
#               ruff, mypy and pytest, with throwaway PostgreSQL, MariaDB, Redis and
#               RabbitMQ servers where none runs here (deploy/testservers.py)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# curl: the README's examples (and their test) use it; a bare Debian has none.
APT_PACKAGES := prometheus prometheus-alertmanager prometheus-blackbox-exporter chromium curl

.PHONY: run demo-break test venv test-deps lint typecheck pytest clean

$(BIN)/pipeline-monitor: pyproject.toml
	$(PYTHON) deploy/debian.py venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/pipeline-monitor

run: venv
	$(BIN)/python deploy/localstack.py $(ARGS)

demo-break: venv
	$(BIN)/python deploy/demo.py break

test-deps: venv
	$(BIN)/python deploy/testservers.py --install-only $(APT_PACKAGES)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

pytest: venv
	$(BIN)/python deploy/testservers.py -- $(BIN)/python -m pytest $(PYTEST_ARGS)

test: test-deps lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
