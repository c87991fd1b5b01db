//! Free loopback ports for the tests: the one `free_port` of the workspace, and blocks of
//! consecutive ones away from `make run`'s defaults (`xtask::ports`), so a test's parts
//! never take a developer's running stack's ports.

use std::net::{Ipv4Addr, TcpListener};

/// A port the kernel considers free right now (it picks it, in its ephemeral range).
/// Someone may take it before the caller binds it: a caller that must be sure checks
/// who listens (as [`crate::broker::TestBroker`] does).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|err| panic!("cannot bind a loopback port: {err}"))
}

/// The first of `count` consecutive ports that are free now and none of which is one of
/// `make run`'s defaults; below the kernel's ephemeral range, where [`free_port`]'s land.
pub fn free_port_block(count: u16) -> u16 {
    xtask::ports::free_block(count).unwrap_or_else(|err| panic!("{err}"))
}
