//! Parsing a client's orchestration request.
//!
//! The body is parsed from a [`serde_json::Value`] by hand rather than with a serde
//! derive, because serde stops at the first problem while clients should learn about
//! every bad field at once, each with a JSON pointer.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::ServiceName;
use crate::text;
use crate::validation::{Place, ValidationErrors, whole_number};

/// A task's name: not blank, at most [`TaskName::MAX_CHARS`] characters, no NUL.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct TaskName(String);

impl TaskName {
    pub const MAX_CHARS: usize = 255;

    pub fn parse(name: &str) -> Result<Self, &'static str> {
        if text::has_nul(name) {
            return Err(text::NUL_DETAIL);
        }
        if text::is_blank(name) {
            return Err("must not be empty or white space only");
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err("must be at most 255 characters");
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One downstream call asked for by an item: which scenario and business type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceCall {
    pub scenario_id: Uuid,
    pub business_type_id: Uuid,
}

impl ServiceCall {
    /// The JSON sent to the downstream service and stored as the request payload.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "scenario_id": self.scenario_id,
            "business_type_id": self.business_type_id,
        })
    }
}

/// What the deployment accepts: which services exist and how large a request may be.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    pub known_services: BTreeSet<ServiceName>,
    pub max_items: usize,
    /// The longest `deadline_seconds` a request may ask for.
    pub max_deadline_secs: u32,
}

impl RequestLimits {
    pub const DEFAULT_MAX_ITEMS: usize = 1_000;
    pub const MAX_DESCRIPTION_CHARS: usize = 10_000;
    /// One day: a task that may run longer than that is better split.
    pub const DEFAULT_MAX_DEADLINE_SECS: u32 = 86_400;
    pub const MAX_CALLBACK_URL_CHARS: usize = 2_048;
}

/// A validated orchestration request. Holding one means every field was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrchestrationRequest {
    pub task_name: TaskName,
    pub task_description: Option<String>,
    /// One map per payload item, from service to call; never empty, in request order.
    pub items: Vec<BTreeMap<ServiceName, ServiceCall>>,
    /// How long the task may take before it is failed, when the client set a bound
    /// (1 to [`RequestLimits::max_deadline_secs`]).
    pub deadline_seconds: Option<u32>,
    /// Where to POST the task's summary when it is final. Only its form is checked
    /// here (a string of at most [`RequestLimits::MAX_CALLBACK_URL_CHARS`], no NUL);
    /// where it may go is the API's to decide.
    pub callback_url: Option<String>,
}

impl OrchestrationRequest {
    /// Parses and validates a request body, reporting every problem found.
    pub fn parse(body: &Value, limits: &RequestLimits) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let Some(object) = body.as_object() else {
            errors.push("", "the request body must be a JSON object");
            return Err(errors);
        };
        for key in object.keys() {
            if !matches!(
                key.as_str(),
                "task_name" | "task_description" | "payload" | "deadline_seconds" | "callback_url"
            ) {
                errors.push(
                    Place::top(key),
                    "unknown field; expected task_name, task_description, payload, \
                     deadline_seconds and callback_url",
                );
            }
        }

        let task_name = match object.get("task_name") {
            None | Some(Value::Null) => {
                errors.push("/task_name", "is required");
                None
            }
            Some(Value::String(name)) => TaskName::parse(name)
                .map_err(|reason| errors.push("/task_name", reason))
                .ok(),
            Some(other) => {
                errors.push(
                    "/task_name",
                    format!("must be a string, not {}", kind(other)),
                );
                None
            }
        };

        let task_description = optional_text(
            object,
            "task_description",
            RequestLimits::MAX_DESCRIPTION_CHARS,
            &mut errors,
        );

