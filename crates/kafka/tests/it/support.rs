//! A Tansu broker that advertises an address of our choosing, a TLS-terminating proxy in
//! front of it, and certificates for both ends.
//!
//! Tansu speaks plaintext only, and rskafka connects to the *advertised* listener for
//! everything after the bootstrap, so for TLS end to end the broker must advertise the
//! proxy's address, not its own. `orchestrator_testkit::broker::TestBroker` advertises
//! its own listener, so these tests start Tansu themselves: the proxy's listener is bound
//! first (its port is then ours), and the broker is started advertising it.

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use orchestrator_testkit::ports::free_port;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// The host name the brokers are reached by in these tests; the server certificate is
/// issued for it, and SNI must carry it.
pub const BROKER_HOST: &str = "localhost";

const START_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_PORT_ATTEMPTS: usize = 10;

/// A certificate authority and a server certificate for [`BROKER_HOST`] signed by it.
pub struct TestPki {
    pub ca_pem: String,
    pub server_chain: Vec<CertificateDer<'static>>,
    pub server_key: PrivatePkcs8KeyDer<'static>,
}

impl TestPki {
    pub fn generate(ca_name: &str) -> TestPki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, ca_name);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("self-signed CA");

        let server_key = KeyPair::generate().expect("server key");
        let server = CertificateParams::new(vec![BROKER_HOST.to_owned()])
            .expect("server params")
            .signed_by(&server_key, &ca)
            .expect("server certificate");
        TestPki {
            ca_pem: ca.pem(),
            server_chain: vec![server.der().clone(), ca.der().clone()],
            server_key: PrivatePkcs8KeyDer::from(server_key.serialize_der()),
        }
    }

    /// Writes the CA certificate to a fresh file, as an operator would mount it.
    pub fn write_ca_file(&self) -> TempFile {
        TempFile::with_contents("ca.pem", &self.ca_pem)
    }

    fn acceptor(&self) -> TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                self.server_chain.clone(),
                PrivateKeyDer::Pkcs8(self.server_key.clone_key()),
            )
            .expect("server certificate and key");
        TlsAcceptor::from(Arc::new(config))
    }
}

/// A file removed on drop.
pub struct TempFile {
    path: PathBuf,
}

