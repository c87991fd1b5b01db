//! Dashboard sign-in with an OpenID Connect provider: the authorization code flow with
//! PKCE, `state` and `nonce` (`openidconnect` builds the requests and checks the ID
//! token: signature by the provider's published keys, issuer, audience, expiry, nonce).
//!
//! `GET /ui/sign-in/oidc` (a link on the sign-in page, so the pages' CSP `form-action`
//! stays `'self'`) stores the PKCE verifier and nonce in PostgreSQL under the SHA-256
//! of a random `state`, binds the `state` to the browser with a short-lived cookie, and
//! sends the browser to the provider. `GET /ui/sign-in/oidc/callback` (whichever
//! replica the browser comes back to) takes that row once, checks the cookie, exchanges
//! the code, checks the ID token and maps its claims to a tenant and scopes the way JWT
//! bearer tokens are (`AUTH_JWT_TENANT_CLAIM`, `AUTH_JWT_SCOPES_CLAIM`), then opens a
//! dashboard session as a token sign-in does.

use std::path::PathBuf;
use std::time::Duration;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{HttpRequest, HttpResponse, web};
use anyhow::Context as _;
use base64::Engine as _;
use chrono::{TimeDelta, Utc};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    TokenResponse as _,
};
use orchestrator_core::AuditAction;
use orchestrator_store::StoreError;
use orchestrator_store::oidc::{self, PendingSignIn};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;
use subtle::ConstantTimeEq as _;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::sessions::{SIGN_IN, is_secure, open_session, see_other};
use super::{Caller, Credential};
use crate::audit::Audit;
use crate::error::ApiError;
use crate::state::AppState;

/// A client made from a discovery document: the authorization endpoint is known, the
/// token and user-info endpoints may be.
type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// How long a sign-in may take at the provider.
const SIGN_IN_WITHIN: TimeDelta = TimeDelta::minutes(10);
/// How long the provider's discovery document is used before it is read again.
const DISCOVERY_FOR: Duration = Duration::from_secs(3_600);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The cookie that ties a sign-in's `state` to the browser that started it.
const STATE_COOKIE: &str = "orchestrator_oidc";
const SECURE_STATE_COOKIE: &str = "__Host-orchestrator_oidc";

/// OpenID Connect sign-in settings of `orchestrator-api`. Set `OIDC_ISSUER` to offer
/// "Sign in with SSO" on the dashboard.
#[derive(Debug, Clone, clap::Args)]
pub struct OidcConfig {
    /// The provider's issuer URL; its discovery document is
    /// `<issuer>/.well-known/openid-configuration`. https, or http to a loopback address.
    #[arg(id = "oidc_issuer", long = "oidc-issuer", env = "OIDC_ISSUER")]
    pub issuer: Option<String>,
    /// Our client id at the provider.
    #[arg(id = "oidc_client_id", long = "oidc-client-id", env = "OIDC_CLIENT_ID")]
    pub client_id: Option<String>,
    /// A file holding our client secret (a mounted secret; read at start, never logged).
    #[arg(
        id = "oidc_client_secret_file",
        long = "oidc-client-secret-file",
        env = "OIDC_CLIENT_SECRET_FILE"
    )]
    pub client_secret_file: Option<PathBuf>,
    /// Where the provider sends the browser back: this API's
    /// `/ui/sign-in/oidc/callback`, as the browser reaches it.
    #[arg(
        id = "oidc_redirect_url",
        long = "oidc-redirect-url",
        env = "OIDC_REDIRECT_URL"
    )]
    pub redirect_url: Option<String>,
}

/// A configured provider.
#[derive(Debug)]
pub struct OidcSignIn {
    issuer: IssuerUrl,
    client_id: ClientId,
    client_secret: Option<SecretString>,
    redirect_url: RedirectUrl,
    tenant_claim: String,
    scopes_claim: String,
    http: reqwest::Client,
    /// The discovery document and when it was read.
    discovered: Mutex<Option<(CoreProviderMetadata, Instant)>>,
}

