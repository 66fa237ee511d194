# The two commands of the README: `scripts/serve` (serve; builds a default model repository when
# none exists; `make run` calls it) and `make test` (the whole suite, exactly what CI runs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
REPOSITORY ?= model_repository
SERVE_STAMP := $(VENV)/.installed-serve
STAMP := $(VENV)/.installed

.PHONY: run test venv serve-venv repository clean

# Serving and building the default repository: the service and the export extra, nothing else.
$(SERVE_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[export]'
	touch $@

# Everything: also the load-test tools and the test suite's clients, linters and fuzzers.
$(STAMP): $(SERVE_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[export,loadtest,test]'
	touch $@

serve-venv: $(SERVE_STAMP)

venv: $(STAMP)

repository: $(SERVE_STAMP)
	$(BIN)/python -m model_export build-repository --output $(REPOSITORY) --if-missing

# For a terminal. Under a supervisor use scripts/serve: make itself exits 143 on SIGTERM.
run:
	REPOSITORY=$(REPOSITORY) scripts/serve $(ARGS)

# Lint first (pyproject.toml [tool.ruff.lint]: pycodestyle, pyflakes, isort, bugbear, pyupgrade).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
