# The two commands of README.md: `make report` and `make test`.
PYTHON ?= python3

.PHONY: install report test lint

install:  ## what the project needs, pinned (torch from pip's local cache on the lab machines)
	$(PYTHON) -m pip install -q -r requirements.txt
	$(PYTHON) -m pip install -q --no-deps -e .

report: install  ## quick grid -> stale pages (papermill) -> HTML book, as `jupyter-book build book`; prints index.html
	$(PYTHON) -m pruneflow report --profile quick --results results

test: install  ## unit, grid and report tests, and every notebook on the smoke profile
	$(PYTHON) -m pytest --nbval-lax tests notebooks

lint:
	ruff check . && ruff format --check .
