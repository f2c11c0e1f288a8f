# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat constraints.txt pyproject.toml | sha1sum | cut -c1-12)

AIRFLOW_PORT ?= 8080

.PHONY: run test bench bench-airflow lint fuzz airflow airflow-stop es-stop clean

# --compile-bytecode: uv writes no .pyc by default, and under PYTHONDONTWRITEBYTECODE (set in many CI and
# container images) none is ever written, so every Airflow process (each dag.test(), each component)
# compiled its imports from source again.
$(STAMP): constraints.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "error: Python 3.11 is needed, $(PYTHON) is not"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "uv==0.13.8"
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -c constraints.txt -e '.[airflow,dev]'
	rm -f $(VENV)/.installed-* && touch $@

# Without an SMTP host, `make run` writes alerts as .eml files to var/outbox/.
run: $(STAMP)
	$(BIN)/newsmon seeds load
	NEWSMON_ALERT_OUTBOX="$${NEWSMON_ALERT_OUTBOX:-$(CURDIR)/var/outbox}" $(BIN)/newsmon run --once
	@echo
	@echo "Search the index:  $(BIN)/newsmon search 两用物项"

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

# Only the streaming section (also part of `make bench`): item → email under `newsmon airflow start`.
bench-airflow: $(STAMP)
	$(BIN)/python -m tests.bench --only streaming $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check pipeline newsmon_airflow dags tests
	$(BIN)/mypy pipeline newsmon_airflow

fuzz: $(STAMP)
	NEWSMON_FUZZ_EXAMPLES=2000 $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_fuzz.py

# Airflow on loopback with this project's DAGs and the embedded Elasticsearch (pipeline/standalone.py).
# Ctrl-C or `make airflow-stop` ends every component and task process, then the node it started.
airflow: $(STAMP)
	$(BIN)/newsmon airflow start --port $(AIRFLOW_PORT)

airflow-stop: $(STAMP)
	$(BIN)/newsmon airflow stop

es-stop: $(STAMP)
	$(BIN)/newsmon es stop

clean:
	rm -rf $(VENV) var
