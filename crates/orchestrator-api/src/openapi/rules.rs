//! What each input accepts and what every route can answer, written into the document
//! from the definitions the handlers validate with: the request body from
//! `orchestrator_core` and the deployment's [`RequestLimits`], each query parameter and
//! header from the constant its parser uses. A parameter has one rule wherever it
//! appears (`limit` on the list and the search alike).

use orchestrator_core::bulk::MAX_FILTER_TEXT_CHARS;
use orchestrator_core::{AuditAction, BulkAction, RequestLimits, Scope, TaskName, text};
use orchestrator_store::TaskCursor;
use orchestrator_store::dashboard::{MAX_SEARCH_CHARS, MIN_SEARCH_CHARS};
use serde_json::json;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat,
    SchemaType, Type,
};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi, Ref, RefOr};

use crate::routes::audit::MAX_ACTOR_CHARS;
use crate::routes::dashboard::{DEFAULT_THROUGHPUT_MINUTES, MAX_THROUGHPUT_MINUTES};
use crate::routes::orchestrate::IDEMPOTENCY_KEY_MAX_LEN;
use crate::routes::tasks::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::routes::tokens::{MAX_EXPIRES_IN_SECS, MIN_EXPIRES_IN_SECS, TOKEN_NAME_MAX_CHARS};
use crate::routes::{Access, ENDPOINTS, Verb};
use crate::waiting::MAX_WAIT_SECS;

/// Answers any route can give, beside those its annotation lists.
const EVERY_ROUTE: [(&str, &str); 2] = [
    (
        "405",
        "Method not allowed; the Allow header lists the methods of this path",
    ),
    (
        "500",
        "Internal error: a fault of the service, never of the request; details are in the server log",
    ),
];

/// The security scheme every route but the probes requires.
const BEARER: &str = "bearer";

pub(super) fn apply(document: &mut OpenApi, limits: &RequestLimits) {
    secure(document);
    if let Some(components) = document.components.as_mut() {
        components
            .schemas
            .insert("OrchestrateRequest".into(), request(limits).into());
        components
            .schemas
            .insert("ServiceCallBody".into(), service_call().into());
        components
            .schemas
            .insert("NewTokenBody".into(), new_token().into());
        components.schemas.insert(
            "BulkRetryBody".into(),
            bulk_body(BulkAction::Retry, limits).into(),
        );
        components.schemas.insert(
            "BulkCancelBody".into(),
            bulk_body(BulkAction::Cancel, limits).into(),
        );
    }
    for item in document.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            for parameter in operation.parameters.iter_mut().flatten() {
                let RefOr::T(parameter) = parameter else {
                    continue;
                };
                if let Some(schema) = parameter_schema(&parameter.name) {
                    parameter.schema = Some(schema);
                }
            }
            for (status, description) in EVERY_ROUTE {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| problem(description));
            }
        }
    }
}

/// Each route's security requirement and refusals, from the route table: the scope it
/// needs as the requirement's role (OpenAPI 3.1 allows roles for any scheme), 401 and,
/// where a scope is needed, 403.
fn secure(document: &mut OpenApi) {
    if let Some(components) = document.components.as_mut() {
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description = Some(
            "An API token (`orchestrator-api token create`, or `POST /api/tokens`), or a JWT of the identity provider the deployment trusts (AUTH_JWT_ISSUER). The dashboard's session cookie is accepted too."
                .into(),
        );
        components
            .security_schemes
            .insert(BEARER.into(), RefOr::T(SecurityScheme::Http(scheme)));
    }
    for endpoint in ENDPOINTS {
        let Some(item) = document.paths.paths.get_mut(endpoint.path) else {
            continue;
        };
        let operation = match endpoint.verb {
            Verb::Get => item.get.as_mut(),
            Verb::Post => item.post.as_mut(),
            Verb::Delete => item.delete.as_mut(),
        };
        let Some(operation) = operation else {
            continue;
        };
        let roles: Vec<&str> = match endpoint.access {
            Access::Public => continue,
            Access::Metrics => {
                operation.responses.responses.insert(
                    "401".into(),
                    problem("METRICS_TOKEN is set and the request did not present it as its bearer token"),
                );
                continue;
            }
            Access::Authenticated => Vec::new(),
            Access::Scope(scope) => vec![scope.as_str()],
        };
        operation.security = Some(vec![SecurityRequirement::new(BEARER, roles)]);
        let responses = &mut operation.responses.responses;
        responses.insert(
            "401".into(),
            problem(
                "No credential (type /problems/unauthenticated), or one that is not valid: malformed, unknown, expired or revoked (/problems/invalid-token). WWW-Authenticate says which, as RFC 6750 does",
            ),
        );
        responses.insert(
            "429".into(),
            problem(
                "Too many requests from this credential to this replica, or too many invalid credentials from this client; Retry-After says when to try again (type /problems/rate-limited)",
            ),
        );
        if let Access::Scope(scope) = endpoint.access {
            responses.insert(
                "403".into(),
                problem(&format!(
                    "The credential lacks the scope {scope} (type /problems/insufficient-scope), or a browser session's request came from another origin (/problems/cross-origin)"
                )),
            );
        }
    }
}

