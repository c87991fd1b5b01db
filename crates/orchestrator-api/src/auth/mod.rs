//! Who is calling, and whether they may: the authentication of every API request.
//!
//! Each route of [`crate::routes::ENDPOINTS`] that is not public is wrapped by
//! [`require`], which authenticates the request with the [`Authenticator`] and checks
//! the credential's scope before the handler runs; the handler reads the result as a
//! [`Caller`]. Credentials:
//!
//! - an API token, `Authorization: Bearer orch_...` ([`tokens`]);
//! - a JWT of the configured identity provider, `Authorization: Bearer eyJ...` ([`jwt`]);
//! - the dashboard's session cookie ([`sessions`]; signed in with a token or with the
//!   identity provider, [`oidc`]), which state-changing requests may
//!   only carry from our own origin ([`same_origin`]).
//!
//! Refusals follow RFC 6750: 401 with a `WWW-Authenticate: Bearer` challenge when there
//! is no credential or it is not valid (never saying whether it was unknown, expired or
//! revoked), 403 with the scope that was missing.

pub mod jwt;
pub mod limits;
pub mod oidc;
pub mod sessions;
mod tokens;

use std::time::Duration;

use actix_web::body::BoxBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use orchestrator_core::{Scope, TenantName};
use orchestrator_store::DbPool;
use secrecy::{ExposeSecret as _, SecretString};
use subtle::ConstantTimeEq as _;
use uuid::Uuid;

use crate::client_address::TrustedProxies;
use crate::error::ApiError;
use crate::state::AppState;

pub use self::sessions::SessionSettings;
use self::tokens::TokenCache;

/// Authentication settings of `orchestrator-api`.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthConfig {
    /// Serve every route to anyone, without credentials, as tenant `default` with every
    /// scope. Only for a network where everyone who can reach the port may do
    /// everything; the API says so at start and in `/health`.
    #[arg(long = "auth-disabled", env = "AUTH_DISABLED", default_value_t = false)]
    pub disabled: bool,

    /// A dashboard session ends after this long without use, in seconds.
    #[arg(long, env = "SESSION_IDLE_TIMEOUT_SECS", default_value_t = 3_600)]
    pub session_idle_timeout_secs: u64,

    /// A dashboard session ends this long after sign-in however it is used, in seconds.
    #[arg(long, env = "SESSION_MAX_AGE_SECS", default_value_t = 43_200)]
    pub session_max_age_secs: u64,

    /// The bearer token a scraper must present to read `/metrics`. Unset: `/metrics`
    /// answers anyone who reaches the port (keep the port inside your network).
    #[arg(long, env = "METRICS_TOKEN", hide_env_values = true,
          value_parser = |text: &str| Ok::<_, std::convert::Infallible>(SecretString::from(text)))]
    pub metrics_token: Option<SecretString>,

    #[command(flatten)]
    pub limits: limits::LimitsConfig,

    #[command(flatten)]
    pub jwt: jwt::JwtConfig,

    #[command(flatten)]
    pub oidc: oidc::OidcConfig,
}

/// The credential a request was authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API token in the `Authorization` header.
    Token(Uuid),
    /// A dashboard session, made from this API token, or signed in with the identity
    /// provider as this subject (`sub`).
    Session {
        token: Option<Uuid>,
        subject: Option<String>,
    },
    /// A JWT of the configured identity provider, for this subject (`sub`).
    Jwt { subject: String },
    /// None: authentication is disabled (`AUTH_DISABLED`).
    Nobody,
}

/// Who is calling: what [`require`] established before the handler ran.
#[derive(Debug, Clone)]
pub struct Caller {
    pub credential: Credential,
    pub tenant: TenantName,
    scopes: Vec<Scope>,
}

impl Caller {
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    /// Who the audit log says acted: `token:<id>` for an API token and the dashboard
    /// sessions made from it, `jwt:<sub>` for a JWT, `anonymous` when authentication is
    /// disabled.
    pub fn actor(&self) -> String {
        match &self.credential {
            Credential::Token(id)
            | Credential::Session {
                token: Some(id), ..
            } => {
                format!("token:{id}")
            }
            Credential::Session {
                token: None,
                subject: Some(subject),
            } => format!("oidc:{subject}"),
            Credential::Session {
                token: None,
                subject: None,
            } => "session".to_owned(),
            Credential::Jwt { subject } => format!("jwt:{subject}"),
            Credential::Nobody => "anonymous".to_owned(),
        }
    }

