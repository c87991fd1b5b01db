# Development entry points. `make help` lists them.

SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
# The by-hand targets (db, api, worker, mocks) run the binaries `make run` runs, built the
# same way: one `cargo build --workspace --bins`. `cargo run -p <crate>` would resolve
# that crate's features alone and rebuild a dozen shared crates each time the two
# alternate. SKIP_BUILD=1 takes the binaries in BIN_DIR as they are.
PROFILE ?= debug
SKIP_BUILD ?= 0
BIN_DIR ?= $(or $(CARGO_TARGET_DIR),target)/$(PROFILE)
PROFILE_FLAG = $(if $(filter debug,$(PROFILE)),,--profile $(PROFILE))
# The local stack (run, stop, status, db) is crates/xtask, through cargo's `xtask` alias
# (.cargo/config.toml). `cargo xtask` builds that one crate, whose few dependencies are
# none of ours, so it takes seconds, works with SKIP_BUILD=1 and a BIN_DIR holding only the
# stack's binaries, and never rebuilds those with other features: `make run` builds them
# with `cargo build --workspace --bins` (in xtask, unless SKIP_BUILD=1).
XTASK ?= $(CARGO) xtask

# Where the by-hand parts find each other, by default where `make run` puts them. A port
# changed for one part is changed for the others by giving it to them too (`make mocks
# MOCK_BASE_PORT=18001`, `make api MOCK_BASE_PORT=18001`). The API's own port is its
# API_PORT, a worker's health port its WORKER_HTTP_PORT. The binaries get these from
# make, ahead of a .env file: set them in the environment or on the command line.
# Other settings (USE_KAFKA, WORKER_ID, ...) reach the binaries as given on the command
# line (`make api USE_KAFKA=true`) or in the environment, or from .env.
DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/orchestrator
KAFKA_PORT ?= 9092
MOCK_BASE_PORT ?= 8001
MOCK_PORTS := $(shell p=$(MOCK_BASE_PORT); echo $$p $$((p + 1)) $$((p + 2)))
KAFKA_BOOTSTRAP_SERVERS ?= 127.0.0.1:$(KAFKA_PORT)
REVENUE_SERVICE_URL ?= http://127.0.0.1:$(word 1,$(MOCK_PORTS))
REBATES_SERVICE_URL ?= http://127.0.0.1:$(word 2,$(MOCK_PORTS))
SPECIALTY_SERVICE_URL ?= http://127.0.0.1:$(word 3,$(MOCK_PORTS))
# Exported to these targets only: tests (`make test`) read the same names as defaults.
db api worker: export DATABASE_URL := $(DATABASE_URL)
api worker: export KAFKA_BOOTSTRAP_SERVERS := $(KAFKA_BOOTSTRAP_SERVERS)
api worker: export REVENUE_SERVICE_URL := $(REVENUE_SERVICE_URL)
api worker: export REBATES_SERVICE_URL := $(REBATES_SERVICE_URL)
api worker: export SPECIALTY_SERVICE_URL := $(SPECIALTY_SERVICE_URL)

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build every binary (PROFILE=debug|release; SKIP_BUILD=1 skips it)
ifneq ($(SKIP_BUILD),1)
	$(CARGO) build --workspace --bins $(PROFILE_FLAG)
endif

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