impl OidcSignIn {
    /// `None` when no issuer is configured. Reads the client secret; the provider is
    /// asked for its discovery document at the first sign-in, so the API starts while
    /// the provider is down.
    pub fn from_config(
        config: &OidcConfig,
        tenant_claim: &str,
        scopes_claim: &str,
    ) -> anyhow::Result<Option<OidcSignIn>> {
        let Some(issuer) = &config.issuer else {
            anyhow::ensure!(
                config.client_id.is_none()
                    && config.client_secret_file.is_none()
                    && config.redirect_url.is_none(),
                "OIDC_CLIENT_ID / OIDC_CLIENT_SECRET_FILE / OIDC_REDIRECT_URL are set but OIDC_ISSUER is not: set it to offer sign-in with the identity provider"
            );
            return Ok(None);
        };
        super::jwt::checked_url("OIDC_ISSUER", issuer)?;
        let issuer = IssuerUrl::new(issuer.clone()).context("OIDC_ISSUER: not a URL")?;
        let client_id = config
            .client_id
            .clone()
            .context("OIDC_ISSUER is set: set OIDC_CLIENT_ID too")?;
        let redirect_url = config
            .redirect_url
            .clone()
            .context("OIDC_ISSUER is set: set OIDC_REDIRECT_URL, this API's /ui/sign-in/oidc/callback as browsers reach it")?;
        let redirect_url =
            RedirectUrl::new(redirect_url).context("OIDC_REDIRECT_URL: not a URL")?;
        let client_secret = config
            .client_secret_file
            .as_ref()
            .map(|path| {
                std::fs::read_to_string(path)
                    .map(|secret| SecretString::from(secret.trim().to_owned()))
                    .with_context(|| format!("OIDC_CLIENT_SECRET_FILE: reading {}", path.display()))
            })
            .transpose()?;
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            // Following redirects would let a response send our requests elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the HTTP client for OIDC_ISSUER")?;
        tracing::info!(issuer = %issuer.as_str(), "Dashboard sign-in with the identity provider is offered.");
        Ok(Some(OidcSignIn {
            issuer,
            client_id: ClientId::new(client_id),
            client_secret,
            redirect_url,
            tenant_claim: tenant_claim.to_owned(),
            scopes_claim: scopes_claim.to_owned(),
            http,
            discovered: Mutex::new(None),
        }))
    }

    /// Our client at the provider its discovery document describes.
    fn client(&self, metadata: CoreProviderMetadata) -> Client {
        CoreClient::from_provider_metadata(
            metadata,
            self.client_id.clone(),
            self.client_secret
                .as_ref()
                .map(|secret| ClientSecret::new(secret.expose_secret().to_owned())),
        )
        .set_redirect_uri(self.redirect_url.clone())
    }

    /// The provider's discovery document: read again after [`DISCOVERY_FOR`].
    async fn metadata(&self) -> Result<CoreProviderMetadata, anyhow::Error> {
        let mut discovered = self.discovered.lock().await;
        if let Some((metadata, at)) = discovered.as_ref()
            && at.elapsed() < DISCOVERY_FOR
        {
            return Ok(metadata.clone());
        }
        let http = self.http.clone();
        let client = move |request| send(http.clone(), request);
        let metadata = CoreProviderMetadata::discover_async(self.issuer.clone(), &client)
            .await
            .context("reading the identity provider's discovery document")?;
        *discovered = Some((metadata.clone(), Instant::now()));
        Ok(metadata)
    }
}

/// Sends one of `openidconnect`'s requests with our HTTP client.
async fn send(
    client: reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, reqwest::Error> {
    let (parts, body) = request.into_parts();
    let response = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await?.to_vec();
    let mut answer = openidconnect::HttpResponse::new(body);
    *answer.status_mut() = status;
    *answer.headers_mut() = headers;
    Ok(answer)
}

fn state_cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_STATE_COOKIE
    } else {
        STATE_COOKIE
    }
}

fn state_hash(state: &str) -> [u8; 32] {
    orchestrator_auth::jwt::fingerprint(state)
}

/// `GET /ui/sign-in/oidc`: sends the browser to the provider.
pub async fn start(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Some(provider) = state.auth.oidc() else {
        return Err(ApiError::RouteNotFound);
    };
    let metadata = provider.metadata().await.map_err(|error| {
        tracing::warn!(error = %format!("{error:#}"), "Sign-in with the identity provider is not possible now.");
        ApiError::Internal(error.into())
    })?;
    let client = provider.client(metadata);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge)
        .url();
    let now = Utc::now();
    let mut conn = state.pool.get().await.map_err(StoreError::from)?;
    oidc::insert(
        &mut conn,
        &PendingSignIn {
            state_hash: state_hash(csrf.secret()).to_vec(),
            pkce_verifier: verifier.secret().to_owned(),
            nonce: nonce.secret().to_owned(),
            expires_at: now + SIGN_IN_WITHIN,
        },
        now,
    )
    .await?;
    let secure = is_secure(&req, &state.trusted_proxies);
    // Lax, not Strict: the browser comes back from the provider's site, a cross-site
    // navigation that a Strict cookie would not ride along on.
    let cookie = Cookie::build(state_cookie_name(secure), csrf.secret().to_owned())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(actix_web::cookie::time::Duration::minutes(
            SIGN_IN_WITHIN.num_minutes(),
        ))
        .finish();
    let mut response = see_other(url.as_str());
    response
        .add_cookie(&cookie)
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok(response)
}