    fn anonymous() -> Caller {
        Caller {
            credential: Credential::Nobody,
            tenant: TenantName::default(),
            scopes: Scope::ALL.to_vec(),
        }
    }
}

/// A handler's [`Caller`]. Only routes wrapped by [`require`] have one: anywhere else
/// the extraction fails closed (500), so a route that forgot its check cannot serve.
impl FromRequest for Caller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(req.extensions().get::<Caller>().cloned().ok_or_else(|| {
            ApiError::Internal(
                "a handler asked for its caller on a route without access check".into(),
            )
        }))
    }
}

/// Checks credentials: API tokens (cached briefly) and dashboard sessions.
pub struct Authenticator {
    disabled: bool,
    pool: DbPool,
    tokens: TokenCache,
    sessions: SessionSettings,
    proxies: TrustedProxies,
    limits: limits::RateLimits,
    metrics_token: Option<SecretString>,
    jwt: Option<jwt::JwtVerifier>,
    oidc: Option<oidc::OidcSignIn>,
}

impl Authenticator {
    /// Fails on JWT settings that do not fit together, or a JWKS file it cannot read.
    pub fn new(
        config: &AuthConfig,
        pool: DbPool,
        proxies: TrustedProxies,
    ) -> anyhow::Result<Authenticator> {
        if config.disabled {
            tracing::warn!(
                "Authentication is DISABLED (AUTH_DISABLED=true): anyone who can reach this port can submit, read and re-drive every task."
            );
        }
        Ok(Authenticator {
            jwt: jwt::JwtVerifier::from_config(&config.jwt)?,
            oidc: oidc::OidcSignIn::from_config(
                &config.oidc,
                &config.jwt.tenant_claim,
                &config.jwt.scopes_claim,
            )?,
            disabled: config.disabled,
            tokens: TokenCache::new(pool.clone()),
            pool,
            sessions: SessionSettings {
                idle: Duration::from_secs(config.session_idle_timeout_secs),
                max_age: Duration::from_secs(config.session_max_age_secs),
            },
            proxies,
            limits: limits::RateLimits::new(&config.limits),
            metrics_token: config.metrics_token.clone(),
        })
    }

    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    /// The identity provider the dashboard offers sign-in with, if one is configured.
    pub fn oidc(&self) -> Option<&oidc::OidcSignIn> {
        self.oidc.as_ref()
    }

    /// The caller of this request: from its bearer token, else from its session cookie;
    /// within its rate, from a client that has not been guessing.
    pub async fn authenticate(&self, req: &HttpRequest) -> Result<Caller, ApiError> {
        if self.disabled {
            return Ok(Caller::anonymous());
        }
        let client = self.screen(req)?;
        let result = self.credential(req).await;
        // A bearer token that is not valid counts against the client; an expired
        // session cookie is no guess.
        let caller = if req.headers().contains_key(header::AUTHORIZATION) {
            self.counted(client, result)?
        } else {
            result?
        };
        match (&caller.credential, &self.jwt) {
            (
                Credential::Token(id)
                | Credential::Session {
                    token: Some(id), ..
                },
                _,
            ) => {
                self.limits.admit(*id)?;
            }
            (
                Credential::Session {
                    token: None,
                    subject: Some(subject),
                },
                _,
            ) => self.limits.admit(Uuid::new_v5(
                &Uuid::NAMESPACE_URL,
                format!("oidc\0{subject}").as_bytes(),
            ))?,
            (Credential::Jwt { subject }, Some(jwt)) => self.limits.admit(jwt.rate_key(subject))?,
            _ => {}
        }
        Ok(caller)
    }

    /// The token of a sign-in form, checked as a bearer token is, failures counted the
    /// same way.
    pub(crate) async fn verify_token(
        &self,
        req: &HttpRequest,
        token: &str,
    ) -> Result<Caller, ApiError> {
        let client = self.screen(req)?;
        let result = self.tokens.verify(token).await;
        self.counted(client, result)
    }

