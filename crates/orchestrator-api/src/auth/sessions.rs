//! The dashboard's sessions: a page at `/ui/sign-in` takes an API token and exchanges
//! it for a session cookie; `/ui/sign-out` ends it.
//!
//! Sessions are rows in PostgreSQL (`dashboard_sessions`, only the SHA-256 of the
//! cookie), so every API replica behind a load balancer knows them without sticky
//! sessions, sign-out ends one everywhere, and revoking the token it was made from ends
//! it at the next request. Each has an idle expiry and an absolute one.
//!
//! The cookie is `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's
//! page sends it), `Path=/`; over HTTPS (TLS at a proxy in `TRUSTED_PROXIES` that says
//! so in `Forwarded` / `X-Forwarded-Proto`) it is also `Secure` and named with the
//! `__Host-` prefix, which the browser only accepts from a secure origin for the whole
//! host, so a sibling subdomain cannot plant one.

use std::time::Duration;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{TimeDelta, Utc};
use diesel_async::AsyncConnection as _;
use orchestrator_auth::{NewSession, PresentedToken};
use orchestrator_core::{AuditAction, AuditOutcome, Scope, TenantName};
use orchestrator_store::sessions::{self, NewSessionRow};
use orchestrator_store::tokens;
use orchestrator_store::{DbPool, StoreError};

use super::{Caller, Credential, same_origin};
use crate::audit::Audit;
use crate::client_address::TrustedProxies;
use crate::error::ApiError;
use crate::state::AppState;

/// The cookie's name over plain HTTP.
pub const COOKIE: &str = "orchestrator_session";
/// The cookie's name over HTTPS.
pub const SECURE_COOKIE: &str = "__Host-orchestrator_session";

/// Where sign-in sends the browser, and where a failed one comes back to.
const HOME: &str = "/ui";
pub(crate) const SIGN_IN: &str = "/ui/sign-in";

#[derive(Debug, Clone, Copy)]
pub struct SessionSettings {
    pub idle: Duration,
    pub max_age: Duration,
}

impl SessionSettings {
    fn idle(&self) -> TimeDelta {
        TimeDelta::from_std(self.idle).unwrap_or(TimeDelta::MAX)
    }

    /// The hash of the session cookie the request carries, under the name its scheme
    /// calls for: over HTTPS only the `__Host-` one counts.
    pub fn presented(&self, req: &HttpRequest, proxies: &TrustedProxies) -> Option<[u8; 32]> {
        let name = cookie_name(is_secure(req, proxies));
        let cookie = req.cookie(name)?;
        orchestrator_auth::session::presented_hash(cookie.value())
    }

    /// The caller a session stands for, if it is still active.
    pub async fn find(&self, pool: &DbPool, id_hash: &[u8; 32]) -> Result<Caller, ApiError> {
        let mut conn = pool.get().await.map_err(StoreError::from)?;
        let now = Utc::now();
        let row = sessions::find_active(&mut conn, id_hash, now, self.idle())
            .await?
            .ok_or(ApiError::InvalidToken)?;
        let tenant = TenantName::parse(&row.tenant).map_err(|_| ApiError::InvalidToken)?;
        if row.last_seen_at < now - sessions::LAST_SEEN_PRECISION {
            sessions::touch(&mut conn, id_hash, now).await?;
        }
        Ok(Caller {
            credential: Credential::Session {
                token: row.token_id,
                subject: row.subject,
            },
            tenant,
            scopes: Scope::parse_known(&row.scopes),
        })
    }
}

fn cookie_name(secure: bool) -> &'static str {
    if secure { SECURE_COOKIE } else { COOKIE }
}

/// Whether the browser reached us over HTTPS: a TLS listener, or a trusted proxy that
/// terminated TLS and says so.
pub(crate) fn is_secure(req: &HttpRequest, proxies: &TrustedProxies) -> bool {
    req.app_config().secure()
        || req
            .peer_addr()
            .is_some_and(|peer| proxies.forwarded_https(peer.ip(), req.headers()))
}

#[derive(Debug, serde::Deserialize)]
pub struct SignInForm {
    token: String,
}

