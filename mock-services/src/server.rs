//! Starting and stopping the HTTP server.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::behaviour::Behaviour;
use crate::config::MockConfig;
use crate::handlers;
use crate::state::AppState;
use crate::stats::StatsSnapshot;

/// Pending connections the kernel queues for us; benchmarks open many at once.
const LISTEN_BACKLOG: u32 = 1024;

/// How long `start` waits for the server to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const READY_POLL_INTERVAL: Duration = Duration::from_millis(5);

/// A running mock server.
///
/// [`stop`](Self::stop) stops it gracefully; dropping the handle stops it at once,
/// closing open connections.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<AppState>,
    /// Both are `None` once stopped, so `Drop` knows there is nothing left to do.
    handle: Option<ServerHandle>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl MockServer {
    /// Binds (port 0 works) and starts serving in the background on the current tokio
    /// runtime; returns once the server has answered a health check.
    pub async fn start(config: MockConfig) -> io::Result<MockServer> {
        config
            .validate()
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
        let state = Arc::new(AppState::new(
            &config.services,
            config.resolved_default_behaviour(),
        ));
        let listener = bind(SocketAddr::new(config.host, config.port))?;
        let addr = listener.local_addr()?;

        let data = web::Data::from(Arc::clone(&state));
        let server = HttpServer::new(move || {
            let data = data.clone();
            App::new()
                .app_data(data.clone())
                .configure(|cfg| handlers::configure(cfg, &data))
                .default_service(web::to(handlers::not_found))
        })
        .workers(config.workers)
        .disable_signals()
        .shutdown_timeout(config.shutdown_timeout_secs)
        .keep_alive(Duration::from_secs(config.keep_alive_secs))
        // Answers are small and written at once; Nagle would only add latency.
        .tcp_nodelay(true)
        // When a client closes its connection (typically after its own timeout), drop the
        // request instead of finishing it for nobody: `in_flight` then shows what clients
        // are actually waiting for, and hanging requests end with their client.
        .h1_allow_half_closed(false)
        .listen(listener)?
        .run();
        let handle = server.handle();
        let mut task = tokio::spawn(server);

        if let Err(err) = wait_until_ready(client_addr(addr), &mut task).await {
            // Don't leave a half-started server behind.
            handle.stop(false).await;
            return Err(err);
        }
        tracing::info!(%addr, services = ?config.services, "mock services listening");
        Ok(MockServer {
            addr,
            state,
            handle: Some(handle),
            task: Some(task),
        })
    }

    /// The address the server is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, with a wildcard bind address replaced by loopback.
    pub fn base_url(&self) -> String {
        format!("http://{}", client_addr(self.addr))
    }

    /// The same counters as `GET /stats`.
    pub fn stats(&self) -> StatsSnapshot {
        self.state.stats.snapshot()
    }

    /// The same as `POST /stats/reset`.
    pub fn reset_stats(&self) {
        self.state.stats.reset();
    }

    /// The same as `PUT /control/{service}`.
    ///
    /// # Panics
    ///
    /// If `service` is not configured or `behaviour` is invalid: both are mistakes in the
    /// calling test, which should fail loudly rather than test the wrong thing.
    pub fn set_behaviour(&self, service: &str, behaviour: Behaviour) {
        let Some(index) = self.state.service_index(service) else {
            panic!("mock server has no service named {service:?}");
        };
        if let Err(err) = behaviour.validate() {
            panic!("invalid behaviour for {service:?}: {err}");
        }
        self.state.set_behaviour(index, behaviour);
    }

    /// The same as `DELETE /control`: every service back to the process default.
    pub fn reset_behaviours(&self) {
        self.state.reset_behaviours();
    }

    /// Stops gracefully: stops accepting connections, releases hanging requests and waits
    /// (up to the shutdown timeout) for requests in progress. May take about a second when
    /// connections are open, as actix checks for idle workers once a second.
    pub async fn stop(mut self) {
        self.state.begin_shutdown();
        if let Some(handle) = self.handle.take() {
            handle.stop(true).await;
        }
        if let Some(task) = self.task.take() {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::warn!(%err, "mock server ended with an error"),
                Err(err) => tracing::warn!(%err, "mock server task failed"),
            }
        }
        tracing::info!(addr = %self.addr, "mock services stopped");
    }

    /// Resolves when the server ends by itself (it should not before `stop`).
    async fn ended(&mut self) -> anyhow::Result<()> {
        match self.task.as_mut() {
            Some(task) => {
                let result = task.await;
                self.task = None;
                match result {
                    Ok(Ok(())) => anyhow::bail!("mock server ended unexpectedly"),
                    Ok(Err(err)) => Err(err).context("mock server failed"),
                    Err(err) => Err(err).context("mock server task failed"),
                }
            }
            None => std::future::pending().await,
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.state.begin_shutdown();
            // The stop command is sent when `stop` is called; the returned future only
            // waits for completion, which a destructor cannot do.
            drop(handle.stop(false));
        }
    }
}

/// Serves until SIGINT or SIGTERM, then stops gracefully.
pub async fn run(config: MockConfig) -> anyhow::Result<()> {
    let mut server = MockServer::start(config)
        .await
        .context("starting the mock services")?;
    let signal = tokio::select! {
        signal = orchestrator_stdx::termination_signal() => signal,
        ended = server.ended() => return ended,
    };
    tracing::info!(signal, "stopping");
    server.stop().await;
    Ok(())
}

/// A listening socket; building it by hand sets the backlog and `SO_REUSEADDR` (so a
/// restarted mock can take its fixed port back while old connections linger).
fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)?.into_std()
}

/// Where a client reaches a server bound to `addr`.
fn client_addr(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// Polls `GET /health` until it answers 200, the server task ends, or time runs out.
async fn wait_until_ready(
    addr: SocketAddr,
    task: &mut JoinHandle<io::Result<()>>,
) -> io::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if task.is_finished() {
            return Err(match task.await {
                Ok(Ok(())) => io::Error::other("mock server ended during start-up"),
                Ok(Err(err)) => err,
                Err(err) => io::Error::other(err),
            });
        }
        if let Ok(Ok(true)) = tokio::time::timeout(READY_POLL_INTERVAL * 100, probe(addr)).await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("mock server on {addr} did not become ready within {READY_TIMEOUT:?}"),
            ));
        }
        tokio::time::sleep(READY_POLL_INTERVAL).await;
    }
}

/// One raw `GET /health`; a raw socket keeps an HTTP client out of the dependencies.
async fn probe(addr: SocketAddr) -> io::Result<bool> {
    const EXPECTED: &[u8] = b"HTTP/1.1 200";
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: mock\r\nConnection: close\r\n\r\n")
        .await?;
    let mut head = [0u8; EXPECTED.len()];
    stream.read_exact(&mut head).await?;
    Ok(head == EXPECTED)
}