impl TempFile {
    pub fn with_contents(name: &str, contents: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "orchestrator-kafka-{}-{name}",
            uuid::Uuid::new_v4().simple()
        ));
        fs::write(&path, contents).expect("write temp file");
        TempFile { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Tansu on a free loopback port, advertising another address; killed when dropped.
pub struct AdvertisingBroker {
    port: u16,
    broker: Child,
    log_path: PathBuf,
    /// Kills the broker if this process dies without dropping it (see testkit's
    /// `TestBroker`, which does the same).
    watchdog: Option<Child>,
    _watchdog_stdin: Option<ChildStdin>,
}

impl AdvertisingBroker {
    /// Starts Tansu listening on a free port of 127.0.0.1 and advertising `advertised`
    /// (`HOST:PORT`; `None`: its own listener), with `extra` arguments.
    pub async fn start(advertised: Option<&str>, extra: &[&str]) -> AdvertisingBroker {
        let binary = tansu_binary().await;
        let mut failures = Vec::new();
        for _ in 0..MAX_PORT_ATTEMPTS {
            let port = free_port();
            let mut broker = AdvertisingBroker::spawn(&binary, port, advertised, extra);
            match broker.wait_ready().await {
                Ok(()) => return broker,
                // Another process took the port first: try another.
                Err(reason) => failures.push(format!("port {port}: {reason}")),
            }
        }
        panic!("tansu did not start: {}", failures.join("; "));
    }

    /// Where the broker itself listens (plaintext).
    pub fn address(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `127.0.0.1:PORT`, for a broker that advertises its own listener.
    pub fn bootstrap(&self) -> String {
        self.address().to_string()
    }

    fn spawn(
        binary: &Path,
        port: u16,
        advertised: Option<&str>,
        extra: &[&str],
    ) -> AdvertisingBroker {
        let listener = format!("tcp://127.0.0.1:{port}");
        let advertised = advertised.map_or_else(|| listener.clone(), |a| format!("tcp://{a}"));
        let log_path = std::env::temp_dir().join(format!(
            "orchestrator-kafka-tansu-{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let log = fs::File::create(&log_path).expect("create the broker log");
        let log_err = log.try_clone().expect("clone the log handle");
        let broker = Command::new(binary)
            .arg("broker")
            .args(["--listener-url", &listener])
            .args(["--advertised-listener-url", &advertised])
            .args(["--storage-engine", "memory://tansu/"])
            .args(extra)
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", binary.display()));
        let mut watchdog = Command::new("sh")
            .args([
                "-c",
                "read -r _ignored; kill -9 \"$1\" 2>/dev/null",
                "tansu-watchdog",
            ])
            .arg(broker.id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        let watchdog_stdin = watchdog.as_mut().and_then(|w| w.stdin.take());
        AdvertisingBroker {
            port,
            broker,
            log_path,
            watchdog,
            _watchdog_stdin: watchdog_stdin,
        }
    }

    /// Tansu logs "ready in" once its listener is bound; a broker that lost the port to
    /// another process never does (it logs `AddrInUse` and exits), so this also tells
    /// that the port is ours.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.broker.try_wait() {
                return Err(format!("exited with {status}"));
            }
            let log = fs::read_to_string(&self.log_path).unwrap_or_default();
            if log.contains("ready in") && TcpStream::connect(self.address()).await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "not ready within {START_TIMEOUT:?}; log: {}",
                    self.log_path.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for AdvertisingBroker {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let _ = self.broker.kill();
        let _ = self.broker.wait();
        if std::thread::panicking() {
            eprintln!("tansu log kept at {}", self.log_path.display());
        } else {
            let _ = fs::remove_file(&self.log_path);
        }
    }
}

/// `$TANSU_BIN`, else the workspace's `tools/bin/tansu`. When neither is there, a
/// `TestBroker` is started once: it installs the binary.
async fn tansu_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TANSU_BIN") {
        return PathBuf::from(path);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/bin/tansu");
    if !path.is_file() {
        drop(orchestrator_testkit::broker::TestBroker::start().await);
    }
    path
}

/// A TLS-terminating TCP proxy: clients speak TLS to it, it speaks plaintext to the
/// broker. Records the SNI of every handshake. Stops when dropped.
pub struct TlsProxy {
    port: u16,
    server_names: Arc<Mutex<Vec<Option<String>>>>,
    task: JoinHandle<()>,
}

impl TlsProxy {
    /// Binds the proxy's port now, so a broker can be told to advertise it before the
    /// proxy knows where that broker is.
    pub async fn bind() -> (TcpListener, u16) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        (listener, port)
    }

    pub fn start(listener: TcpListener, pki: &TestPki, upstream: SocketAddr) -> TlsProxy {
        let port = listener.local_addr().expect("proxy address").port();
        let acceptor = pki.acceptor();
        let server_names = Arc::new(Mutex::new(Vec::new()));
        let names = Arc::clone(&server_names);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let names = Arc::clone(&names);
                tokio::spawn(async move {
                    // A client that rejects our certificate ends here, as it should.
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    let name = tls.get_ref().1.server_name().map(str::to_owned);
                    names.lock().expect("names lock").push(name);
                    let Ok(mut broker) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
                });
            }
        });
        TlsProxy {
            port,
            server_names,
            task,
        }
    }

    /// `BROKER_HOST:PORT`, the address clients (and the broker's metadata) use.
    pub fn address(&self) -> String {
        format!("{BROKER_HOST}:{}", self.port)
    }

    /// The SNI of each completed handshake so far.
    pub fn server_names(&self) -> Vec<Option<String>> {
        self.server_names.lock().expect("names lock").clone()
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
