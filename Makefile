# The two commands of README.md: `make report` and `make test`, in a virtual environment (PEP 668).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# pip installs without byte-compiling (28 s of a 78 s install: every module of torch and the rest);
# Python compiles what it imports on first use instead (about 5 s), which needs bytecode writing on
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install report test lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python  ## what the project needs, pinned, into $(VENV) (torch from pip's local cache on the lab machines)
	$(BIN)/python -m pip install -q --no-compile -r requirements.txt
	$(BIN)/python -m pip install -q --no-compile --no-deps -e .

report: install  ## quick grid -> stale pages (papermill) -> HTML book, as `jupyter-book build book`; prints index.html
	$(BIN)/python -m pruneflow report --profile quick --results results

test: install  ## unit, grid and report tests, and every notebook on the smoke profile
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest --nbval-lax tests notebooks

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
