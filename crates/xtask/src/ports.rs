//! The ports of a local stack: the defaults of `make run` (the one list of them), and
//! blocks of free ports away from them for a second stack (the benchmark's, a test's).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher as _;
use std::net::{Ipv4Addr, TcpListener};
use std::ops::Range;
use std::time::Instant;

use crate::database_url::DEFAULT_POSTGRES_PORT;

/// Where a free block is looked for: below the kernel's ephemeral range (32768-60999),
/// where other programs' and tests' port-0 listeners land.
const FREE_BLOCK_RANGE: Range<u16> = 20_000..32_000;
/// Blocks tried before giving up.
const FREE_BLOCK_ATTEMPTS: u32 = 200;
/// Worker health ports counted as taken by a default stack: more than `make run` starts
/// by default, for a developer's `WORKERS=3` or so.
const DEFAULT_STACK_WORKERS: u16 = 8;
/// The mock services, each on its own port from `mock_base`.
pub const MOCK_SERVICES: [&str; 3] = ["revenue", "rebates", "specialty"];

/// The ports of a stack: the API, three mock services from `mock_base`, the broker, and
/// the workers' health ports from `worker_http_base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub api: u16,
    pub mock_base: u16,
    pub kafka: u16,
    pub worker_http_base: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum PortsError {
    #[error("ports from {0} on are taken (or include one of `make run`'s defaults)")]
    Taken(u16),
    #[error("no block of {0} free ports found")]
    NoneFree(u16),
    #[error("MOCK_BASE_PORT or WORKER_HTTP_BASE_PORT leaves no room for every component")]
    NoRoom,
}

impl Ports {
    /// `make run`'s ports.
    pub const DEFAULT: Ports = Ports {
        api: 8000,
        mock_base: 8001,
        kafka: 9092,
        worker_http_base: 9000,
    };

    /// A block from `base` on: the API, the three mocks, the broker, then the workers.
    pub fn from_base(base: u16) -> Ports {
        Ports {
            api: base,
            mock_base: base.saturating_add(1),
            kafka: base.saturating_add(4),
            worker_http_base: base.saturating_add(5),
        }
    }

    /// The port of mock service `index` (0 revenue, 1 rebates, 2 specialty).
    pub fn mock(&self, index: usize) -> u16 {
        self.mock_base + u16::try_from(index).unwrap_or(u16::MAX)
    }

    /// The health port of worker `n` (from 1).
    pub fn worker(&self, n: u16) -> u16 {
        self.worker_http_base + n - 1
    }

    /// Fails when some component's port would be past 65535.
    pub fn check_room(&self, workers: u16) -> Result<(), PortsError> {
        let mocks = self.mock_base.checked_add(2);
        let workers = self.worker_http_base.checked_add(workers.saturating_sub(1));
        match (mocks, workers) {
            (Some(_), Some(_)) => Ok(()),
            _ => Err(PortsError::NoRoom),
        }
    }

    /// Every port of a stack with `workers` workers.
    pub fn all(&self, workers: u16) -> Vec<u16> {
        let mut all = vec![self.api, self.kafka];
        all.extend((0..MOCK_SERVICES.len()).map(|i| self.mock(i)));
        all.extend((1..=workers).map(|n| self.worker(n)));
        all
    }

    /// The ports given, if they are free and none is a default one.
    pub fn free_at(base: u16, workers: u16) -> Result<Ports, PortsError> {
        let ports = Ports::from_base(base);
        if ports.check_room(workers).is_ok() && all_free(&ports.all(workers)) {
            Ok(ports)
        } else {
            Err(PortsError::Taken(base))
        }
    }

    /// A random block of free ports for a stack with `workers` workers.
    pub fn pick_free(workers: u16) -> Result<Ports, PortsError> {
        let count = 5 + workers;
        let base = free_block(count)?;
        Ok(Ports::from_base(base))
    }
}

/// Whether `port` is one that a developer's `make run` (or its PostgreSQL) uses.
pub fn is_default(port: u16) -> bool {
    port == DEFAULT_POSTGRES_PORT || Ports::DEFAULT.all(DEFAULT_STACK_WORKERS).contains(&port)
}

/// The first of `count` consecutive ports that are free now and not a default one, picked
/// at random in 20000-31999. Someone else may take one before it is used: a caller that
/// must be sure binds it and checks who listens.
pub fn free_block(count: u16) -> Result<u16, PortsError> {
    for attempt in 0..FREE_BLOCK_ATTEMPTS {
        let random = RandomState::new().hash_one((Instant::now(), attempt));
        let span = u64::from(FREE_BLOCK_RANGE.end - FREE_BLOCK_RANGE.start - count);
        let Ok(offset) = u16::try_from(random % span) else {
            continue;
        };
        let base = FREE_BLOCK_RANGE.start + offset;
        let ports: Vec<u16> = (base..base + count).collect();
        if all_free(&ports) {
            return Ok(base);
        }
    }
    Err(PortsError::NoneFree(count))
}

/// None of `ports` is a default one, and each can be bound on loopback now.
fn all_free(ports: &[u16]) -> bool {
    ports
        .iter()
        .all(|port| !is_default(*port) && is_free(*port))
}

/// Nothing listens on 127.0.0.1:`port` now.
pub fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_make_runs_ports() {
        assert_eq!(
            Ports::DEFAULT.all(2),
            [8000, 9092, 8001, 8002, 8003, 9000, 9001]
        );
        for port in [8000, 8001, 8002, 8003, 9092, 9000, 9001, 9002, 5432] {
            assert!(is_default(port), "{port}");
        }
        assert!(!is_default(20_000));
    }

    #[test]
    fn a_picked_block_is_free_and_avoids_the_defaults() {
        let ports = Ports::pick_free(3).expect("a free block");
        let all = ports.all(3);
        assert_eq!(all.len(), 8);
        for port in all {
            assert!(FREE_BLOCK_RANGE.contains(&port), "{port}");
            assert!(is_free(port), "{port} is taken");
        }
    }

    #[test]
    fn a_taken_port_is_refused() {
        let base = free_block(8).expect("a free block");
        let _listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, base + 4)).expect("binding the broker's port");
        assert!(matches!(Ports::free_at(base, 2), Err(PortsError::Taken(_))));
        assert!(Ports::free_at(8000, 2).is_err(), "the defaults are refused");
    }

    #[test]
    fn no_room_past_the_last_port() {
        let ports = Ports {
            worker_http_base: 65_535,
            ..Ports::DEFAULT
        };
        assert!(ports.check_room(1).is_ok());
        assert!(matches!(ports.check_room(2), Err(PortsError::NoRoom)));
    }
}
