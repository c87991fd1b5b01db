//! JWT bearer tokens from an identity provider: its key set (a JWKS URL, or a file),
//! cached and refreshed when a token names a key the set lacks (a key rotation), at
//! most once every [`REFRESH_AT_MOST_EVERY`], so tokens with made-up key ids cannot
//! make us hammer the provider. Checking a token is `orchestrator_auth::jwt`.
//!
//! A token that passed is remembered (by its SHA-256) until it expires, for at most
//! [`VERIFIED_FOR`]: a client sends the same token with every request, and checking
//! an ECDSA or RSA signature costs more CPU than the rest of accepting a task.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use jsonwebtoken::jwk::JwkSet;
use orchestrator_auth::jwt::{self, JwtError, JwtRules};
use tokio::sync::Mutex;
use tokio::time::Instant;
use uuid::Uuid;

use super::{Caller, Credential};
use crate::error::ApiError;

/// The least time between two fetches of the key set.
pub const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(30);
/// How long a verified token is taken without checking its signature again (never past
/// its `exp`).
pub const VERIFIED_FOR: Duration = Duration::from_secs(300);
/// At most this many verified tokens are remembered; past it the memory starts over.
const VERIFIED_MAX: usize = 10_000;

/// A fetch of the key set gives up after this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// JWT settings of `orchestrator-api`. Set `AUTH_JWT_ISSUER` to accept JWTs.
#[derive(Debug, Clone, clap::Args)]
pub struct JwtConfig {
    /// Accept JWT bearer tokens from this issuer (their `iss`, exactly). Unset: only
    /// API tokens and dashboard sessions are accepted.
    #[arg(id = "jwt_issuer", long = "auth-jwt-issuer", env = "AUTH_JWT_ISSUER")]
    pub issuer: Option<String>,
    /// The audience a JWT must name in `aud` (required with the issuer).
    #[arg(long = "auth-jwt-audience", env = "AUTH_JWT_AUDIENCE")]
    pub audience: Option<String>,
    /// Where the issuer publishes its keys (a JWK set): https, or http to a loopback
    /// address only.
    #[arg(long = "auth-jwt-jwks-url", env = "AUTH_JWT_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// The issuer's keys from a file instead (read at start).
    #[arg(long = "auth-jwt-jwks-file", env = "AUTH_JWT_JWKS_FILE")]
    pub jwks_file: Option<PathBuf>,
    /// The claim naming the tenant.
    #[arg(
        long = "auth-jwt-tenant-claim",
        env = "AUTH_JWT_TENANT_CLAIM",
        default_value = "tenant"
    )]
    pub tenant_claim: String,
    /// The claim holding the scopes: a space-separated string or a list.
    #[arg(
        long = "auth-jwt-scopes-claim",
        env = "AUTH_JWT_SCOPES_CLAIM",
        default_value = "scope"
    )]
    pub scopes_claim: String,
}

/// Where the keys come from.
#[derive(Debug, Clone)]
enum Source {
    Url(reqwest::Url),
    /// Read once at start: a file changes with a restart.
    File,
}

/// Checks JWT bearer tokens against the issuer's current keys.
#[derive(Debug)]
pub struct JwtVerifier {
    rules: JwtRules,
    source: Source,
    http: reqwest::Client,
    keys: RwLock<Arc<JwkSet>>,
    /// When the set was last fetched (`None`: never); held while fetching, so one
    /// request fetches and the others wait for its result.
    fetched_at: Mutex<Option<Instant>>,
    /// Tokens that passed, by SHA-256: their caller, and until when to take them.
    verified: std::sync::Mutex<HashMap<[u8; 32], Verified>>,
}

#[derive(Debug, Clone)]
struct Verified {
    caller: Caller,
    until: Instant,
    expires_at: i64,
}

