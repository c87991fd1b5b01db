//! A JSON document kept as the text it arrived in.

use std::fmt;

use serde_json::value::RawValue;

/// A JSON document as a service answered it: checked to be JSON, kept as its text.
///
/// A service's answer is only stored (PostgreSQL parses it again into `jsonb`), so
/// building it into a [`serde_json::Value`] (a map per object, a string per key) and
/// writing that back out was work for nothing, three times per task; and a `Value`
/// turns a number into an `f64`, so an amount with more digits than that holds was
/// stored altered. Equal when the texts are equal.
#[derive(Clone)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// The document in `bytes`, when they hold exactly one JSON value (with whitespace
    /// around it at most).
    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes).map(Self)
    }

    /// The document of a value (tests, and callers that made one).
    pub fn from_value(value: &serde_json::Value) -> Self {
        // A `Value` always serialises: its map keys are strings.
        Self(serde_json::value::to_raw_value(value).unwrap_or_else(|_| RawValue::NULL.to_owned()))
    }

    /// Its text.
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_keeps_its_text_and_its_digits() {
        let text = br#" {"amount": 12345678901234567890.123456789, "currency":"USD"} "#;
        let json = RawJson::parse(text).expect("JSON");
        assert_eq!(
            json.get(),
            r#"{"amount": 12345678901234567890.123456789, "currency":"USD"}"#
        );
        assert_eq!(json, RawJson::parse(text).expect("JSON"));
    }

    #[test]
    fn what_is_not_one_json_value_is_refused() {
        for bad in [&b""[..], b"{", b"{} {}", b"not json", b"\xff"] {
            assert!(RawJson::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_value_becomes_its_text() {
        let json = RawJson::from_value(&serde_json::json!({"ok": true}));
        assert_eq!(json.get(), r#"{"ok":true}"#);
    }
}