        let items = parse_items(object.get("payload"), limits, &mut errors);
        let deadline_seconds = match object.get("deadline_seconds") {
            None | Some(Value::Null) => None,
            Some(value) => {
                let seconds = whole_number(value)
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| (1..=limits.max_deadline_secs).contains(n));
                if seconds.is_none() {
                    errors.push(
                        "/deadline_seconds",
                        format!(
                            "must be a whole number of seconds from 1 to {}",
                            limits.max_deadline_secs
                        ),
                    );
                }
                seconds
            }
        };

        let callback_url = optional_text(
            object,
            "callback_url",
            RequestLimits::MAX_CALLBACK_URL_CHARS,
            &mut errors,
        );

        match (task_name, items) {
            (Some(task_name), Some(items)) if errors.is_empty() => Ok(Self {
                task_name,
                task_description,
                items,
                deadline_seconds,
                callback_url,
            }),
            _ => Err(errors),
        }
    }

    /// A request body that is valid, read straight into the request: the common case,
    /// without a [`Value`] of the body built only to be walked once. `None` for
    /// anything it does not take (a problem, or a form it leaves to the full parse:
    /// `10.0` seconds, a key written with escapes, a field given twice), which
    /// [`Self::parse`] then reads to say what is wrong, or takes. The same rules in a
    /// second form, as for stored payloads: a rule added to [`Self::parse`] belongs here
    /// too.
    pub fn parse_valid(body: &[u8], limits: &RequestLimits) -> Option<Self> {
        let body: ValidBody<'_> = serde_json::from_slice(body).ok()?;
        let task_name = TaskName::parse(&body.task_name).ok()?;
        let text = |value: Option<std::borrow::Cow<'_, str>>, max_chars: usize| match value {
            Some(text) if text.chars().count() > max_chars || text::has_nul(&text) => Err(()),
            other => Ok(other.map(std::borrow::Cow::into_owned)),
        };
        let task_description =
            text(body.task_description, RequestLimits::MAX_DESCRIPTION_CHARS).ok()?;
        let callback_url = text(body.callback_url, RequestLimits::MAX_CALLBACK_URL_CHARS).ok()?;
        if body
            .deadline_seconds
            .is_some_and(|seconds| !(1..=limits.max_deadline_secs).contains(&seconds))
        {
            return None;
        }
        Some(Self {
            task_name,
            task_description,
            items: checked_items(body.payload, limits)?,
            deadline_seconds: body.deadline_seconds,
            callback_url,
        })
    }

    /// A stored task's payload (the JSON text the API stored, [`Self::payload_json`]),
    /// checked again against `limits`: the services a deployment knows may have changed
    /// since it accepted the task. Errors point into `/payload`, as [`Self::parse`]'s do.
    pub fn parse_stored_payload(
        payload: &str,
        limits: &RequestLimits,
    ) -> Result<Vec<BTreeMap<ServiceName, ServiceCall>>, ValidationErrors> {
        // What the API stored is valid but for a service removed since, so it is read
        // straight into the calls: a `Value` of it (a map per item and per call, a
        // string per key) would be built only to be walked once, for every task a
        // worker starts. What that read does not take (an unknown service, an escaped
        // key) is read again the slow way, which says what is wrong as a request's
        // parse would, or takes it.
        if let Some(items) = stored_items(payload, limits) {
            return Ok(items);
        }
        let mut errors = ValidationErrors::default();
        match serde_json::from_str::<Value>(payload) {
            Ok(value) => {
                if let Some(items) = parse_items(Some(&value), limits, &mut errors) {
                    return Ok(items);
                }
            }
            Err(error) => errors.push("/payload", format!("is not JSON: {error}")),
        }
        Err(errors)
    }

    /// The payload in its canonical JSON form, as stored with the task.
    pub fn payload_json(&self) -> Value {
        Value::Array(
            self.items
                .iter()
                .map(|item| {
                    Value::Object(
                        item.iter()
                            .map(|(service, call)| (service.to_string(), call.to_json()))
                            .collect::<Map<String, Value>>(),
                    )
                })
                .collect(),
        )
    }

    /// The number of service requests this request will produce.
    pub fn service_request_count(&self) -> usize {
        self.items.iter().map(BTreeMap::len).sum()
    }
}

