# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Every dependency (and the test tools) pinned by `make lock`; installs are
# constrained to it, so CI installs exactly what `make audit` audited.
LOCK := requirements.lock

.PHONY: demo test lint typecheck audit lock bench clean

$(BIN)/tailor: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c $(LOCK) -e '.[test]'
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
	$(BIN)/mypy features models training serving simulation cli measurement

## lock: resolve pyproject.toml (with the test extra) into $(LOCK) for every platform,
## keeping the versions already pinned where they still fit (LOCK_FLAGS=--upgrade: newest)
lock: $(BIN)/tailor
	$(BIN)/uv pip compile pyproject.toml --extra test --python-version 3.11 --universal \
		-o $(LOCK) $(LOCK_FLAGS)

# audit: pip-audit over $(LOCK) (.ci/audit says how). PyPI's vulnerability data has
# no severity, so "fail on high-severity vulnerabilities" is kept as: fail on every
# known vulnerability, unless it is ignored below after review — one line each:
#   AUDIT_IGNORE += --ignore-vuln <ID>  # <package> <version>: why it cannot reach
#   us (or why no fixed version can be taken yet); reviewed <date> by <name>
# and the ignore goes when the lock takes a fixed version. None is ignored today.
AUDIT_IGNORE :=
AUDIT_UNREACHABLE ?= fail
audit: $(BIN)/tailor
	BIN=$(BIN) LOCK=$(LOCK) AUDIT_UNREACHABLE=$(AUDIT_UNREACHABLE) bash .ci/audit $(AUDIT_IGNORE)

clean:
	rm -rf $(VENV) .tailor .pytest_cache .mypy_cache .ruff_cache
