# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow install lint clean browser

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is required (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/territory run --config configs/demo.yaml

# `make test`: everything but the tests that start servers or kill processes (marked slow);
# `make test-slow` runs those, and CI (.ci/run) runs both.
test: install browser
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow"

test-slow: install browser
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m slow

# The report's browser test needs Debian's chromium; install it when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the report browser test"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

lint: install
	$(BIN)/ruff check features models pipelines tests benchmarks

clean:
	rm -rf $(VENV) workspace .pytest_cache