/// A response carrying a problem document.
fn problem(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
        .into()
}

fn string(pattern: String) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
}

fn integer(minimum: i64, maximum: i64, default: i64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(minimum))
        .maximum(Some(maximum))
        .default(Some(json!(default)))
}

/// The schema of the query parameter or header `name`, where it has rules.
fn parameter_schema(name: &str) -> Option<RefOr<Schema>> {
    let schema = match name {
        "status" => return Some(Ref::from_schema_name("Status").into()),
        "limit" => integer(1, MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE),
        "minutes" => integer(
            1,
            i64::from(MAX_THROUGHPUT_MINUTES),
            i64::from(DEFAULT_THROUGHPUT_MINUTES),
        ),
        "wait" => integer(0, i64::try_from(MAX_WAIT_SECS).unwrap_or(i64::MAX), 0),
        "cursor" => string(TaskCursor::PATTERN.to_owned()),
        "q" => string(text::trimmed_pattern(MIN_SEARCH_CHARS, MAX_SEARCH_CHARS)),
        "action" => ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(AuditAction::ALL.map(AuditAction::as_str))),
        "actor" => string(text::storable_pattern())
            .min_length(Some(1))
            .max_length(Some(MAX_ACTOR_CHARS)),
        "since" | "until" => ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        // Visible ASCII, as the handler checks it (`is_ascii_graphic`).
        "Idempotency-Key" => string(format!("^[!-~]{{1,{IDEMPOTENCY_KEY_MAX_LEN}}}$")),
        _ => return None,
    };
    Some(schema.into())
}

