//! Credentials of the orchestrator's API.
//!
//! - [`token`]: API tokens: their text form, how they are made from the operating
//!   system's randomness, and how a presented one is checked against its stored hash.
//! - [`session`]: the dashboard's session cookies, made and hashed the same way.
//! - [`jwt`]: JWT bearer tokens of an identity provider, checked against its keys.
//!
//! No I/O beyond the OS random source: storing tokens is `orchestrator_store::tokens`,
//! fetching an identity provider's keys and checking requests is the API's.

pub mod jwt;
pub mod session;
pub mod token;

pub use session::NewSession;
pub use token::{IssuedToken, MalformedToken, NoRandomness, PresentedToken};
