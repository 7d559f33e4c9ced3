# The two quick-start commands (README): `make dev` and `make test`.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: bootstrap dev test lint unit integration down

bootstrap:
	@scripts/bootstrap

## Set up and run the platform on the local stack.
dev: bootstrap
	$(BIN)/annostack dev up
	$(BIN)/annostack dev platform

## Set up and run the whole test suite: lint, types, import layers, unit and integration tiers.
test: bootstrap lint
	$(BIN)/annostack dev up
	$(BIN)/pytest

DOCKERFILES := operator/Dockerfile apps/Dockerfile workers/Dockerfile

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint $(DOCKERFILES)
	$(BIN)/check-jsonschema --builtin-schema vendor.gitlab-ci --data-transform gitlab-ci .gitlab-ci.yml

unit: bootstrap
	$(BIN)/pytest tests/unit

integration: bootstrap
	$(BIN)/pytest tests/integration

down:
	$(BIN)/annostack dev down
