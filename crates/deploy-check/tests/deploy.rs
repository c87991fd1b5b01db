//! The deployment files agree with each other and with the binaries.
//!
//! - `compose`: `docker-compose.yml` (start-up order, health checks, settings, ports, Kafka).
//! - `k8s`: `deploy/k8s/` (kustomization, settings, probes, autoscaling, hardening).
//! - `nginx`: `deploy/nginx.conf` against the compose file.
//! - `image`: `deploy/Dockerfile`, `.dockerignore` and `deploy/healthcheck.sh`.
//!
//! Settings are checked against the `[env: ...]` names in each binary's `--help`, so a
//! renamed or misspelt variable fails here rather than being ignored at run time.

// The modules sit in tests/deploy/ so that Cargo does not take each for a test binary.
#[path = "deploy/compose.rs"]
mod compose;
#[path = "deploy/image.rs"]
mod image;
#[path = "deploy/k8s.rs"]
mod k8s;
#[path = "deploy/nginx.rs"]
mod nginx;
#[path = "deploy/support.rs"]
mod support;
