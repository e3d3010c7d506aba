# iort-guidance: `make demo` and `make test` do all the set-up on a fresh Debian machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SYSDEPS_STAMP := $(VENV)/.debian-deps

.PHONY: demo test bench lint setup clean

setup: $(STAMP)

$(SYSDEPS_STAMP): scripts/install-debian-deps.sh
	bash scripts/install-debian-deps.sh "$(PYTHON)"
	@mkdir -p $(VENV) && touch $@

$(STAMP): pyproject.toml $(SYSDEPS_STAMP)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(BIN)/iort demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/iort bench --json bench.json

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo_out bench.json
