//! A TCP proxy a test can cut, to make a real server (PostgreSQL, say) disappear for
//! the code under test without stopping it for every other test.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use xtask::DatabaseUrl;

/// Forwards every connection on a loopback port to `target` until [`TcpProxy::cut`].
pub struct TcpProxy {
    port: u16,
    cut: Arc<Notify>,
    acceptor: JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy binds a loopback port");
        let port = listener.local_addr().expect("proxy address").port();
        let cut = Arc::new(Notify::new());
        let acceptor = tokio::spawn({
            let cut = Arc::clone(&cut);
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let cut = Arc::clone(&cut);
                    tokio::spawn(async move {
                        let Ok(mut outbound) = TcpStream::connect(target).await else {
                            return;
                        };
                        let _ = inbound.set_nodelay(true);
                        let _ = outbound.set_nodelay(true);
                        tokio::select! {
                            _ = copy_bidirectional(&mut inbound, &mut outbound) => {}
                            () = cut.notified() => {}
                        }
                    });
                }
            }
        });
        TcpProxy {
            port,
            cut,
            acceptor,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A proxy in front of the PostgreSQL server a database URL names, and that URL
    /// rewritten to go through it.
    pub async fn in_front_of(url: &str) -> (TcpProxy, String) {
        let url = DatabaseUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let target = tokio::net::lookup_host((url.host(), url.port()))
            .await
            .expect("the host resolves")
            .next()
            .expect("an address");
        let proxy = TcpProxy::start(target).await;
        let through = url
            .with_address("127.0.0.1", proxy.port())
            .expect("127.0.0.1 is a host");
        (proxy, through.as_str().to_owned())
    }

    /// Closes every open connection and refuses new ones, as a server that died would.
    pub fn cut(&self) {
        self.acceptor.abort();
        self.cut.notify_waiters();
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}