impl JwtVerifier {
    /// `None` when no issuer is configured. Reads a key file, and checks the settings;
    /// a key URL is fetched at the first token, so the API starts while the identity
    /// provider is down.
    pub fn from_config(config: &JwtConfig) -> anyhow::Result<Option<JwtVerifier>> {
        let Some(issuer) = config.issuer.clone() else {
            anyhow::ensure!(
                config.audience.is_none()
                    && config.jwks_url.is_none()
                    && config.jwks_file.is_none(),
                "AUTH_JWT_AUDIENCE / AUTH_JWT_JWKS_URL / AUTH_JWT_JWKS_FILE are set but AUTH_JWT_ISSUER is not: set it to accept JWTs"
            );
            return Ok(None);
        };
        let audience = config.audience.clone().context(
            "AUTH_JWT_ISSUER is set: set AUTH_JWT_AUDIENCE too, the audience our tokens name",
        )?;
        let (source, keys) = match (&config.jwks_url, &config.jwks_file) {
            (Some(url), None) => (
                Source::Url(checked_url("AUTH_JWT_JWKS_URL", url)?),
                JwkSet { keys: Vec::new() },
            ),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("AUTH_JWT_JWKS_FILE: reading {}", path.display()))?;
                let keys: JwkSet = serde_json::from_str(&text).with_context(|| {
                    format!("AUTH_JWT_JWKS_FILE: {} is not a JWK set", path.display())
                })?;
                (Source::File, keys)
            }
            _ => anyhow::bail!(
                "AUTH_JWT_ISSUER is set: set one of AUTH_JWT_JWKS_URL and AUTH_JWT_JWKS_FILE"
            ),
        };
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the HTTP client for AUTH_JWT_JWKS_URL")?;
        tracing::info!(%issuer, %audience, "JWT bearer tokens are accepted.");
        Ok(Some(JwtVerifier {
            rules: JwtRules {
                issuer,
                audience,
                tenant_claim: config.tenant_claim.clone(),
                scopes_claim: config.scopes_claim.clone(),
            },
            source,
            http,
            keys: RwLock::new(Arc::new(keys)),
            fetched_at: Mutex::new(None),
            verified: std::sync::Mutex::new(HashMap::new()),
        }))
    }

    /// The caller a JWT stands for; a token that is not valid is `InvalidToken`, its
    /// reason logged at debug level (never the token).
    pub async fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let fingerprint = jwt::fingerprint(token);
        if let Some(caller) = self.remembered(&fingerprint) {
            return Ok(caller);
        }
        let mut result = jwt::verify(token, &self.current(), &self.rules);
        if let Err(JwtError::UnknownKey(_)) = result
            && self.refresh().await
        {
            result = jwt::verify(token, &self.current(), &self.rules);
        }
        let caller = result.map_err(|error| {
            tracing::debug!(%error, "JWT refused.");
            ApiError::InvalidToken
        })?;
        let expires_at = caller.expires_at;
        let caller = Caller {
            credential: Credential::Jwt {
                subject: caller.subject,
            },
            tenant: caller.tenant,
            scopes: caller.scopes,
        };
        self.remember(fingerprint, &caller, expires_at);
        Ok(caller)
    }

    fn remembered(&self, fingerprint: &[u8; 32]) -> Option<Caller> {
        let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        verified
            .get(fingerprint)
            .filter(|entry| {
                entry.until > Instant::now() && chrono::Utc::now().timestamp() < entry.expires_at
            })
            .map(|entry| entry.caller.clone())
    }

    fn remember(&self, fingerprint: [u8; 32], caller: &Caller, expires_at: i64) {
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= VERIFIED_MAX {
            verified.clear();
        }
        verified.insert(
            fingerprint,
            Verified {
                caller: caller.clone(),
                until: Instant::now() + VERIFIED_FOR,
                expires_at,
            },
        );
    }

    fn current(&self) -> Arc<JwkSet> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fetches the key set again unless that was done less than
    /// [`REFRESH_AT_MOST_EVERY`] ago; whether the set may have changed.
    async fn refresh(&self) -> bool {
        let Source::Url(url) = &self.source else {
            return false;
        };
        let mut fetched_at = self.fetched_at.lock().await;
        if fetched_at.is_some_and(|at| at.elapsed() < REFRESH_AT_MOST_EVERY) {
            // Fetched a moment ago, maybe by the request we waited for.
            return true;
        }
        *fetched_at = Some(Instant::now());
        match self.fetch(url).await {
            Ok(keys) => {
                tracing::info!(keys = keys.keys.len(), "Fetched the JWT issuer's keys.");
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
                true
            }
            Err(error) => {
                tracing::warn!(error = %orchestrator_stdx::error_chain(&*error), %url, "Could not fetch the JWT issuer's keys; JWTs with keys not seen before are refused until a fetch works.");
                false
            }
        }
    }

    async fn fetch(&self, url: &reqwest::Url) -> anyhow::Result<JwkSet> {
        let response = self
            .http
            .get(url.clone())
            .send()
            .await?
            .error_for_status()?;
        Ok(response.json::<JwkSet>().await?)
    }

    /// The key the rate limit counts a JWT's requests under: one per issuer and subject.
    pub fn rate_key(&self, subject: &str) -> Uuid {
        Uuid::new_v5(
            &Uuid::NAMESPACE_URL,
            format!("{}\0{subject}", self.rules.issuer).as_bytes(),
        )
    }
}

/// The URL of the identity provider's keys or discovery document (`setting` names where
/// it came from): https, or http to a loopback address (a test, or a sidecar), so that
/// what we trust cannot be swapped on the way.
pub(crate) fn checked_url(setting: &str, text: &str) -> anyhow::Result<reqwest::Url> {
    let url =
        reqwest::Url::parse(text).with_context(|| format!("{setting}: {text:?} is not a URL"))?;
    // An address, not a name: a name's address is whatever the resolver says.
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(_)) | None => false,
    };
    anyhow::ensure!(
        url.scheme() == "https" || (url.scheme() == "http" && loopback),
        "{setting}: must be https (http only to a loopback address), so the keys cannot be swapped on the way"
    );
    Ok(url)
}