    /// The request's client address, refused (429) while it is being slowed down for
    /// presenting invalid credentials.
    fn screen(&self, req: &HttpRequest) -> Result<Option<std::net::IpAddr>, ApiError> {
        let client = crate::client_address::of(req, &self.proxies);
        if let Some(client) = client {
            self.limits.check_client(client)?;
        }
        Ok(client)
    }

    /// `result` of checking a credential `client` presented, an invalid one counted
    /// against the client (and turned into 429 once it is over its quota).
    fn counted<T>(
        &self,
        client: Option<std::net::IpAddr>,
        result: Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        match (result, client) {
            (Err(ApiError::InvalidToken), Some(client)) => Err(self.limits.failed(client)),
            (result, _) => result,
        }
    }

    async fn credential(&self, req: &HttpRequest) -> Result<Caller, ApiError> {
        if let Some(value) = req.headers().get(header::AUTHORIZATION) {
            let token = bearer(value).ok_or(ApiError::Unauthenticated)?;
            // API tokens carry their prefix; anything else can only be a JWT.
            return match &self.jwt {
                Some(jwt) if !token.starts_with(orchestrator_auth::token::PREFIX) => {
                    jwt.verify(token).await
                }
                _ => self.tokens.verify(token).await,
            };
        }
        if let Some(session) = self.sessions.presented(req, &self.proxies) {
            let caller = self.sessions.find(&self.pool, &session).await?;
            // A cookie rides along on any request the browser makes, including one a
            // page on another site starts: a state-changing one must come from ours.
            if !is_safe(req.method()) && !same_origin(req) {
                return Err(ApiError::CrossOrigin);
            }
            return Ok(caller);
        }
        Err(ApiError::Unauthenticated)
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case, RFC
/// 9110 section 11.1); `None` for any other scheme.
fn bearer(value: &header::HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_matches(' '))
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether a browser says the request comes from a page of the origin it was sent to.
/// `Sec-Fetch-Site`, which pages cannot set, decides when present: only `same-origin`
/// passes. Without it, `Origin` must name the host the request was sent to (`Host`).
/// With neither, the request is refused: every browser the dashboard supports sends at
/// least one with a POST. (`Origin` alone would not do: under the pages'
/// `Referrer-Policy: no-referrer`, Chromium sends `Origin: null` with a form's POST.)
pub fn same_origin(req: &HttpRequest) -> bool {
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        return site.as_bytes() == b"same-origin";
    }
    let Some(origin) = headers
        .get(header::ORIGIN)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let Some(authority) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| req.uri().authority().map(|authority| authority.as_str()));
    host.is_some_and(|host| host.eq_ignore_ascii_case(authority))
}

/// The middleware of `/metrics`: with `METRICS_TOKEN` set, the request must present it
/// as its bearer token (compared in constant time; a miss counts as an invalid
/// credential of the client). API tokens do not open it, nor does it open anything else.
pub async fn require_metrics_token(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Err(ApiError::Internal("no application state".into()).into());
    };
    let auth = &state.auth;
    if let Some(expected) = &auth.metrics_token {
        let client = auth.screen(req.request())?;
        let presented = req.headers().get(header::AUTHORIZATION).map(bearer);
        let matches = |token: &str| {
            let expected = expected.expose_secret().as_bytes();
            token.len() == expected.len() && bool::from(token.as_bytes().ct_eq(expected))
        };
        match presented {
            None | Some(None) => return Err(ApiError::Unauthenticated.into()),
            Some(Some(token)) if matches(token) => {}
            Some(Some(_)) => auth.counted(client, Err::<(), _>(ApiError::InvalidToken))?,
        }
    }
    next.call(req).await
}

/// The middleware of every route that needs `scope`: authenticates, checks the scope,
/// and leaves the [`Caller`] for the handler.
pub async fn require(
    scope: Option<Scope>,
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Err(ApiError::Internal("no application state".into()).into());
    };
    let caller = state.auth.authenticate(req.request()).await?;
    if let Some(scope) = scope
        && !caller.may(scope)
    {
        return Err(ApiError::InsufficientScope(scope).into());
    }
    req.extensions_mut().insert(caller);
    next.call(req).await
}
