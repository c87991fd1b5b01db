//! API tokens: `orch_<id>_<secret>`.
//!
//! - `orch_`: a fixed prefix, so that secret scanners can find leaked tokens.
//! - `<id>`: the token's id, 32 lower-case hexadecimal digits (a UUID). Public: it is
//!   what listings, logs and the audit log name, and how the stored row is found.
//! - `<secret>`: 32 bytes (256 bits) from the operating system's random source,
//!   base64url without padding (43 characters). Only its SHA-256 is stored; a
//!   presented token is checked by comparing hashes in constant time.
//!
//! The fixed lengths make the text unambiguous even though base64url may hold `_`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use uuid::Uuid;

pub const PREFIX: &str = "orch_";
const ID_LEN: usize = 32;
const SECRET_BYTES: usize = 32;
const SECRET_LEN: usize = 43;
/// The length of every token's text.
pub const TOKEN_LEN: usize = PREFIX.len() + ID_LEN + 1 + SECRET_LEN;

/// A token just made: its text, shown once, and what is stored of it.
#[derive(Debug)]
pub struct IssuedToken {
    pub id: Uuid,
    /// The whole token, for the one who asked for it ([`reveal`]); `Debug` redacts it.
    token: SecretString,
    /// SHA-256 of the secret part, as stored.
    pub secret_hash: [u8; 32],
}

/// Why a token could not be made.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random source failed: {0}")]
pub struct NoRandomness(pub(crate) getrandom::Error);

impl IssuedToken {
    /// A new token with a random id and secret.
    pub fn generate() -> Result<IssuedToken, NoRandomness> {
        let mut secret = [0u8; SECRET_BYTES];
        getrandom::fill(&mut secret).map_err(NoRandomness)?;
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(NoRandomness)?;
        let id = uuid::Builder::from_random_bytes(id).into_uuid();
        let secret = URL_SAFE_NO_PAD.encode(secret);
        let token = format!("{PREFIX}{}_{secret}", id.simple());
        Ok(IssuedToken {
            id,
            secret_hash: hash(&secret),
            token: SecretString::from(token),
        })
    }
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A token as a client presented it: its id, and the hash of its secret to compare with
/// the stored one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedToken {
    pub id: Uuid,
    secret_hash: [u8; 32],
}

/// Text that is not a token of ours. Says nothing more, to the client or the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an API token")]
pub struct MalformedToken;

impl PresentedToken {
    pub fn parse(text: &str) -> Result<PresentedToken, MalformedToken> {
        if text.len() != TOKEN_LEN || !text.is_ascii() {
            return Err(MalformedToken);
        }
        let rest = text.strip_prefix(PREFIX).ok_or(MalformedToken)?;
        let (id, rest) = rest.split_at(ID_LEN);
        let secret = rest.strip_prefix('_').ok_or(MalformedToken)?;
        let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if !id.bytes().all(hex) {
            return Err(MalformedToken);
        }
        let id = Uuid::try_parse(id).map_err(|_| MalformedToken)?;
        let decoded = URL_SAFE_NO_PAD.decode(secret).map_err(|_| MalformedToken)?;
        if decoded.len() != SECRET_BYTES {
            return Err(MalformedToken);
        }
        Ok(PresentedToken {
            id,
            secret_hash: hash(secret),
        })
    }

    /// Whether this is the token whose secret hashes to `stored`, compared in constant
    /// time.
    pub fn matches(&self, stored: &[u8]) -> bool {
        stored.len() == self.secret_hash.len() && bool::from(self.secret_hash.ct_eq(stored))
    }
}

/// The text of an issued token, for the one place that hands it out (the `token create`
/// command).
pub fn reveal(token: &IssuedToken) -> &str {
    token.token.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_token_parses_back_and_matches_its_hash_only() {
        let issued = IssuedToken::generate().expect("randomness");
        let text = reveal(&issued);
        assert_eq!(text.len(), TOKEN_LEN);
        assert!(text.starts_with("orch_"));
        let presented = PresentedToken::parse(text).expect("parses");
        assert_eq!(presented.id, issued.id);
        assert!(presented.matches(&issued.secret_hash));
        let other = IssuedToken::generate().expect("randomness");
        assert_ne!(other.id, issued.id);
        assert!(!presented.matches(&other.secret_hash));
        assert!(!presented.matches(&issued.secret_hash[..31]));
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let issued = IssuedToken::generate().expect("randomness");
        let secret_part = &reveal(&issued)[PREFIX.len() + ID_LEN + 1..];
        assert!(!format!("{issued:?}").contains(secret_part));
    }

    #[test]
    fn anything_else_is_malformed() {
        let issued = IssuedToken::generate().expect("randomness");
        let text = reveal(&issued).to_owned();
        let upper = text.to_ascii_uppercase();
        let cases = [
            String::new(),
            "orch_".into(),
            text[..TOKEN_LEN - 1].to_owned(),
            format!("{text}A"),
            text.replacen("orch_", "orcx_", 1),
            upper,
            format!(
                "{}-{}",
                &text[..PREFIX.len() + ID_LEN],
                &text[PREFIX.len() + ID_LEN + 1..]
            ),
            format!("{}é", &text[..TOKEN_LEN - 2]),
        ];
        for case in cases {
            assert_eq!(
                PresentedToken::parse(&case),
                Err(MalformedToken),
                "{case:?}"
            );
        }
    }
}
