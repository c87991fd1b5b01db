//! Completion webhooks: where a callback may go and how it is signed. No I/O of its own
//! but name resolution (the guard must see the addresses connected to); the outbox,
//! the delivery loop and its retries build on this.
//!
//! - [`address`]: which IP addresses a webhook may reach, judged on the address alone.
//! - [`target`]: a callback URL's rules, checked at submit time against the addresses
//!   its host resolves to then, and again at every connection by the guarded resolver
//!   of the delivery client (no proxy, no redirects).
//! - [`signature`]: Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`,
//!   `webhook-signature`).

pub mod address;
pub mod signature;
pub mod target;

pub use signature::{InvalidSecret, WebhookSecret};
pub use target::{GuardedResolver, TargetPolicy, TargetRefusal};
