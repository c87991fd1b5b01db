//! A minimal identity provider on a loopback port, for tests of JWT bearer tokens: it
//! publishes a JWK set of keys generated in the test, counts how often the set is
//! fetched, and signs tokens with those keys (or with keys it does not publish).

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use crypto_common::Generate as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey as _;
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};

/// A key pair generated in the test: it signs tokens, and its public half is a JWK.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    pub algorithm: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl TestKey {
    /// An RSA key (2048 bits) for RS256.
    pub fn rsa(kid: &str) -> TestKey {
        let private = rsa::PrivateKey::generate();
        let der = private.to_pkcs1_der().expect("encoding an RSA key");
        let public = private.to_public_key();
        TestKey {
            kid: kid.to_owned(),
            algorithm: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            jwk: json!({
                "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                "n": URL_SAFE_NO_PAD.encode(public.n().to_be_bytes()),
                "e": URL_SAFE_NO_PAD.encode(public.e().to_be_bytes()),
            }),
        }
    }

    /// A P-256 key for ES256.
    pub fn ec(kid: &str) -> TestKey {
        let secret = p256::SecretKey::generate();
        let der = secret.to_pkcs8_der().expect("encoding an EC key");
        let point = secret.public_key().to_sec1_bytes();
        assert_eq!(point.len(), 65, "an uncompressed point");
        TestKey {
            kid: kid.to_owned(),
            algorithm: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            jwk: json!({
                "kty": "EC", "kid": kid, "use": "sig", "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            }),
        }
    }

    /// The same key under another id.
    pub fn with_kid(&self, kid: &str) -> TestKey {
        let mut key = self.clone();
        key.kid = kid.to_owned();
        key.jwk["kid"] = json!(kid);
        key
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// A token of `claims`, signed with this key, its header naming the key.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signing")
    }
}

/// The identity provider's HTTP side.
pub struct TestIdp {
    pub issuer: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    handle: ServerHandle,
}

impl TestIdp {
    /// Serves `GET /jwks` on a free loopback port, publishing `keys`.
    pub async fn start(keys: &[&TestKey]) -> TestIdp {
        let published = Arc::new(Mutex::new(
            keys.iter().map(|key| key.jwk().clone()).collect::<Vec<_>>(),
        ));
        let fetches = Arc::new(AtomicUsize::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let address = listener.local_addr().expect("its address");
        let (served, counted) = (published.clone(), fetches.clone());
        let server = HttpServer::new(move || {
            let (served, counted) = (served.clone(), counted.clone());
            App::new().route(
                "/jwks",
                web::get().to(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let keys = served.lock().expect("keys").clone();
                    async move { HttpResponse::Ok().json(json!({ "keys": keys })) }
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listening")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        TestIdp {
            issuer: format!("http://{address}"),
            keys: published,
            fetches,
            handle,
        }
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    /// How many times the key set was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Adds a key to the published set (a key rotation).
    pub fn publish(&self, key: &TestKey) {
        self.keys.lock().expect("keys").push(key.jwk().clone());
    }
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        // Stopping is asynchronous; the server goes with the test's runtime anyway.
        drop(self.handle.stop(false));
    }
}
