//! Checks of the deployment files: `deploy/Dockerfile`, `docker-compose.yml`,
//! `deploy/nginx.conf`, `deploy/healthcheck.sh` and `deploy/k8s/`.
//!
//! Everything lives in the integration tests (`tests/deploy.rs`); this library is empty.
//! The tests read the files, compare them with each other and with the `--help` of the
//! binaries, which they expect in the workspace's target folder: build them first
//! (`cargo build --workspace --bins`; `cargo nextest run --workspace` does it too).
