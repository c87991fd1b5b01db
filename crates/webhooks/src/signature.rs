//! Signing deliveries the Standard Webhooks way, so that receivers verify them with the
//! published libraries: headers `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,<base64 of HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`,
//! where the key is the base64-decoded part of a `whsec_...` secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;

pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// The prefix of a secret's text form.
const PREFIX: &str = "whsec_";
/// Standard Webhooks asks for keys of 24 to 64 bytes.
const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// A signing secret. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct WebhookSecret {
    key: SecretSlice<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(redacted)")
    }
}

/// A secret that is not `whsec_` and 24 to 64 bytes in base64. Says nothing of the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a webhook secret is whsec_ followed by 24 to 64 bytes in base64")]
pub struct InvalidSecret;

impl WebhookSecret {
    pub fn parse(text: &str) -> Result<WebhookSecret, InvalidSecret> {
        let encoded = text.trim().strip_prefix(PREFIX).ok_or(InvalidSecret)?;
        let key = STANDARD.decode(encoded).map_err(|_| InvalidSecret)?;
        if !KEY_BYTES.contains(&key.len()) {
            return Err(InvalidSecret);
        }
        Ok(WebhookSecret { key: key.into() })
    }

    /// The `webhook-signature` value of a delivery.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(id, timestamp, body)))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
        // Any key length is a valid HMAC key: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the Standard Webhooks specification: this secret, id, timestamp
    // and body sign to this signature.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1_614_265_330;
    const SPEC_BODY: &str = r#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_specification_example() {
        let secret = WebhookSecret::parse(SPEC_SECRET).expect("valid");
        assert_eq!(
            secret.sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY.as_bytes()),
            SPEC_SIGNATURE
        );
    }

    #[test]
    fn refuses_secrets_of_the_wrong_form_and_never_shows_one() {
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_",
            "whsec_not base64!",
            "whsec_c2hvcnQ=",
        ] {
            assert_eq!(
                WebhookSecret::parse(bad).err(),
                Some(InvalidSecret),
                "{bad}"
            );
        }
        let secret = WebhookSecret::parse(SPEC_SECRET).expect("valid");
        assert!(!format!("{secret:?}").contains("MfKQ"));
    }
}
