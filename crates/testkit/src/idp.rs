//! A minimal identity provider on a loopback port, for tests of JWT bearer tokens and of
//! the dashboard's OpenID Connect sign-in: it publishes a JWK set of keys generated in
//! the test, counts how often the set is fetched, signs tokens with those keys (or with
//! keys it does not publish), and, once told its client and user, serves discovery, an
//! authorization endpoint that grants every request (code flow with PKCE) and a token
//! endpoint that checks the client, the code and the PKCE verifier.

use std::collections::HashMap;
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

/// Who the provider signs in (it asks nobody: every authorization request is granted):
/// the claims its ID tokens carry beside the standard ones.
#[derive(Debug, Clone)]
pub struct IdpUser {
    pub subject: String,
    pub claims: Value,
}

/// The provider's OpenID Connect side: one client, and what it may tamper with.
#[derive(Debug, Clone)]
pub struct IdpClient {
    pub client_id: String,
    pub client_secret: String,
}

/// An authorization code handed out, until the token endpoint takes it.
#[derive(Debug, Clone)]
struct Grant {
    challenge: String,
    nonce: String,
    redirect_uri: String,
}

#[derive(Default)]
struct OidcState {
    client: Option<IdpClient>,
    user: Option<IdpUser>,
    signing: Option<TestKey>,
    grants: HashMap<String, Grant>,
    /// Sign ID tokens with this nonce instead of the request's.
    nonce_override: Option<String>,
}

/// The identity provider's HTTP side: `GET /jwks`, and with [`TestIdp::oidc`] the
/// OpenID Connect endpoints (discovery, authorize, token).
pub struct TestIdp {
    pub issuer: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    oidc: Arc<Mutex<OidcState>>,
    handle: ServerHandle,
}

impl TestIdp {
    /// Serves `GET /jwks` (and the OpenID Connect endpoints, once configured) on a free
    /// loopback port, publishing `keys`.
    pub async fn start(keys: &[&TestKey]) -> TestIdp {
        let published = Arc::new(Mutex::new(
            keys.iter().map(|key| key.jwk().clone()).collect::<Vec<_>>(),
        ));
        let fetches = Arc::new(AtomicUsize::new(0));
        let oidc = Arc::new(Mutex::new(OidcState::default()));
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let address = listener.local_addr().expect("its address");
        let issuer = format!("http://{address}");
        let shared = Shared {
            issuer: issuer.clone(),
            keys: published.clone(),
            fetches: fetches.clone(),
            oidc: oidc.clone(),
        };
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .route("/jwks", web::get().to(jwks))
                .route(
                    "/.well-known/openid-configuration",
                    web::get().to(discovery),
                )
                .route("/authorize", web::get().to(authorize))
                .route("/token", web::post().to(token))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listening")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        TestIdp {
            issuer,
            keys: published,
            fetches,
            oidc,
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

    /// Turns on the OpenID Connect side: `client` may sign `user` in, whose ID tokens
    /// `signing` signs (publish it for them to be accepted).
    pub fn oidc(&self, client: IdpClient, user: IdpUser, signing: &TestKey) {
        let mut state = self.oidc.lock().expect("state");
        state.client = Some(client);
        state.user = Some(user);
        state.signing = Some(signing.clone());
    }

    /// From now on ID tokens carry this nonce, whatever the request said.
    pub fn override_nonce(&self, nonce: &str) {
        self.oidc.lock().expect("state").nonce_override = Some(nonce.to_owned());
    }
}

#[derive(Clone)]
struct Shared {
    issuer: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    oidc: Arc<Mutex<OidcState>>,
}

async fn jwks(shared: web::Data<Shared>) -> HttpResponse {
    shared.fetches.fetch_add(1, Ordering::SeqCst);
    let keys = shared.keys.lock().expect("keys").clone();
    HttpResponse::Ok().json(json!({ "keys": keys }))
}

async fn discovery(shared: web::Data<Shared>) -> HttpResponse {
    let issuer = &shared.issuer;
    HttpResponse::Ok().json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    }))
}

fn bad_request(what: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"error": "invalid_request", "error_description": what}))
}

/// Grants every request of the configured client that asks for a code with PKCE (S256),
/// and sends the browser back with a code and the request's state.
async fn authorize(
    shared: web::Data<Shared>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let mut state = shared.oidc.lock().expect("state");
    let Some(client) = state.client.clone() else {
        return bad_request("no client configured");
    };
    let param = |name: &str| query.get(name).cloned().unwrap_or_default();
    if param("client_id") != client.client_id {
        return bad_request("unknown client_id");
    }
    if param("response_type") != "code" || param("code_challenge_method") != "S256" {
        return bad_request("only the code flow with PKCE S256");
    }
    if !param("scope").split(' ').any(|scope| scope == "openid") {
        return bad_request("scope must include openid");
    }
    let code = format!("code-{}", uuid::Uuid::new_v4().simple());
    let redirect_uri = param("redirect_uri");
    state.grants.insert(
        code.clone(),
        Grant {
            challenge: param("code_challenge"),
            nonce: param("nonce"),
            redirect_uri: redirect_uri.clone(),
        },
    );
    let mut location = url::Url::parse(&redirect_uri).expect("a redirect URI");
    location
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &param("state"));
    HttpResponse::Found()
        .insert_header(("location", location.to_string()))
        .finish()
}

/// Takes a code once: checks the client's credentials, the redirect URI and the PKCE
/// verifier, and answers with an ID token for the user.
async fn token(
    shared: web::Data<Shared>,
    req: actix_web::HttpRequest,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    let mut state = shared.oidc.lock().expect("state");
    let (Some(client), Some(user), Some(signing)) = (
        state.client.clone(),
        state.user.clone(),
        state.signing.clone(),
    ) else {
        return bad_request("not configured");
    };
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", client.client_id, client.client_secret))
    );
    let presented = req
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok());
    if presented != Some(expected.as_str()) {
        return HttpResponse::Unauthorized().json(json!({"error": "invalid_client"}));
    }
    let param = |name: &str| form.get(name).cloned().unwrap_or_default();
    let Some(grant) = state.grants.remove(&param("code")) else {
        return bad_request("unknown or used code");
    };
    if param("grant_type") != "authorization_code" || param("redirect_uri") != grant.redirect_uri {
        return bad_request("wrong grant type or redirect_uri");
    }
    let challenge = {
        use sha2::Digest as _;
        URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(param("code_verifier").as_bytes()))
    };
    if challenge != grant.challenge {
        return bad_request("the PKCE verifier does not match the challenge");
    }
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "iss": shared.issuer, "sub": user.subject, "aud": client.client_id,
        "iat": now, "exp": now + 300,
        "nonce": state.nonce_override.clone().unwrap_or(grant.nonce),
    });
    if let (Some(claims), Some(extra)) = (claims.as_object_mut(), user.claims.as_object()) {
        claims.extend(extra.clone());
    }
    HttpResponse::Ok().json(json!({
        "access_token": format!("at-{}", uuid::Uuid::new_v4().simple()),
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": signing.sign(&claims),
    }))
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        // Stopping is asynchronous; the server goes with the test's runtime anyway.
        drop(self.handle.stop(false));
    }
}
