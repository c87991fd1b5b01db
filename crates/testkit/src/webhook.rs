//! A webhook receiver on a loopback port: it records every delivery (headers and
//! body), answers with the statuses a test scripts (then 200), and verifies signatures
//! with its own HMAC-SHA256 code, the way a receiver following Standard Webhooks
//! would, independently of the orchestrator's signing.

use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// A signing secret of 32 bytes, in the `whsec_` form.
pub const SECRET: &str = "whsec_c2VjcmV0LWtleS1vZi10aGUtdGVzdC1yZWNlaXZlcg==";

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: Option<String>,
    pub timestamp: Option<String>,
    pub signature: Option<String>,
    /// The W3C `traceparent` the sender passed on.
    pub traceparent: Option<String>,
    pub body: Vec<u8>,
    /// What the receiver answered.
    pub answered: u16,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// Whether `webhook-signature` holds a `v1` signature of id, timestamp and body under
    /// `secret`, computed here with HMAC-SHA256 written out (RFC 2104).
    pub fn signed_with(&self, secret: &str) -> bool {
        let (Some(id), Some(timestamp), Some(signatures)) =
            (&self.id, &self.timestamp, &self.signature)
        else {
            return false;
        };
        let key = STANDARD
            .decode(secret.trim_start_matches("whsec_"))
            .expect("a base64 key");
        let mut content = format!("{id}.{timestamp}.").into_bytes();
        content.extend_from_slice(&self.body);
        let expected = format!("v1,{}", STANDARD.encode(hmac_sha256(&key, &content)));
        // The header may list several signatures, space-separated.
        signatures.split(' ').any(|s| s == expected)
    }
}

/// HMAC-SHA256 (RFC 2104) from SHA-256 alone: the test's own, not the crate the
/// orchestrator signs with.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

#[derive(Clone, Default)]
struct State {
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

/// A receiver serving `POST /hook` on a free loopback port.
pub struct WebhookReceiver {
    pub url: String,
    state: State,
    handle: ServerHandle,
}

impl WebhookReceiver {
    pub async fn start() -> WebhookReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let address = listener.local_addr().expect("its address");
        let state = State::default();
        let shared = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .route("/hook", web::post().to(receive))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listening")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        WebhookReceiver {
            url: format!("http://{address}/hook"),
            state,
            handle,
        }
    }

    /// The next deliveries are answered with these statuses, in order; then 200.
    pub fn answer_with(&self, statuses: &[u16]) {
        self.state
            .script
            .lock()
            .expect("script")
            .extend(statuses.iter().copied());
    }

    /// Every request so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("received").clone()
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

async fn receive(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let answered = state
        .script
        .lock()
        .expect("script")
        .pop_front()
        .unwrap_or(200);
    state.received.lock().expect("received").push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        traceparent: header("traceparent"),
        body: body.to_vec(),
        answered,
    });
    HttpResponse::build(actix_web::http::StatusCode::from_u16(answered).expect("a status code"))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4231, test case 2.
    #[test]
    fn hmac_matches_the_rfc_vectors() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
