# Development entry points. `make help` lists them.

SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/orchestrator
KAFKA_BOOTSTRAP_SERVERS ?= 127.0.0.1:9092
export DATABASE_URL KAFKA_BOOTSTRAP_SERVERS
# Other settings (USE_KAFKA, WORKER_ID, ...) reach the binaries as given on the command
# line (`make api USE_KAFKA=true`) or in the environment.

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build every binary (debug)
	$(CARGO) build --workspace --bins

.PHONY: release
release: ## Build every binary (release)
	$(CARGO) build --workspace --bins --release

.PHONY: test
test: ## Run all tests (needs PostgreSQL at 127.0.0.1:5432; see scripts/ensure-postgres.sh)
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

.PHONY: lint
lint: ## Formatting, clippy, and the no-I/O rule of orchestrator-core
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@scripts/check-core-deps.sh

.PHONY: schema
schema: ## Regenerate crates/store/src/schema.rs from the migrations (needs diesel CLI)
	scripts/check-schema.sh --write

.PHONY: check-schema
check-schema: ## Fail if the committed schema differs from the migrations (needs diesel CLI)
	scripts/check-schema.sh

.PHONY: run
run: ## Start the whole stack in the background, no Docker (WORKERS=2, PROFILE=debug|release, RUN_DIR=.run, ports: see README)
	@CARGO="$(CARGO)" scripts/stack.sh run

.PHONY: stop
stop: ## Stop what `make run` started (and only that)
	@scripts/stack.sh stop

.PHONY: status
status: ## Show what `make run` started and whether it still runs
	@scripts/stack.sh status

.PHONY: bench
bench: ## Measure throughput and latency against this machine's ceilings (release build, a stack of its own on free ports; BENCH_ARGS=--help); reports in target/bench/
	$(CARGO) build --release --workspace --bins
	$(CARGO) run --release -q -p orchestrator-bench -- $(BENCH_ARGS)

DASHBOARD_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/orchestrator_dashboard_bench
DASHBOARD_TASKS ?= 1000000
export DASHBOARD_DATABASE_URL

.PHONY: bench-dashboard
bench-dashboard: postgres ## Fill DASHBOARD_DATABASE_URL with DASHBOARD_TASKS (1,000,000) tasks once, then time the dashboard's endpoints and screens; report in target/bench-dashboard.md
	@url='$(DASHBOARD_DATABASE_URL)'; admin="$${url%/*}/postgres"; name="$${url##*/}"; name="$${name%%\?*}"; \
		psql "$$admin" -tc "SELECT 1 FROM pg_database WHERE datname = '$$name'" | grep -q 1 \
		|| psql "$$admin" -c "CREATE DATABASE $$name"
	$(CARGO) run --release -q -p orchestrator-api --bin seed-tasks -- --tasks $(DASHBOARD_TASKS)
	$(CARGO) bench -q -p orchestrator-api --bench dashboard

.PHONY: up
up: ## Start the whole stack with Docker Compose and wait until it is healthy
	docker compose up --build --wait

.PHONY: down
down: ## Stop and remove the Docker Compose stack (volumes are kept)
	docker compose down

.PHONY: postgres
postgres: ## Make sure PostgreSQL runs locally
	scripts/ensure-postgres.sh

.PHONY: db
db: postgres ## Create the development database and apply migrations
	@psql -h 127.0.0.1 -U postgres -tc "SELECT 1 FROM pg_database WHERE datname = 'orchestrator'" | grep -q 1 \
		|| psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE orchestrator"
	$(CARGO) run -q -p orchestrator-api -- migrate

.PHONY: mocks
mocks: ## Run the three mock services on 8001-8003 (foreground)
	$(CARGO) build -q -p orchestrator-mock-services
	@trap 'kill 0' EXIT INT TERM; \
	for port in 8001 8002 8003; do target/debug/mock-services --port $$port & done; wait

.PHONY: api
api: db ## Run the API on :8000 (foreground; USE_KAFKA=true for Kafka mode)
	$(CARGO) run -p orchestrator-api

.PHONY: worker
worker: db ## Run a worker against KAFKA_BOOTSTRAP_SERVERS (foreground; set WORKER_ID to run several)
	$(CARGO) run -p orchestrator-worker

.PHONY: broker
broker: ## Run a Kafka-protocol broker (Tansu, memory storage) on 127.0.0.1:9092 (foreground)
	@bin=$$(scripts/install-tansu.sh) && exec $$bin broker \
		--listener-url tcp://127.0.0.1:9092 \
		--advertised-listener-url tcp://127.0.0.1:9092 \
		--storage-engine memory://tansu/

.PHONY: clean-test-dbs
clean-test-dbs: ## Drop databases left behind by crashed test runs
	@psql -h 127.0.0.1 -U postgres -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'orch\_test\_%' OR datname LIKE 'orch\_template\_%'" \
		| while read -r db; do psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $$db WITH (FORCE)"; done
