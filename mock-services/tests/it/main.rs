//! Integration tests: a real `MockServer` on a free port, driven over HTTP with reqwest.

mod control;
mod faults;
mod service;
mod stats;
mod support;
