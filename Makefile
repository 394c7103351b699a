# The two commands of the README: `make run` (the default pipeline) and `make test`.
# Each installs what it needs (virtualenv, pinned packages, data) and is idempotent.
VENV ?= .venv
PYTHON ?= python3
ARGS ?=
PYTEST_ARGS ?=
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1

.PHONY: run test install data test-services benchmark

run: install data
	$(VENV)/bin/vae-pipeline run $(ARGS)

test: install data test-services
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

benchmark: install data
	$(VENV)/bin/python benchmarks/train_throughput.py $(ARGS)

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -c constraints.txt -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

# Offline machines get the canonical files from Debian's package; elsewhere the pipeline
# downloads them into the Keras cache on first use.
data: install
	@$(VENV)/bin/python -c "from vae_model import data; data.locate(download=False)" 2>/dev/null \
	|| { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
	     && { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null; } \
	     || echo "Fashion-MNIST not installed locally: the pipeline will download it on first use."; }

# The PostgreSQL-backed Prefect server test needs Debian's PostgreSQL; without apt or root it
# is skipped with its reason.
test-services:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
	|| { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
	     && { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; } \
	     || echo "PostgreSQL not installed: its integration test will be skipped."; }