/// An optional text field: absent or null is `None`; otherwise a string of at most
/// `max_chars` characters without NUL (which PostgreSQL cannot store).
fn optional_text(
    object: &Map<String, Value>,
    field: &str,
    max_chars: usize,
    errors: &mut ValidationErrors,
) -> Option<String> {
    let pointer = Place::top(field);
    match object.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.chars().count() > max_chars => {
            errors.push(pointer, format!("must be at most {max_chars} characters"));
            None
        }
        Some(Value::String(text)) if text::has_nul(text) => {
            errors.push(pointer, text::NUL_DETAIL);
            None
        }
        Some(Value::String(text)) => Some(text.clone()),
        Some(other) => {
            errors.push(
                pointer,
                format!("must be a string or null, not {}", kind(other)),
            );
            None
        }
    }
}

/// Where the items are: `/payload`.
static PAYLOAD: Place<'static> = Place::top("payload");

fn parse_items(
    payload: Option<&Value>,
    limits: &RequestLimits,
    errors: &mut ValidationErrors,
) -> Option<Vec<BTreeMap<ServiceName, ServiceCall>>> {
    let items = match payload {
        None | Some(Value::Null) => {
            errors.push("/payload", "is required");
            return None;
        }
        Some(Value::Array(items)) => items,
        Some(other) => {
            errors.push("/payload", format!("must be an array, not {}", kind(other)));
            return None;
        }
    };
    if items.is_empty() {
        errors.push("/payload", "must contain at least one item");
        return None;
    }
    if items.len() > limits.max_items {
        errors.push(
            "/payload",
            format!(
                "has {} items; at most {} are accepted",
                items.len(),
                limits.max_items
            ),
        );
        return None;
    }

    let before = errors.errors().len();
    let parsed: Vec<_> = items
        .iter()
        .enumerate()
        .map(|(index, item)| parse_item(item, &PAYLOAD.index(index), limits, errors))
        .collect();
    (errors.errors().len() == before).then_some(parsed)
}

fn parse_item(
    item: &Value,
    pointer: &Place<'_>,
    limits: &RequestLimits,
    errors: &mut ValidationErrors,
) -> BTreeMap<ServiceName, ServiceCall> {
    let mut calls = BTreeMap::new();
    let Some(object) = item.as_object() else {
        errors.push(pointer, format!("must be an object, not {}", kind(item)));
        return calls;
    };
    if object.is_empty() {
        errors.push(
            pointer,
            format!("must name at least one service ({})", known_list(limits)),
        );
        return calls;
    }
    for (key, value) in object {
        let call_pointer = pointer.key(key);
        let service = ServiceName::parse(key)
            .ok()
            .filter(|name| limits.known_services.contains(name));
        let Some(service) = service else {
            errors.push(
                call_pointer,
                format!("unknown service; expected one of {}", known_list(limits)),
            );
            continue;
        };
        if let Some(call) = parse_call(value, &call_pointer, errors) {
            calls.insert(service, call);
        }
    }
    calls
}

fn parse_call(
    value: &Value,
    pointer: &Place<'_>,
    errors: &mut ValidationErrors,
) -> Option<ServiceCall> {
    let Some(object) = value.as_object() else {
        errors.push(pointer, format!("must be an object, not {}", kind(value)));
        return None;
    };
    for key in object.keys() {
        if !matches!(key.as_str(), "scenario_id" | "business_type_id") {
            errors.push(
                pointer.key(key),
                "unknown field; expected scenario_id and business_type_id",
            );
        }
    }
    let scenario_id = parse_uuid(
        object.get("scenario_id"),
        &pointer.key("scenario_id"),
        errors,
    );
    let business_type_id = parse_uuid(
        object.get("business_type_id"),
        &pointer.key("business_type_id"),
        errors,
    );
    Some(ServiceCall {
        scenario_id: scenario_id?,
        business_type_id: business_type_id?,
    })
}