.PHONY: monitoring-check
monitoring-check: ## Check the alert rules, run their unit tests and parse every dashboard query (needs promtool: apt-get install prometheus)
	promtool check rules deploy/monitoring/alerts.yaml
	promtool test rules deploy/monitoring/tests/*.yaml
	scripts/check-dashboard-queries.py
	@# The compose profile's Prometheus configuration, with the rules where they are here.
	@config=$$(mktemp --suffix=.yml) \
	  && sed 's#/etc/prometheus/alerts.yaml#$(CURDIR)/deploy/monitoring/alerts.yaml#' deploy/monitoring/prometheus.yml > $$config \
	  && promtool check config $$config; status=$$?; rm -f $$config; exit $$status

.PHONY: contract
contract: ## The API against its OpenAPI document: schemathesis and a generated Python client (needs python3)
	$(XTASK) contract

.PHONY: schema
schema: ## Regenerate crates/store/src/schema.rs from the migrations (needs diesel CLI)
	scripts/check-schema.sh --write

.PHONY: check-schema
check-schema: ## Fail if the committed schema differs from the migrations (needs diesel CLI)
	scripts/check-schema.sh

.PHONY: run
run: ## Start the whole stack in the background, no Docker (WORKERS=2, PROFILE=debug|release, RUN_DIR=.run, ports: see README)
	@$(XTASK) stack run

.PHONY: stop
stop: ## Stop what `make run` started (and only that)
	@$(XTASK) stack stop

.PHONY: monitoring
monitoring: ## Start a Prometheus on 127.0.0.1:9090 (PROMETHEUS_PORT) that scrapes the `make run` stack with the alert rules loaded; `make stop` stops it
	@$(XTASK) stack monitoring

.PHONY: status
status: ## Show what `make run` started and whether it still runs
	@$(XTASK) stack status

.PHONY: bench
bench: ## Measure throughput and latency against this machine's ceilings (release build, a stack of its own on free ports; BENCH_ARGS=--help); reports in target/bench/
	$(CARGO) build --release --workspace --bins
	$(CARGO) run --release -q -p orchestrator-bench --bin orchestrator-bench -- $(BENCH_ARGS)

.PHONY: soak
soak: ## Run the stack 30 minutes (SOAK_MINUTES) at 70% of its measured capacity, RETENTION 3m, on a PostgreSQL cluster of its own with autovacuum on; a sample a minute; report and chart in target/soak/ (SOAK_ARGS=--help)
	$(CARGO) build --release --workspace --bins
	$(CARGO) run --release -q -p orchestrator-bench --bin orchestrator-soak -- $(SOAK_ARGS)

# Tasks of the smaller of bench-instructions' two runs (the larger has twice as many).
INSTRUCTION_TASKS ?= 2000

.PHONY: bench-instructions
bench-instructions: ## Count one worker's instructions per task under valgrind (repeats to ~0.2%, for changes too small for CPU time to show; PROCESS=api for the API's; INSTRUCTION_TASKS, 2,000; BENCH_ARGS=--export-spans); profiles in target/instructions/
	$(CARGO) build --release --workspace --bins
	PROCESS=$(or $(PROCESS),worker) scripts/instructions.sh $(or $(CARGO_TARGET_DIR),target)/release $(INSTRUCTION_TASKS) $(BENCH_ARGS)

DASHBOARD_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/orchestrator_dashboard_bench
# `make bench-dashboard TASKS=10000000` for ten million.
TASKS ?= 1000000
DASHBOARD_TASKS ?= $(TASKS)
export DASHBOARD_DATABASE_URL

.PHONY: bench-dashboard
bench-dashboard: ## Fill DASHBOARD_DATABASE_URL with TASKS (1,000,000) tasks once, then time the dashboard's endpoints and screens; report in target/bench-dashboard.md
	@DATABASE_URL='$(DASHBOARD_DATABASE_URL)' SKIP_BUILD=1 $(XTASK) stack db --no-migrate
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
db: build ## Create the database of DATABASE_URL if it is missing, and apply the migrations
	@BIN_DIR="$(BIN_DIR)" SKIP_BUILD=1 $(XTASK) stack db

# The foreground targets: api, worker and broker exec their binary, so that Ctrl-C and
# SIGTERM reach it directly; mocks runs three and stops the others when one of them exits
# (a taken port, say), so that it never runs half.
.PHONY: mocks
mocks: build ## Run the mock services revenue, rebates, specialty on MOCK_BASE_PORT (8001), +1, +2 (foreground)
	@trap 'kill $$(jobs -p) 2>/dev/null' EXIT; \
	$(BIN_DIR)/mock-services --port $(word 1,$(MOCK_PORTS)) --services revenue & \
	$(BIN_DIR)/mock-services --port $(word 2,$(MOCK_PORTS)) --services rebates & \
	$(BIN_DIR)/mock-services --port $(word 3,$(MOCK_PORTS)) --services specialty & \
	wait -n

.PHONY: api
api: db ## Run the API on API_PORT (8000) (foreground; USE_KAFKA=true for Kafka mode)
	exec $(BIN_DIR)/orchestrator-api

.PHONY: worker
worker: db ## Run a worker against KAFKA_BOOTSTRAP_SERVERS (foreground; another one needs its own WORKER_ID and WORKER_HTTP_PORT)
	exec $(BIN_DIR)/orchestrator-worker

.PHONY: broker
broker: ## Run a Kafka-protocol broker (Tansu, memory storage; docs/broker.md) on 127.0.0.1:KAFKA_PORT (9092) (foreground)
	@bin=$$(scripts/install-tansu.sh) && exec $$bin broker \
		--listener-url tcp://127.0.0.1:$(KAFKA_PORT) \
		--advertised-listener-url tcp://127.0.0.1:$(KAFKA_PORT) \
		--storage-engine memory://tansu/

.PHONY: clean-test-dbs
clean-test-dbs: ## Drop databases left behind by crashed test runs
	@psql -h 127.0.0.1 -U postgres -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'orch\_test\_%' OR datname LIKE 'orch\_template\_%'" \
		| while read -r db; do psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $$db WITH (FORCE)"; done
