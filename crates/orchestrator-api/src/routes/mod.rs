//! HTTP routes. Handlers translate between HTTP and the domain; errors go through
//! [`crate::error::ApiError`].
//!
//! Every route of the API is declared once, in [`ENDPOINTS`], with its method, path,
//! handler and who may call it; that one list builds the actix configuration, and a
//! test checks it against the OpenAPI document.

use actix_web::http::Method;
use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, web};
use orchestrator_core::Scope;

use crate::auth;
use crate::error::ApiError;

pub mod audit;
pub mod bulk;
pub mod dashboard;
pub mod events;
pub mod health;
pub mod me;
pub mod orchestrate;
pub(crate) mod query;
pub mod tasks;
pub mod tokens;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone who reaches the port: the probes.
    Public,
    /// Any valid credential, whatever its scopes.
    Authenticated,
    /// `/metrics`: the `METRICS_TOKEN` when one is set, else anyone.
    Metrics,
    /// A credential that holds this scope.
    Scope(Scope),
}

impl Access {}

/// The methods routes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Delete,
}

impl Verb {
    pub fn method(self) -> Method {
        match self {
            Verb::Get => Method::GET,
            Verb::Post => Method::POST,
            Verb::Delete => Method::DELETE,
        }
    }
}

/// One route: method, path, who may call it, and its handler.
pub struct Endpoint {
    pub verb: Verb,
    pub path: &'static str,
    pub access: Access,
    route: fn() -> actix_web::Route,
}

impl Endpoint {
    /// The handler behind the access check the endpoint declares: the only way a
    /// route is built.
    fn checked_route(&self) -> actix_web::Route {
        let route = (self.route)();
        match self.access {
            Access::Public => route,
            Access::Metrics => route.wrap(from_fn(auth::require_metrics_token)),
            Access::Authenticated => {
                route.wrap(from_fn(|req, next| auth::require(None, req, next)))
            }
            Access::Scope(scope) => route.wrap(from_fn(move |req, next| {
                auth::require(Some(scope), req, next)
            })),
        }
    }
}

