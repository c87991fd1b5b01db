//! Black-box tests of the API: the real application on a free port, a PostgreSQL
//! database of its own, and the mock services on loopback, spoken to over HTTP.

mod helpers;

mod admin;
mod auth;
mod bulk;
mod cancel;
mod contract;
mod dashboard;
mod docs;
mod events;
mod jwt;
mod oidc;
mod operations;
mod orchestrate;
mod redrive;
mod resume;
mod retention;
mod sessions;
mod tasks;
mod tenants;
mod tokens;
mod ui;
mod validation;
mod wait;
mod webhooks;
