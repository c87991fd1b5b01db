use crate::auth::{Caller, Credential};
use crate::dto::CallerResponse;
use crate::json::Json;

/// Who the request's credential stands for: its tenant and scopes. The dashboard asks
/// this to show who is signed in and which actions to offer.
#[utoipa::path(get, path = "/api/me", tag = "access",
    responses((status = 200, description = "The caller", body = CallerResponse)))]
pub async fn me(caller: Caller) -> Json<CallerResponse> {
    let (credential, token_id) = match caller.credential {
        Credential::Token(id) => ("token", Some(id)),
        Credential::Session { token, .. } => ("session", token),
        Credential::Jwt { .. } => ("jwt", None),
        Credential::Nobody => ("none", None),
    };
    Json(CallerResponse {
        tenant: caller.tenant.to_string(),
        scopes: caller.scopes().iter().map(|scope| scope.as_str()).collect(),
        credential,
        token_id,
    })
}