/// Every route of the API, in the order actix matches them: fixed paths under
/// `/api/tasks/` come before `/api/tasks/{task_id}`, which would otherwise take them
/// (and answer 400: not a UUID).
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        verb: Verb::Post,
        path: "/api/orchestrate",
        access: Access::Scope(Scope::TasksSubmit),
        route: || web::post().to(orchestrate::orchestrate),
    },
    Endpoint {
        verb: Verb::Post,
        path: "/api/orchestrate/direct",
        access: Access::Scope(Scope::TasksSubmit),
        route: || web::post().to(orchestrate::orchestrate_direct),
    },
    Endpoint {
        verb: Verb::Get,
        path: "/api/tasks",
        access: Access::Scope(Scope::TasksRead),
        route: || web::get().to(tasks::list_tasks),
    },
    Endpoint {
        verb: Verb::Get,
        path: "/api/tasks/counts",
        access: Access::Scope(Scope::TasksRead),
        route: || web::get().to(dashboard::task_counts),
    },
    Endpoint {
        verb: Verb::Get,
        path: "/api/tasks/throughput",
        access: Access::Scope(Scope::TasksRead),
        route: || web::get().to(dashboard::task_throughput),
    },
    Endpoint {
        verb: Verb::Get,
        path: "/api/tasks/search",
        access: Access::Scope(Scope::TasksRead),
        route: || web::get().to(dashboard::search_tasks),
    },
    Endpoint {
        verb: Verb::Post,
        path: "/api/tasks/bulk/retry",
        access: Access::Scope(Scope::TasksOperate),
        route: || web::post().to(bulk::bulk_retry),
    },
    Endpoint {
        verb: Verb::Post,
        path: "/api/tasks/bulk/cancel",
        access: Access::Scope(Scope::TasksOperate),
        route: || web::post().to(bulk::bulk_cancel),
    },
    Endpoint {
        verb: Verb::Get,
        path: "/api/bulk/{bulk_id}",
        access: Access::Scope(Scope::TasksRead),
        route: || web::get().to(bulk::get_bulk),
    },
    Endpoint {
        verb: Verb::Post,
        path: "/api/bulk/{bulk_id}/cancel",
        access: Access::Scope(Scope::TasksOperate),
        route: || web::post().to(bulk::cancel_bulk),
    },
    Endpoint {
        verb: Verb::Get,
        path: "/api/tasks/{task_id}",
        access: Access::Scope(Scope::TasksRead),
        route: || web::get().to(tasks::get_task),
    },
    Endpoint {
        verb: Verb::Post,
        path: "/api/tasks/{task_id}/retry",
        access: Access::Scope(Scope::TasksOperate),
        route: || web::post().to(tasks::retry_task),
    },
    Endpoint {
        verb: Verb::Post,
        path: "/api/tasks/{task_id}/cancel",
        access: Access::Scope(Scope::TasksOperate),
        route: || web::post().to(tasks::cancel_task),
    },
    Endpoint {
        verb: Verb::Get,
        path: "/api/tasks/{task_id}/events",
        access: Access::Scope(Scope::TasksRead),
        route: || web::get().to(events::task_events),
    },
    Endpoint {
        verb: Verb::Get,
        path: "/api/events",
        access: Access::Scope(Scope::TasksRead),
        route: || web::get().to(events::all_events),
    },
    Endpoint {
        verb: Verb::Post,
        path: "/api/tokens",
        access: Access::Scope(Scope::Admin),
        route: || web::post().to(tokens::create_token),
    },
    Endpoint {
        verb: Verb::Get,
        path: "/api/tokens",
        access: Access::Scope(Scope::Admin),
        route: || web::get().to(tokens::list_tokens),
    },
    Endpoint {
        verb: Verb::Delete,
        path: "/api/tokens/{token_id}",
        access: Access::Scope(Scope::Admin),
        route: || web::delete().to(tokens::revoke_token),
    },
    Endpoint {
        verb: Verb::Get,
        path: "/api/audit",
        access: Access::Scope(Scope::Admin),
        route: || web::get().to(audit::audit_log),
    },
    Endpoint {
        verb: Verb::Get,
        path: "/api/me",
        access: Access::Authenticated,
        route: || web::get().to(me::me),
    },
    Endpoint {
        verb: Verb::Get,
        path: "/health",
        access: Access::Public,
        route: || web::get().to(health::health),
    },
    Endpoint {
        verb: Verb::Get,
        path: "/ready",
        access: Access::Public,
        route: || web::get().to(health::ready),
    },
    Endpoint {
        verb: Verb::Get,
        path: "/metrics",
        access: Access::Metrics,
        route: || web::get().to(health::metrics),
    },
];

/// One resource per path of [`ENDPOINTS`], with its routes; any other method answers
/// 405 with `Allow`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let mut paths: Vec<&'static str> = Vec::new();
    for endpoint in ENDPOINTS {
        if !paths.contains(&endpoint.path) {
            paths.push(endpoint.path);
        }
    }
    for path in paths {
        let mut resource = web::resource(path);
        let mut methods = Vec::new();
        for endpoint in ENDPOINTS.iter().filter(|endpoint| endpoint.path == path) {
            resource = resource.route(endpoint.checked_route());
            methods.push(endpoint.verb.method().to_string());
        }
        cfg.service(resource.default_service(allow(&methods.join(", "))));
    }
    crate::ui::configure(cfg);
}

/// What a resource answers to any method it does not have: 405 with an `Allow` header
/// naming the ones it has (RFC 9110, section 15.5.6).
pub(crate) fn allow(methods: &str) -> actix_web::Route {
    let methods = methods.to_owned();
    web::to(move || {
        let allow = methods.clone();
        async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow }) }
    })
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound)
}
