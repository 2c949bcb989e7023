.PHONY: run test lint format
run:
	scripts/run
test:
	scripts/test
lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .
format:
	.venv/bin/ruff format . && .venv/bin/ruff check --fix .
