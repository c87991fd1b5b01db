//! JWT bearer tokens from an identity provider (OIDC access or ID tokens): checked
//! against the provider's published keys (a JWK set), its issuer and our audience, and
//! mapped to a tenant and scopes through two claims.
//!
//! Only asymmetric algorithms are accepted ([`ALLOWED`]): a token saying `none`, or an
//! HMAC algorithm (which would let anyone who knows the public key sign, by using it as
//! the secret), is refused before any key is looked at. The key is the one the token's
//! `kid` names, and it must be of the family of the token's algorithm (and of the JWK's
//! own `alg`, when it names one). The signature, `exp`, `nbf`, `iss` and `aud` are
//! checked by `jsonwebtoken`. Fetching the key set is the caller's: this module does no
//! I/O.

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use orchestrator_core::{Scope, TenantName};
use serde_json::Value;

/// The algorithms a token may be signed with: RSA (PKCS#1 v1.5 and PSS), ECDSA, EdDSA.
pub const ALLOWED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// How long past `exp` (and before `nbf`) a token is still taken, for clocks that
/// disagree a little.
pub const LEEWAY_SECS: u64 = 30;

/// What a token must say, and where it says the tenant and scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtRules {
    /// `iss`, exactly.
    pub issuer: String,
    /// One of `aud`.
    pub audience: String,
    /// The claim naming the tenant (a string).
    pub tenant_claim: String,
    /// The claim holding the scopes: a space-separated string (OAuth's `scope`) or a
    /// list of strings. Names that are not ours (`openid`, `profile`) are ignored.
    pub scopes_claim: String,
}

/// Who a valid token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtCaller {
    /// `sub`.
    pub subject: String,
    pub tenant: TenantName,
    pub scopes: Vec<Scope>,
    /// `exp`, in seconds since 1970.
    pub expires_at: i64,
}

/// The SHA-256 of a token: what a cache of verified tokens is keyed by, so that it
/// does not hold the tokens themselves.
pub fn fingerprint(token: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Why a token was refused. The client is told only that it is not valid; the reason
/// is for the logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("not a JWT: {0}")]
    Malformed(String),
    #[error("algorithm {0:?} is not accepted")]
    Algorithm(Algorithm),
    /// No key of the set has the token's `kid`: the caller may refresh the set once.
    #[error("no key {0:?} in the key set")]
    UnknownKey(Option<String>),
    #[error("the key {kid:?} does not fit the token: {reason}")]
    KeyMismatch { kid: Option<String>, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("claim {claim:?}: {reason}")]
    Claim { claim: String, reason: String },
}

/// The token's algorithm and key id, from its header alone: whether the key set holds
/// its key can be answered (and the set refreshed) before anything is verified.
pub fn key_id(token: &str) -> Result<(Algorithm, Option<String>), JwtError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| JwtError::Malformed(e.to_string()))?;
    if !ALLOWED.contains(&header.alg) {
        return Err(JwtError::Algorithm(header.alg));
    }
    Ok((header.alg, header.kid))
}

/// Checks `token` against `keys` and `rules` and reads its caller.
pub fn verify(token: &str, keys: &JwkSet, rules: &JwtRules) -> Result<JwtCaller, JwtError> {
    let (algorithm, kid) = key_id(token)?;
    let jwk = find_key(keys, kid.as_deref()).ok_or_else(|| JwtError::UnknownKey(kid.clone()))?;
    let mismatch = |reason: String| JwtError::KeyMismatch {
        kid: kid.clone(),
        reason,
    };
    if let Some(key_algorithm) = jwk.common.key_algorithm
        && key_algorithm.to_string() != format!("{algorithm:?}")
    {
        return Err(mismatch(format!("the key is for {key_algorithm}")));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| mismatch(e.to_string()))?;
    let mut validation = Validation::new(algorithm);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_issuer(&[&rules.issuer]);
    validation.set_audience(&[&rules.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let claims = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &validation)
        .map_err(|e| JwtError::Invalid(e.to_string()))?
        .claims;
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|sub| !sub.is_empty())
        .ok_or_else(|| claim_error("sub", "must be a non-empty string"))?
        .to_owned();
    let (tenant, scopes) = tenant_and_scopes(&claims, &rules.tenant_claim, &rules.scopes_claim)?;
    let expires_at = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| claim_error("exp", "must be a whole number of seconds"))?;
    Ok(JwtCaller {
        subject,
        tenant,
        scopes,
        expires_at,
    })
}

/// The tenant (the string claim `tenant_claim`) and our scopes (`scopes_claim`: a
/// space-separated string as OAuth writes it, or a list; names that are not ours, like
/// `openid`, are ignored) of a token's claims: what a JWT and an OIDC ID token alike
/// stand for.
pub fn tenant_and_scopes(
    claims: &serde_json::Map<String, Value>,
    tenant_claim: &str,
    scopes_claim: &str,
) -> Result<(TenantName, Vec<Scope>), JwtError> {
    let tenant = claims
        .get(tenant_claim)
        .and_then(Value::as_str)
        .ok_or_else(|| claim_error(tenant_claim, "must be a string"))
        .and_then(|name| {
            TenantName::parse(name).map_err(|e| claim_error(tenant_claim, &e.to_string()))
        })?;
    let names: Vec<&str> = match claims.get(scopes_claim) {
        None => Vec::new(),
        Some(Value::String(list)) => list.split_whitespace().collect(),
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        Some(_) => return Err(claim_error(scopes_claim, "must be a string or a list")),
    };
    let mut scopes: Vec<Scope> = names
        .into_iter()
        .filter_map(|name| Scope::parse(name).ok())
        .collect();
    scopes.sort();
    scopes.dedup();
    Ok((tenant, scopes))
}

fn claim_error(claim: &str, reason: &str) -> JwtError {
    JwtError::Claim {
        claim: claim.to_owned(),
        reason: reason.to_owned(),
    }
}

/// The key `kid` names; without a `kid`, the set's only key.
fn find_key<'a>(keys: &'a JwkSet, kid: Option<&str>) -> Option<&'a Jwk> {
    match kid {
        Some(kid) => keys.find(kid),
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
}
