# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat constraints.txt pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test bench lint fuzz airflow es-stop clean

$(STAMP): constraints.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "error: Python 3.11 is needed, $(PYTHON) is not"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "uv==0.13.8"
	$(BIN)/uv pip install -q --python $(BIN)/python -c constraints.txt -e '.[airflow,dev]'
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

lint: $(STAMP)
	$(BIN)/ruff check pipeline newsmon_airflow dags tests
	$(BIN)/mypy pipeline newsmon_airflow

fuzz: $(STAMP)
	NEWSMON_FUZZ_EXAMPLES=2000 $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_fuzz.py

# Airflow standalone on loopback, with this project's DAGs and the embedded Elasticsearch.
# Tasks never start a node of their own, so the embedded node's URL is passed in NEWSMON_ES_URL.
airflow: $(STAMP)
	$(BIN)/newsmon es start
	@echo "Airflow UI: http://127.0.0.1:8080  user: admin  password: printed below, and kept in var/airflow/simple_auth_manager_passwords.json.generated"
	NEWSMON_ES_URL="$${NEWSMON_ES_URL:-$$($(BIN)/newsmon es status | sed -n 's/^Elasticsearch running at \([^ ]*\) .*/\1/p')}" \
	NEWSMON_ALERT_OUTBOX="$${NEWSMON_ALERT_OUTBOX:-$(CURDIR)/var/outbox}" \
	PATH="$(CURDIR)/$(BIN):$$PATH" AIRFLOW_HOME="$(CURDIR)/var/airflow" \
	AIRFLOW__CORE__DAGS_FOLDER="$(CURDIR)/dags" AIRFLOW__CORE__LOAD_EXAMPLES=False \
	AIRFLOW__API__HOST=127.0.0.1 AIRFLOW__API__PORT=8080 \
	$(BIN)/airflow standalone

es-stop: $(STAMP)
	$(BIN)/newsmon es stop

clean:
	rm -rf $(VENV) var
