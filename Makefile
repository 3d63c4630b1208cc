# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck bench clean

$(BIN)/tailor: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[test]'
	touch $(BIN)/tailor

## demo: set up, then simulate a store and run the pipeline end to end on embedded defaults
demo: $(BIN)/tailor
	$(BIN)/tailor demo

## test: set up, then run the test suite
test: $(BIN)/tailor
	$(BIN)/python -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

lint: $(BIN)/tailor
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/tailor
	$(BIN)/mypy features models training serving

clean:
	rm -rf $(VENV) .tailor .pytest_cache .mypy_cache .ruff_cache
