//! Query parameters as the routes read them: each known one at most once, none holding
//! NUL (which the database cannot store or compare); unknown ones are ignored.
//!
//! An empty value (`?limit=`) is a value like any other: each parameter's rules decide,
//! and none of them takes it, so it is refused with 400 as the document declares.

use chrono::{DateTime, Utc};
use orchestrator_core::text;

use crate::error::ApiError;

pub(crate) struct Params(Vec<(&'static str, String)>);

impl Params {
    /// The `known` parameters among `pairs`.
    pub(crate) fn parse(
        pairs: Vec<(String, String)>,
        known: &[&'static str],
    ) -> Result<Self, ApiError> {
        let mut params = Vec::new();
        for (name, value) in pairs {
            let Some(&parameter) = known.iter().find(|known| **known == name) else {
                continue;
            };
            if params.iter().any(|(seen, _)| *seen == parameter) {
                return Err(ApiError::InvalidQuery {
                    parameter,
                    detail: "may be given only once".into(),
                });
            }
            if text::has_nul(&value) {
                return Err(ApiError::InvalidQuery {
                    parameter,
                    detail: text::NUL_DETAIL.into(),
                });
            }
            params.push((parameter, value));
        }
        Ok(Self(params))
    }

    /// The value of `name`, if it was given.
    pub(crate) fn take(&mut self, name: &str) -> Option<String> {
        let index = self.0.iter().position(|(seen, _)| *seen == name)?;
        Some(self.0.swap_remove(index).1)
    }

    /// The value of `name` as an RFC 3339 time (with `T` between date and time, as the
    /// RFC writes it), if it was given.
    pub(crate) fn take_time(
        &mut self,
        name: &'static str,
    ) -> Result<Option<DateTime<Utc>>, ApiError> {
        let Some(text) = self.take(name) else {
            return Ok(None);
        };
        let invalid = || ApiError::InvalidQuery {
            parameter: name,
            detail: "must be an RFC 3339 time, e.g. 2026-12-01T10:00:00Z".into(),
        };
        if !matches!(text.as_bytes().get(10), Some(b'T' | b't')) {
            return Err(invalid());
        }
        DateTime::parse_from_rfc3339(&text)
            .map(|at| Some(at.with_timezone(&Utc)))
            .map_err(|_| invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn takes_known_parameters_once() {
        let mut params =
            Params::parse(pairs(&[("a", "1"), ("x", "y"), ("b", "")]), &["a", "b"]).expect("ok");
        assert_eq!(params.take("a").as_deref(), Some("1"));
        assert_eq!(params.take("b").as_deref(), Some(""));
        assert_eq!(params.take("x"), None);
        let twice = Params::parse(pairs(&[("a", "1"), ("a", "2")]), &["a"]);
        assert!(matches!(
            twice,
            Err(ApiError::InvalidQuery { parameter: "a", .. })
        ));
    }

    #[test]
    fn refuses_nul_naming_the_parameter() {
        let nul = Params::parse(pairs(&[("q", "a\0b")]), &["q"]);
        assert!(matches!(
            nul,
            Err(ApiError::InvalidQuery { parameter: "q", .. })
        ));
    }
}
