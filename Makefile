# The README's two commands: `make train` and `make test`. Each creates .venv and installs on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: install train test test-slow test-all bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(VENV)/.installed

## Train the I3D teacher on the embedded synthetic corpus and print its test WER (extra Hydra overrides: ARGS="...").
train: install
	$(PY) train.py $(ARGS)

## Fast test suite (about 8 minutes on 2 CPU cores).
test: install
	$(PY) -m pytest -m "not slow" -q $(ARGS)

## Slow end-to-end tests, among them the commands of the README and docs/ (tests/test_front_door.py).
test-slow: install
	$(PY) -m pytest -m slow -q $(ARGS)

test-all: install
	$(PY) -m pytest -q $(ARGS)

## Benchmarks: print figures and write bench/results/*.json.
bench: install
	for script in bench/bench_*.py; do $(PY) $$script || exit 1; done

clean:
	rm -rf .cache .pytest_cache