/// The body of `POST /api/orchestrate`, as `OrchestrationRequest::parse` takes it.
fn request(limits: &RequestLimits) -> Schema {
    let mut item = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("One call to each service it names."))
        .min_properties(Some(1))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for service in &limits.known_services {
        item = item.property(service.as_str(), Ref::from_schema_name("ServiceCallBody"));
    }
    let payload = ArrayBuilder::new()
        .items(item)
        .min_items(Some(1))
        .max_items(Some(limits.max_items))
        .description(Some(format!(
            "1 to {} items; each names one or more of the services ({}).",
            limits.max_items,
            limits
                .known_services
                .iter()
                .map(|service| service.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "task_name",
            string(text::non_blank_pattern())
                .min_length(Some(1))
                .max_length(Some(TaskName::MAX_CHARS))
                .description(Some(format!(
                    "1 to {} characters, not white space only, without NUL.",
                    TaskName::MAX_CHARS
                )))
                .examples([json!("Quarterly revenue forecast")]),
        )
        .required("task_name")
        .property(
            "task_description",
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .pattern(Some(text::storable_pattern()))
                .max_length(Some(RequestLimits::MAX_DESCRIPTION_CHARS))
                .description(Some(format!(
                    "At most {} characters, without NUL.",
                    RequestLimits::MAX_DESCRIPTION_CHARS
                ))),
        )
        .property("payload", payload)
        .required("payload")
        .property(
            "callback_url",
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .pattern(Some(text::storable_pattern()))
                .max_length(Some(RequestLimits::MAX_CALLBACK_URL_CHARS))
                .description(Some(
                    "Where to POST the task's summary, signed (Standard Webhooks), when it is \
                     final: https, a host allowed by WEBHOOK_ALLOWED_HOSTS, resolving to \
                     public addresses only."
                        .to_owned(),
                )),
        )
        .property(
            "deadline_seconds",
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
                .minimum(Some(1))
                .maximum(Some(limits.max_deadline_secs))
                .description(Some(format!(
                    "How long the task may take, 1 to {} seconds: a task not final by then \
                     ends FAILED and its calls are dropped. Absent or null: the \
                     deployment's default (TASK_DEADLINE_SECS), if any.",
                    limits.max_deadline_secs
                ))),
        )
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .into()
}

/// The body of `POST /api/tasks/bulk/retry` or `/cancel`, as `BulkRequest::parse`
/// takes it for `action`.
fn bulk_body(action: BulkAction, limits: &RequestLimits) -> Schema {
    let nullable = |schema_type| SchemaType::from_iter([schema_type, Type::Null]);
    let [first, second] = action.statuses().map(|status| status.as_str());
    let time = |description: &str| {
        ObjectBuilder::new()
            .schema_type(nullable(Type::String))
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some(description.to_owned()))
    };
    let filter_text = |description: &str| {
        ObjectBuilder::new()
            .schema_type(nullable(Type::String))
            .pattern(Some(text::storable_pattern()))
            .min_length(Some(1))
            .max_length(Some(MAX_FILTER_TEXT_CHARS))
            .description(Some(format!(
                "{description} 1 to {MAX_FILTER_TEXT_CHARS} characters, without NUL."
            )))
    };
    let mut services: Vec<serde_json::Value> = limits
        .known_services
        .iter()
        .map(|service| json!(service.as_str()))
        .collect();
    services.push(serde_json::Value::Null);
    let filter = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "Which of the tenant's tasks to act on; every condition given must hold. {} selects every task in a status the action applies to.",
        ))
        .property(
            "status",
            ObjectBuilder::new()
                .schema_type(nullable(Type::String))
                .enum_values(Some([json!(first), json!(second), serde_json::Value::Null]))
                .description(Some(format!(
                    "{first} or {second}; absent or null: both."
                ))),
        )
        .property(
            "created_after",
            time("Tasks created at or after this time."),
        )
        .property("created_before", time("Tasks created before this time."))
        .property(
            "service",
            ObjectBuilder::new()
                .schema_type(nullable(Type::String))
                .enum_values(Some(services))
                .description(Some(
                    "Tasks with a service request to this service that did not complete.",
                )),
        )
        .property(
            "error_contains",
            filter_text("Tasks whose error message contains this text, ignoring case."),
        )
        .property(
            "task_name_prefix",
            filter_text("Tasks whose name starts with this text (case matters)."),
        )
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("filter", filter)
        .required("filter")
        .property(
            "dry_run",
            ObjectBuilder::new()
                .schema_type(nullable(Type::Boolean))
                .description(Some(
                    "true: only count the tasks the filter selects (200); change nothing.",
                )),
        )
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .into()
}

/// The body of `POST /api/tokens`, as `NewTokenRequest::parse` takes it.
fn new_token() -> Schema {
    let nullable = |schema_type| SchemaType::from_iter([schema_type, Type::Null]);
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "name",
            ObjectBuilder::new()
                .schema_type(nullable(Type::String))
                .pattern(Some(text::storable_pattern()))
                .min_length(Some(1))
                .max_length(Some(TOKEN_NAME_MAX_CHARS))
                .description(Some(format!(
                    "A label for people: 1 to {TOKEN_NAME_MAX_CHARS} characters, without NUL."
                )))
                .examples([json!("ci")]),
        )
        .property(
            "scopes",
            ArrayBuilder::new()
                .items(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(Scope::ALL.map(Scope::as_str))),
                )
                .min_items(Some(1))
                .description(Some(
                    "Scopes the credential making the token holds itself; each counts once.",
                )),
        )
        .required("scopes")
        .property(
            "expires_in_seconds",
            ObjectBuilder::new()
                .schema_type(nullable(Type::Integer))
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(MIN_EXPIRES_IN_SECS))
                .maximum(Some(MAX_EXPIRES_IN_SECS))
                .description(Some("How long the token is valid; absent or null: until revoked.")),
        )
        .property(
            "tenant",
            ObjectBuilder::new()
                .schema_type(nullable(Type::String))
                .description(Some(
                    "The caller's own tenant, if given: any other is refused (403). Tokens of other tenants are made with `orchestrator-api token create`.",
                )),
        )
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .into()
}

/// One service call of an item.
fn service_call() -> Schema {
    let uuid = || {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
    };
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("One service call of an item."))
        .property("scenario_id", uuid())
        .required("scenario_id")
        .property("business_type_id", uuid())
        .required("business_type_id")
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .into()
}
