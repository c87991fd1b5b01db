//! How a component shows it is up: the broker accepts connections; the mocks answer
//! `GET /health`; the API and the workers answer `GET /ready` (200 once their
//! dependencies answer, 503 before).

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// One probe must not hang on a listener that accepts and never answers.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
pub enum Health {
    /// Something accepts connections on the port.
    Listens(u16),
    /// `GET path` answers 200.
    Http(u16, &'static str),
    /// `GET /ready` answers 200, or `/health` where the binary has no `/ready` (404).
    Ready(u16),
}

impl Health {
    /// `Ok` when healthy, else what was seen (for the timeout's message).
    pub fn check(self) -> Result<(), String> {
        match self {
            Health::Listens(port) => {
                if listens(port) {
                    Ok(())
                } else {
                    Err(format!("nothing listens on 127.0.0.1:{port}"))
                }
            }
            Health::Http(port, path) => match http_status(port, path) {
                Some(200) => Ok(()),
                status => Err(format!("GET {path} on port {port}: {}", shown(status))),
            },
            Health::Ready(port) => {
                let mut status = http_status(port, "/ready");
                if status == Some(404) {
                    status = http_status(port, "/health");
                }
                match status {
                    Some(200) => Ok(()),
                    status => Err(format!("readiness on port {port}: {}", shown(status))),
                }
            }
        }
    }
}

fn shown(status: Option<u16>) -> String {
    status.map_or_else(|| "no answer".to_owned(), |s| s.to_string())
}

fn address(port: u16) -> SocketAddr {
    (Ipv4Addr::LOCALHOST, port).into()
}

/// Something accepts connections on 127.0.0.1:`port`: a component, of this stack or of
/// another, or another program.
pub fn listens(port: u16) -> bool {
    TcpStream::connect_timeout(&address(port), CONNECT_TIMEOUT).is_ok()
}

/// The status of `GET http://127.0.0.1:PORT/PATH`, `None` when nothing answers.
///
/// A plain HTTP/1.0 request and the status line of the answer: all a health probe
/// needs. An HTTP client crate would bring an async runtime (reqwest) or a second client
/// into this crate, which `cargo xtask` builds on its own before it can start anything.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    http_status_as(port, path, None)
}

/// The status of the same request with `Authorization: Bearer <token>`.
pub fn http_status_as(port: u16, path: &str, token: Option<&str>) -> Option<u16> {
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let mut stream = TcpStream::connect_timeout(&address(port), CONNECT_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(ANSWER_TIMEOUT)).ok()?;
    // One write: a server that answers after a first fragment and closes would reset the
    // connection under the rest.
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{authorization}Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut status_line = String::new();
    BufReader::new(stream).read_line(&mut status_line).ok()?;
    // "HTTP/1.1 200 OK"
    status_line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::net::TcpListener;

    use super::*;

    /// Answers each connection with `answer(path)` until dropped with the listener.
    fn server(answer: fn(&str) -> &'static str) -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding");
        let port = listener.local_addr().expect("the address").port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut request = Vec::new();
                let mut chunk = [0_u8; 1024];
                while !request.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(read) => request.extend_from_slice(&chunk[..read]),
                    }
                }
                let request = String::from_utf8_lossy(&request).into_owned();
                let path = request.split_whitespace().nth(1).unwrap_or("/");
                let _ = stream.write_all(answer(path).as_bytes());
            }
        });
        port
    }

    #[test]
    fn ready_falls_back_to_health_where_there_is_no_ready() {
        let port = server(|path| match path {
            "/health" => "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            _ => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
        });
        assert_eq!(http_status(port, "/ready"), Some(404));
        assert_eq!(Health::Ready(port).check(), Ok(()));
        assert_eq!(Health::Http(port, "/health").check(), Ok(()));
    }

    #[test]
    fn not_ready_says_what_it_saw() {
        let port = server(|_| "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(
            Health::Ready(port).check(),
            Err(format!("readiness on port {port}: 503"))
        );
        assert!(Health::Listens(port).check().is_ok());
    }

    #[test]
    fn nothing_listening_is_no_answer() {
        let port = {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding");
            listener.local_addr().expect("the address").port()
        };
        assert_eq!(http_status(port, "/health"), None);
        assert!(Health::Listens(port).check().is_err());
    }
}