fn parse_uuid(
    value: Option<&Value>,
    pointer: &Place<'_>,
    errors: &mut ValidationErrors,
) -> Option<Uuid> {
    match value {
        None | Some(Value::Null) => {
            errors.push(pointer, "is required");
            None
        }
        Some(Value::String(text)) => match Uuid::try_parse(text) {
            Ok(uuid) => Some(uuid),
            Err(_) => {
                errors.push(pointer, format!("{text:?} is not a UUID"));
                None
            }
        },
        Some(other) => {
            errors.push(
                pointer,
                format!("must be a UUID string, not {}", kind(other)),
            );
            None
        }
    }
}

/// A call as a stored payload holds it, its ids as the text they are in; fields
/// borrowed, so a text with escapes (never stored by the API) is left to the slow read.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredCall<'a> {
    scenario_id: &'a str,
    business_type_id: &'a str,
}

/// A request body as [`OrchestrationRequest::parse_valid`] reads it: absent and null
/// optional fields alike are `None`, as [`OrchestrationRequest::parse`] takes them.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidBody<'a> {
    #[serde(borrow)]
    task_name: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    task_description: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    payload: Vec<BTreeMap<&'a str, StoredCall<'a>>>,
    #[serde(default)]
    deadline_seconds: Option<u32>,
    #[serde(borrow, default)]
    callback_url: Option<std::borrow::Cow<'a, str>>,
}

/// The items of a stored payload when they pass every check [`parse_items`] makes;
/// `None` for anything else, without saying why. The checks are the same rules in a
/// second form: a rule added to [`parse_items`] belongs here too, or a stored payload
/// that breaks it would still run.
fn stored_items(
    payload: &str,
    limits: &RequestLimits,
) -> Option<Vec<BTreeMap<ServiceName, ServiceCall>>> {
    checked_items(serde_json::from_str(payload).ok()?, limits)
}

/// Items read as calls by service name, when they pass every check [`parse_items`]
/// makes; `None` otherwise.
fn checked_items(
    items: Vec<BTreeMap<&str, StoredCall<'_>>>,
    limits: &RequestLimits,
) -> Option<Vec<BTreeMap<ServiceName, ServiceCall>>> {
    if items.is_empty() || items.len() > limits.max_items {
        return None;
    }
    items
        .into_iter()
        .map(|item| {
            if item.is_empty() {
                return None;
            }
            item.into_iter()
                .map(|(name, call)| {
                    let service = limits.known_services.get(name)?.clone();
                    let call = ServiceCall {
                        scenario_id: Uuid::try_parse(call.scenario_id).ok()?,
                        business_type_id: Uuid::try_parse(call.business_type_id).ok()?,
                    };
                    Some((service, call))
                })
                .collect()
        })
        .collect()
}

fn known_list(limits: &RequestLimits) -> String {
    let names: Vec<&str> = limits
        .known_services
        .iter()
        .map(ServiceName::as_str)
        .collect();
    names.join(", ")
}

pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SCENARIO: &str = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
    const BUSINESS: &str = "9b2f4e2a-6c4d-4d3e-8f1a-2b3c4d5e6f70";

    fn limits() -> RequestLimits {
        RequestLimits {
            known_services: ["revenue", "rebates", "specialty"]
                .into_iter()
                .map(|name| ServiceName::parse(name).expect("valid"))
                .collect(),
            max_items: 5,
            max_deadline_secs: 600,
        }
    }

    fn call() -> Value {
        json!({"scenario_id": SCENARIO, "business_type_id": BUSINESS})
    }

    fn pointers(body: Value) -> Vec<String> {
        OrchestrationRequest::parse(&body, &limits())
            .expect_err("should be rejected")
            .errors()
            .iter()
            .map(|error| error.pointer.clone())
            .collect()
    }

    #[test]
    fn parses_a_valid_request() {
        let body = json!({
            "task_name": "Quarterly",
            "task_description": null,
            "payload": [{"revenue": call(), "rebates": call()}, {"specialty": call()}],
        });
        let request = OrchestrationRequest::parse(&body, &limits()).expect("valid");
        assert_eq!(request.task_name.as_str(), "Quarterly");
        assert_eq!(request.task_description, None);
        assert_eq!(request.items.len(), 2);
        assert_eq!(request.service_request_count(), 3);
        assert_eq!(request.payload_json(), body["payload"]);
    }

    #[test]
    fn deadline_is_optional_whole_and_bounded() {
        let with = |deadline: Value| json!({"task_name": "t", "payload": [{"revenue": call()}], "deadline_seconds": deadline});
        let parse = |body: &Value| OrchestrationRequest::parse(body, &limits());
        assert_eq!(
            parse(&with(json!(null))).expect("valid").deadline_seconds,
            None
        );
        assert_eq!(
            parse(&with(json!(30))).expect("valid").deadline_seconds,
            Some(30)
        );
        assert_eq!(
            parse(&with(json!(600.0))).expect("valid").deadline_seconds,
            Some(600)
        );
        for bad in [
            json!(0),
            json!(601),
            json!(-5),
            json!(1.5),
            json!("30"),
            json!(true),
        ] {
            let errors = parse(&with(bad.clone())).expect_err("refused");
            assert_eq!(errors.errors()[0].pointer, "/deadline_seconds", "{bad}");
            assert!(errors.errors()[0].detail.contains("from 1 to 600"), "{bad}");
        }
    }

    #[test]
    fn reports_every_bad_field_with_a_pointer() {
        let body = json!({
            "task_name": "",
            "task_description": 7,
            "payload": [
                {},
                {"bogus": call()},
                {"revenue": {"scenario_id": "nope", "business_type_id": 3}},
                "x",
            ],
            "extra": true,
        });
        assert_eq!(
            pointers(body),
            vec![
                "/extra",
                "/task_name",
                "/task_description",
                "/payload/0",
                "/payload/1/bogus",
                "/payload/2/revenue/scenario_id",
                "/payload/2/revenue/business_type_id",
                "/payload/3",
            ]
        );
    }

    #[test]
    fn requires_name_and_payload() {
        assert_eq!(pointers(json!({})), vec!["/task_name", "/payload"]);
        assert_eq!(
            pointers(json!({"task_name": "   ", "payload": []})),
            vec!["/task_name", "/payload"]
        );
        assert_eq!(pointers(json!([1])), vec![""]);
    }

    #[test]
    fn limits_name_length_and_item_count() {
        let long_name = "n".repeat(256);
        let body = json!({"task_name": long_name, "payload": [{"revenue": call()}]});
        assert_eq!(pointers(body), vec!["/task_name"]);
        let name_255 = "é".repeat(255);
        let body = json!({"task_name": name_255, "payload": [{"revenue": call()}]});
        assert!(OrchestrationRequest::parse(&body, &limits()).is_ok());

        let items: Vec<Value> = (0..6).map(|_| json!({"revenue": call()})).collect();
        let body = json!({"task_name": "t", "payload": items});
        assert_eq!(pointers(body), vec!["/payload"]);
    }

    #[test]
    fn refuses_nul_in_stored_text() {
        let body = json!({
            "task_name": "a\u{0}b",
            "task_description": "c\u{0}",
            "payload": [{"revenue": call()}],
        });
        assert_eq!(pointers(body), vec!["/task_name", "/task_description"]);
    }

    #[test]
    fn rejects_missing_ids_and_unknown_call_fields() {
        let body =
            json!({"task_name": "t", "payload": [{"revenue": {"scenario_id": SCENARIO, "x": 1}}]});
        assert_eq!(
            pointers(body),
            vec![
                "/payload/0/revenue/x",
                "/payload/0/revenue/business_type_id"
            ]
        );
    }

    #[test]
    fn pointers_escape_the_keys_they_name() {
        let body = json!({
            "task_name": "t",
            "payload": [{"revenue": call()}, {"a/b~c": call(), "revenue": {"scenario_id/": 1}}],
        });
        assert_eq!(
            pointers(body),
            vec![
                "/payload/1/a~1b~0c",
                "/payload/1/revenue/scenario_id~1",
                "/payload/1/revenue/scenario_id",
                "/payload/1/revenue/business_type_id",
            ]
        );
    }

    /// The stored payloads a worker reads: what the API stored is read as the request
    /// was; a payload that no longer passes says why as a request's parse would.
    #[test]
    fn a_stored_payload_reads_as_its_request_did() {
        let body = json!({
            "task_name": "t",
            "payload": [{"revenue": call(), "rebates": call()}, {"specialty": call()}],
        });
        let request = OrchestrationRequest::parse(&body, &limits()).expect("valid");
        // As PostgreSQL gives `jsonb` back: keys reordered, spaces after separators.
        let stored = serde_json::to_string_pretty(&request.payload_json()).expect("JSON");
        let items = OrchestrationRequest::parse_stored_payload(&stored, &limits());
        assert_eq!(items, Ok(request.items.clone()));
        // ... and the fast way, without the request parser.
        assert_eq!(
            stored_items(&stored, &limits()),
            Some(request.items.clone())
        );

        // A key with an escape is not read the fast way, and is the same name.
        let escaped = stored.replacen("revenue", "rev\\u0065nue", 1);
        assert_ne!(escaped, stored);
        assert_eq!(stored_items(&escaped, &limits()), None);
        let items = OrchestrationRequest::parse_stored_payload(&escaped, &limits());
        assert_eq!(items, Ok(request.items));

        let stored_pointers = |payload: &str, limits: &RequestLimits| {
            OrchestrationRequest::parse_stored_payload(payload, limits)
                .expect_err("should be rejected")
                .errors()
                .iter()
                .map(|error| error.pointer.clone())
                .collect::<Vec<_>>()
        };
        // A service this deployment no longer knows.
        let mut fewer = limits();
        fewer.known_services.remove("rebates");
        assert_eq!(stored_pointers(&stored, &fewer), vec!["/payload/0/rebates"]);
        // More items than are accepted now.
        let mut smaller = limits();
        smaller.max_items = 1;
        assert_eq!(stored_pointers(&stored, &smaller), vec!["/payload"]);
        // Ids and fields that are not what a call holds.
        let bad = format!(
            r#"[{{"revenue": {{"scenario_id": "nope", "business_type_id": "{BUSINESS}"}}}}, {{"rebates": {{"scenario_id": "{SCENARIO}", "business_type_id": "{BUSINESS}", "x": 1}}}}, {{}}]"#
        );
        assert_eq!(
            stored_pointers(&bad, &limits()),
            vec![
                "/payload/0/revenue/scenario_id",
                "/payload/1/rebates/x",
                "/payload/2"
            ]
        );
        assert_eq!(stored_pointers("[{", &limits()), vec!["/payload"]);
    }

    /// The API's fast read of a body takes only what the full parse takes, as the full
    /// parse reads it, and takes the common valid bodies; everything else (every
    /// problem, and forms it leaves alone) goes to the full parse.
    #[test]
    fn a_valid_body_is_read_the_fast_way_as_the_full_parse_reads_it() {
        let call = format!(r#"{{"scenario_id": "{SCENARIO}", "business_type_id": "{BUSINESS}"}}"#);
        let body = |fields: &str| format!(r#"{{"task_name": "Quarterly", {fields}}}"#);
        let payload = format!(r#""payload": [{{"revenue": {call}, "rebates": {call}}}]"#);
        let fast = [
            body(&payload),
            body(&format!(
                r#"{payload}, "task_description": null, "callback_url": null, "deadline_seconds": null"#
            )),
            body(&format!(
                r#"{payload}, "task_description": "EMEA \"Q3\" \u00e9", "deadline_seconds": 600, "callback_url": "https://hooks.example/x""#
            )),
            format!(r#"{{"task_name": "caf\u00e9", {payload}}}"#),
            // A service named twice in an item: the last one counts, in both reads.
            body(&format!(
                r#""payload": [{{"revenue": {{"scenario_id": "{BUSINESS}", "business_type_id": "{BUSINESS}"}}, "revenue": {call}}}]"#
            )),
        ];
        for text in &fast {
            let full = serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|value| OrchestrationRequest::parse(&value, &limits()).ok());
            assert!(full.is_some(), "valid: {text}");
            assert_eq!(
                OrchestrationRequest::parse_valid(text.as_bytes(), &limits()),
                full,
                "{text}"
            );
        }
        let nul = "\\u0000";
        let left_to_the_full_parse = [
            // Valid, in forms the fast read leaves alone.
            body(&format!(r#"{payload}, "deadline_seconds": 60.0"#)),
            body(&format!(r#""payload": [{{"rev\u0065nue": {call}}}]"#)),
            body(&format!(
                r#"{payload}, "task_description": "a", "task_description": "b""#
            )),
            // Problems.
            "[]".to_owned(),
            "{".to_owned(),
            body(&payload).replace("Quarterly", " "),
            body(&payload).replace("Quarterly", nul),
            body(&payload).replace("Quarterly", &"n".repeat(256)),
            format!(r#"{{{payload}}}"#),
            format!(r#"{{"task_name": null, {payload}}}"#),
            body(r#""payload": []"#),
            body(r#""payload": null"#),
            body(r#""payload": [{}]"#),
            body(&format!(r#""payload": [{{"unknown": {call}}}]"#)),
            body(&format!(
                r#""payload": [{{"revenue": {{"scenario_id": "{SCENARIO}"}}}}]"#
            )),
            body(&format!(
                r#""payload": [{{"revenue": {{"scenario_id": "nope", "business_type_id": "{BUSINESS}"}}}}]"#
            )),
            body(&format!(
                r#""payload": [{{"revenue": {{"scenario_id": "{SCENARIO}", "business_type_id": "{BUSINESS}", "x": 1}}}}]"#
            )),
            body(&format!(
                r#""payload": [{}]"#,
                vec![format!(r#"{{"revenue": {call}}}"#); 6].join(", ")
            )),
            body(&format!(r#"{payload}, "deadline_seconds": 0"#)),
            body(&format!(r#"{payload}, "deadline_seconds": 601"#)),
            body(&format!(r#"{payload}, "deadline_seconds": -1"#)),
            body(&format!(r#"{payload}, "task_description": "{nul}""#)),
            body(&format!(
                r#"{payload}, "task_description": "{}""#,
                "d".repeat(RequestLimits::MAX_DESCRIPTION_CHARS + 1)
            )),
            body(&format!(
                r#"{payload}, "callback_url": "{}""#,
                "u".repeat(RequestLimits::MAX_CALLBACK_URL_CHARS + 1)
            )),
            body(&format!(r#"{payload}, "callback_url": 7"#)),
            body(&format!(r#"{payload}, "extra": true"#)),
        ];
        for text in &left_to_the_full_parse {
            assert_eq!(
                OrchestrationRequest::parse_valid(text.as_bytes(), &limits()),
                None,
                "{text}"
            );
        }
        // The valid ones among them are still taken, by the full parse.
        for text in &left_to_the_full_parse[..3] {
            let value = serde_json::from_str::<Value>(text).expect("JSON");
            assert!(
                OrchestrationRequest::parse(&value, &limits()).is_ok(),
                "{text}"
            );
        }
    }
}