/// `POST /ui/sign-in`: an API token (from the sign-in form) for a session cookie. A
/// refused token, or a form from another origin, goes back to the form, which says the
/// token was not accepted (and nothing more).
pub async fn sign_in(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<SignInForm>,
) -> Result<HttpResponse, ApiError> {
    if !same_origin(&req) {
        return Err(ApiError::CrossOrigin);
    }
    let request_id = crate::routes::orchestrate::request_id(&req);
    let presented = form.token.trim();
    let caller = match state.auth.verify_token(&req, presented).await {
        Ok(caller) => caller,
        Err(ApiError::InvalidToken | ApiError::Unauthenticated) => {
            tracing::info!("Dashboard sign-in refused: the token is not valid.");
            refused_audit(&state, &req, presented, &request_id).await;
            return Ok(see_other(&format!("{SIGN_IN}?failed=1")));
        }
        Err(error) => return Err(error),
    };
    let Credential::Token(token_id) = caller.credential else {
        return Err(ApiError::Internal(
            "a token verified as something else".into(),
        ));
    };
    tracing::info!(token = %token_id, tenant = %caller.tenant, "Dashboard sign-in.");
    open_session(&state, &req, &caller, &request_id).await
}

/// Makes a session for `caller` (signed in with an API token or with the identity
/// provider), records the sign-in in the audit log in the same transaction, and sends
/// the browser home with the session cookie.
pub(crate) async fn open_session(
    state: &AppState,
    req: &HttpRequest,
    caller: &Caller,
    request_id: &str,
) -> Result<HttpResponse, ApiError> {
    let (token_id, subject) = match &caller.credential {
        Credential::Token(id) => (Some(*id), None),
        Credential::Session { token, subject } => (*token, subject.as_deref()),
        Credential::Jwt { subject } => (None, Some(subject.as_str())),
        Credential::Nobody => (None, None),
    };
    let settings = state.auth.sessions;
    let session = NewSession::generate().map_err(|e| ApiError::Internal(Box::new(e)))?;
    let now = Utc::now();
    let max_age = TimeDelta::from_std(settings.max_age).unwrap_or(TimeDelta::MAX);
    let scopes = Scope::join(caller.scopes());
    let audit = Audit::of(caller, req, &state.trusted_proxies, request_id);
    let mut conn = state.pool.get().await.map_err(StoreError::from)?;
    conn.transaction::<_, StoreError, _>(async |conn| {
        // Expired sessions go as new ones come: the table holds only usable ones, give
        // or take the idle timeout.
        sessions::delete_expired(conn, now, settings.idle()).await?;
        sessions::insert(
            conn,
            &NewSessionRow {
                id_hash: &session.id_hash,
                token_id,
                tenant: caller.tenant.as_str(),
                scopes: &scopes,
                created_at: now,
                last_seen_at: now,
                expires_at: now + max_age,
                subject,
            },
        )
        .await?;
        audit
            .record(conn, AuditAction::SignIn, None, AuditOutcome::Success)
            .await
    })
    .await?;
    let secure = is_secure(req, &state.auth.proxies);
    let cookie = Cookie::build(cookie_name(secure), session.cookie_value().to_owned())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(actix_web::cookie::time::Duration::seconds(
            i64::try_from(settings.max_age.as_secs()).unwrap_or(i64::MAX),
        ))
        .finish();
    let mut response = see_other(HOME);
    response
        .add_cookie(&cookie)
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok(response)
}

/// Records a refused sign-in: as the token whose id was presented (and in its tenant,
/// when that token exists, so the tenant's admins see attempts with their tokens), or
/// as `unknown` without a tenant.
async fn refused_audit(state: &AppState, req: &HttpRequest, presented: &str, request_id: &str) {
    let id = PresentedToken::parse(presented).ok().map(|token| token.id);
    let tenant = match id {
        Some(id) => match state.pool.get().await {
            Ok(mut conn) => tokens::find(&mut conn, id)
                .await
                .ok()
                .flatten()
                .map(|row| row.tenant),
            Err(_) => None,
        },
        None => None,
    };
    let actor = id.map_or_else(|| "unknown".to_owned(), |id| format!("token:{id}"));
    Audit::as_actor(
        tenant.as_deref(),
        actor,
        req,
        &state.trusted_proxies,
        request_id,
    )
    .record_refusal(&state.pool, AuditAction::SignIn, None)
    .await;
}

/// `POST /ui/sign-out`: ends the session on every replica and clears the cookie.
pub async fn sign_out(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !same_origin(&req) {
        return Err(ApiError::CrossOrigin);
    }
    if let Some(id_hash) = state.auth.sessions.presented(&req, &state.auth.proxies) {
        let mut conn = state.pool.get().await.map_err(StoreError::from)?;
        sessions::delete(&mut conn, &id_hash).await?;
    }
    let secure = is_secure(&req, &state.auth.proxies);
    let mut cookie = Cookie::build(cookie_name(secure), "")
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .finish();
    cookie.make_removal();
    let mut response = see_other(SIGN_IN);
    response
        .add_cookie(&cookie)
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok(response)
}

pub(crate) fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location.to_owned()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}
