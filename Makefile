# iort-guidance: `make demo` and `make test` do all the set-up on a fresh Debian machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SYSDEPS_STAMP := $(VENV)/.debian-deps

.PHONY: demo test bench lint audit lock fuzz soak setup clean

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

lint: $(STAMP) audit
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# Known vulnerabilities in the pinned packages (needs https://pypi.org; fails, never hangs,
# when offline: AUDIT_TIMEOUT_S in all).
AUDIT_TIMEOUT_S ?= 300
audit: $(STAMP)
	@timeout $(AUDIT_TIMEOUT_S) $(BIN)/pip-audit -r requirements.lock --no-deps --disable-pip \
	    --progress-spinner off --timeout 30; \
	rc=$$?; \
	if [ $$rc -eq 124 ]; then echo "audit: pip-audit gave no answer in $(AUDIT_TIMEOUT_S) s (offline? it needs https://pypi.org)"; fi; \
	exit $$rc

# Pin every package of pyproject.toml (with the dev extra) as installed now.
lock: $(STAMP)
	$(BIN)/python scripts/write_lock.py > requirements.lock

# Property-based fuzzing of every parser of outside input, FUZZ_CASES cases each.
FUZZ_CASES ?= 10000
fuzz: $(STAMP)
	IORT_FUZZ_CASES=$(FUZZ_CASES) $(BIN)/python -m pytest tests/fuzz -q -p no:cacheprovider

# The live loop under injected faults for SOAK_MIN minutes (the suite runs ~1 minute).
SOAK_MIN ?= 30
soak: $(STAMP)
	$(BIN)/python -m benchmarks.soak --minutes $(SOAK_MIN)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo_out bench.json
