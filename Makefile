.PHONY: setup demo test lint

setup:
	bash tools/setup.sh

demo: setup
	.venv/bin/selfsup demo

test: setup
	.venv/bin/python -m pytest -q tests

lint: setup
	.venv/bin/ruff check ssl tests && .venv/bin/ruff format --check ssl tests
