# The two commands of the README: `make run` (serve; builds a default model repository when none
# exists) and `make test` (the whole suite, exactly what CI runs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
REPOSITORY ?= model_repository
STAMP := $(VENV)/.installed

.PHONY: run test venv repository clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[export,loadtest,test]'
	touch $@

venv: $(STAMP)

repository: $(STAMP)
	$(BIN)/python -m model_export build-repository --output $(REPOSITORY) --if-missing

run: repository
	$(BIN)/python -m service --model-repository $(REPOSITORY) $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