/// Why a callback was refused: for the log, never for the browser.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("the provider answered {0}")]
    Provider(String),
    #[error("the callback lacks {0}")]
    Missing(&'static str),
    #[error("the state is not the one this browser was sent with")]
    StateMismatch,
    #[error("no sign-in in progress for this state (taken, or expired)")]
    UnknownState,
    #[error("{0}")]
    Exchange(String),
    #[error("the ID token: {0}")]
    IdToken(String),
}

/// `GET /ui/sign-in/oidc/callback`: the provider's answer. A refusal goes back to the
/// sign-in page, which says sign-in failed (and nothing more); the log says why.
pub async fn callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let Some(provider) = state.auth.oidc() else {
        return Err(ApiError::RouteNotFound);
    };
    let request_id = crate::routes::orchestrate::request_id(&req);
    let secure = is_secure(&req, &state.trusted_proxies);
    let outcome = signed_in(provider, &req, &state, &query.into_inner(), secure).await;
    let mut response = match outcome {
        Ok(caller) => {
            tracing::info!(tenant = %caller.tenant, actor = %caller.actor(), "Dashboard sign-in with the identity provider.");
            open_session(&state, &req, &caller, &request_id).await?
        }
        Err(SignInError::Refused(reason)) => {
            tracing::info!(%reason, "Dashboard sign-in with the identity provider refused.");
            Audit::as_actor(
                None,
                "oidc".to_owned(),
                &req,
                &state.trusted_proxies,
                &request_id,
            )
            .record_refusal(&state.pool, AuditAction::SignIn, None)
            .await;
            see_other(&format!("{SIGN_IN}?failed=1"))
        }
        Err(SignInError::Api(error)) => return Err(error),
    };
    // The state cookie has done its work either way.
    let mut spent = Cookie::build(state_cookie_name(secure), "")
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .finish();
    spent.make_removal();
    response
        .add_cookie(&spent)
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok(response)
}

enum SignInError {
    Refused(Refused),
    Api(ApiError),
}

impl From<Refused> for SignInError {
    fn from(reason: Refused) -> Self {
        SignInError::Refused(reason)
    }
}

impl From<StoreError> for SignInError {
    fn from(error: StoreError) -> Self {
        SignInError::Api(error.into())
    }
}

/// The caller the callback signs in, or why not.
async fn signed_in(
    provider: &OidcSignIn,
    req: &HttpRequest,
    state: &AppState,
    query: &[(String, String)],
    secure: bool,
) -> Result<Caller, SignInError> {
    let param = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    if let Some(error) = param("error") {
        return Err(Refused::Provider(error.chars().take(100).collect()).into());
    }
    let returned_state = param("state").ok_or(Refused::Missing("state"))?;
    let code = param("code").ok_or(Refused::Missing("code"))?;
    let cookie = req
        .cookie(state_cookie_name(secure))
        .ok_or(Refused::Missing("the state cookie"))?;
    if !bool::from(cookie.value().as_bytes().ct_eq(returned_state.as_bytes())) {
        return Err(Refused::StateMismatch.into());
    }
    let mut conn = state
        .pool
        .get()
        .await
        .map_err(|e| SignInError::Api(StoreError::from(e).into()))?;
    let pending = oidc::take(&mut conn, &state_hash(returned_state), Utc::now())
        .await?
        .ok_or(Refused::UnknownState)?;
    drop(conn);

    let metadata = provider
        .metadata()
        .await
        .map_err(|e| Refused::Exchange(format!("{e:#}")))?;
    let client = provider.client(metadata);
    let http = provider.http.clone();
    let http_client = move |request| send(http.clone(), request);
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .map_err(|e| Refused::Exchange(e.to_string()))?
        .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier))
        .request_async(&http_client)
        .await
        .map_err(|e| Refused::Exchange(format!("exchanging the code: {e}")))?;
    let id_token = tokens
        .id_token()
        .ok_or_else(|| Refused::IdToken("the provider sent none".into()))?;
    let claims = id_token
        .claims(&client.id_token_verifier(), &Nonce::new(pending.nonce))
        .map_err(|e| Refused::IdToken(e.to_string()))?;
    let subject = claims.subject().as_str().to_owned();
    // The token passed every check above; its other claims are read from its payload.
    let extra = payload(&id_token.to_string()).map_err(Refused::IdToken)?;
    let (tenant, scopes) = orchestrator_auth::jwt::tenant_and_scopes(
        &extra,
        &provider.tenant_claim,
        &provider.scopes_claim,
    )
    .map_err(|e| Refused::IdToken(e.to_string()))?;
    Ok(Caller {
        credential: Credential::Session {
            token: None,
            subject: Some(subject),
        },
        tenant,
        scopes,
    })
}

/// The claims of a JWT, read without checking anything: only for a token checked
/// already.
fn payload(token: &str) -> Result<serde_json::Map<String, Value>, String> {
    let part = token
        .split('.')
        .nth(1)
        .ok_or_else(|| "not a JWT".to_owned())?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}
