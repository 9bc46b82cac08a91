.PHONY: setup demo test lint imports

setup:
	bash tools/setup.sh

demo: setup
	.venv/bin/selfsup demo

# The import layers (docs/architecture.md) are checked first: an upward import fails the suite.
test: setup imports
	.venv/bin/python -m pytest -q tests

imports: setup
	.venv/bin/lint-imports

lint: setup imports
	.venv/bin/ruff check ssl tests tools && .venv/bin/ruff format --check ssl tests tools
