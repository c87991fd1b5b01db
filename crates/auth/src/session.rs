//! Dashboard sessions: the cookie a browser gets in exchange for a credential.
//!
//! The cookie's value is 32 bytes (256 bits) from the operating system's random source,
//! base64url without padding (43 characters). The server stores only its SHA-256, which
//! is also how a presented cookie finds its session: whoever reads the sessions table
//! cannot present any of them. A hash lookup leaks nothing through timing that would
//! help an attacker, since the stored values are hashes of unguessable secrets.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

use crate::token::NoRandomness;

const SECRET_BYTES: usize = 32;
const SECRET_LEN: usize = 43;

/// A session just opened: the cookie value, handed to the browser once, and what is
/// stored of it.
#[derive(Debug)]
pub struct NewSession {
    cookie: SecretString,
    pub id_hash: [u8; 32],
}

impl NewSession {
    pub fn generate() -> Result<NewSession, NoRandomness> {
        let mut secret = [0u8; SECRET_BYTES];
        getrandom::fill(&mut secret).map_err(NoRandomness)?;
        let cookie = URL_SAFE_NO_PAD.encode(secret);
        Ok(NewSession {
            id_hash: Sha256::digest(cookie.as_bytes()).into(),
            cookie: SecretString::from(cookie),
        })
    }

    /// The cookie's value, for the `Set-Cookie` header that hands it out.
    pub fn cookie_value(&self) -> &str {
        self.cookie.expose_secret()
    }
}

/// The stored hash of a presented cookie value; `None` when it cannot be one of ours
/// (so that no lookup is made for it).
pub fn presented_hash(cookie: &str) -> Option<[u8; 32]> {
    let well_formed = cookie.len() == SECRET_LEN
        && URL_SAFE_NO_PAD
            .decode(cookie)
            .is_ok_and(|bytes| bytes.len() == SECRET_BYTES);
    well_formed.then(|| Sha256::digest(cookie.as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_finds_its_session_and_nothing_else_does() {
        let session = NewSession::generate().expect("randomness");
        let value = session.cookie_value().to_owned();
        assert_eq!(value.len(), SECRET_LEN);
        assert_eq!(presented_hash(&value), Some(session.id_hash));
        let other = NewSession::generate().expect("randomness");
        assert_ne!(other.id_hash, session.id_hash);
        for bad in [
            String::new(),
            value[..SECRET_LEN - 1].to_owned(),
            format!("{value}A"),
            format!("{}=", &value[..SECRET_LEN - 1]),
            format!("{}é", &value[..SECRET_LEN - 2]),
        ] {
            assert_eq!(presented_hash(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn debug_output_hides_the_cookie() {
        let session = NewSession::generate().expect("randomness");
        assert!(!format!("{session:?}").contains(session.cookie_value()));
    }
}
