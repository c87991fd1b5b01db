//! The operators' dashboard, served at `/ui`: a small hand-written page (HTML, CSS and
//! vanilla JavaScript under `crates/orchestrator-api/ui/`) compiled into the binary
//! with `include_str!`, so it needs no Node to build and fetches nothing from the
//! internet at run time. It reads the JSON API like any client; see
//! [`crate::routes::dashboard`] for the endpoints written for it.
//!
//! Screens: `/ui` (tasks, live), `/ui/tasks/{task_id}` (one task), `/ui/new` (submit),
//! `/ui/sign-in`. Every screen is the same HTML shell; the script renders what the path
//! names. The shell holds no data: the script reads it from the API with the session
//! cookie that signing in sets ([`crate::auth::sessions`]), and goes to the sign-in page
//! when the API answers 401.

use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Compress;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::auth::{oidc, sessions};
use crate::error::ApiError;

const INDEX_HTML: &str = include_str!("../../ui/index.html");

/// The files under `/ui/assets/`.
const ASSETS: [Asset; 3] = [
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../ui/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../ui/app.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../../ui/favicon.svg"),
    },
];

/// Only this origin: no CDN, no inline script or style attribute.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// A fingerprint of the assets: the shell links them as `?v=<fingerprint>`, so they can
/// be cached for good and a new build is still fetched at once.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    // FNV-1a: stable across builds and Rust versions, unlike `DefaultHasher`.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in ASSETS.iter().flat_map(|asset| asset.body.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
});

static SHELL: LazyLock<String> = LazyLock::new(|| INDEX_HTML.replace("{{version}}", &VERSION));

/// Where the sign-in page's "Sign in with SSO" link goes, when an identity provider is
/// configured.
pub const SSO_START: &str = "/ui/sign-in/oidc";

/// The shell that also tells the script to offer "Sign in with SSO" (a link, so the
/// CSP's `form-action` stays `'self'`).
static SHELL_WITH_SSO: LazyLock<String> = LazyLock::new(|| {
    SHELL.replacen(
        "</head>",
        &format!("<meta name=\"orchestrator-sso\" content=\"{SSO_START}\">\n</head>"),
        1,
    )
});

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/ui")
            .wrap(Compress::default())
            .service(page("", shell))
            .service(page("/", redirect_to_ui))
            .service(page("/new", shell))
            .service(page("/tasks/{task_id}", shell))
            .service(
                web::resource("/sign-in")
                    .route(web::get().to(sign_in_page))
                    .route(web::post().to(sessions::sign_in))
                    .default_service(crate::routes::allow("GET, POST")),
            )
            .service(page("/sign-in/oidc", oidc::start))
            .service(page("/sign-in/oidc/callback", oidc::callback))
            .service(
                web::resource("/sign-out")
                    .route(web::post().to(sessions::sign_out))
                    .default_service(crate::routes::allow("POST")),
            )
            .service(page("/assets/{name}", asset)),
    );
}

fn page<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler))
        .default_service(crate::routes::allow("GET"))
}

async fn redirect_to_ui() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/ui"))
        .finish()
}

async fn shell() -> HttpResponse {
    shell_page(SHELL.as_str())
}

/// The sign-in page: the shell, offering SSO when an identity provider is configured.
async fn sign_in_page(state: web::Data<crate::state::AppState>) -> HttpResponse {
    if state.auth.oidc().is_some() {
        shell_page(SHELL_WITH_SSO.as_str())
    } else {
        shell_page(SHELL.as_str())
    }
}

fn shell_page(html: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        // Always revalidated: it names the current assets.
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .insert_header((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .insert_header((
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .body(html)
}

async fn asset(request: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let asset = ASSETS
        .iter()
        .find(|asset| asset.name == name.as_str())
        .ok_or(ApiError::RouteNotFound)?;
    // Cached for good only under the current fingerprint; any other URL is revalidated.
    let current = web::Query::<Vec<(String, String)>>::from_query(request.query_string())
        .is_ok_and(|query| query.iter().any(|(k, v)| k == "v" && *v == *VERSION));
    let cache_control = if current {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    Ok(HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        ))
        .insert_header((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .body(asset.body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_links_every_asset_under_the_current_fingerprint() {
        assert!(!SHELL.contains("{{version}}"));
        for asset in &ASSETS {
            let link = format!("/ui/assets/{}?v={}", asset.name, *VERSION);
            assert!(SHELL.contains(&link), "the shell links {link}");
        }
    }

    #[test]
    fn nothing_is_fetched_from_another_origin() {
        for (name, body) in std::iter::once(("index.html", INDEX_HTML))
            .chain(ASSETS.iter().map(|asset| (asset.name, asset.body)))
        {
            for scheme in ["http://", "https://", "//cdn"] {
                // The SVG namespace is a name, not a fetch.
                let fetched = body
                    .match_indices(scheme)
                    .any(|(at, _)| !body[at..].starts_with("http://www.w3.org/"));
                assert!(!fetched, "{name} refers to {scheme}");
            }
        }
    }
}
