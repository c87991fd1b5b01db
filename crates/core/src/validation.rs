//! Validation problems, each tied to the place in the request body it concerns.

use std::fmt;

/// One problem with one field of a request body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// RFC 6901 JSON pointer to the offending value ("" is the whole body).
    pub pointer: String,
    /// What is wrong, in a sentence a client developer can act on.
    pub detail: String,
}

/// A JSON number without a fractional part, as JSON Schema's `integer` takes it: `60`
/// and `60.0` alike.
pub fn whole_number(value: &serde_json::Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        let number = value.as_f64()?;
        #[expect(
            clippy::cast_possible_truncation,
            reason = "only whole numbers within i64's range get here"
        )]
        (number.fract() == 0.0 && number.abs() < 9.0e15).then_some(number as i64)
    })
}

/// Every problem found in a request body, not just the first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValidationErrors {
    errors: Vec<FieldError>,
}

impl ValidationErrors {
    pub fn push(&mut self, pointer: impl Into<String>, detail: impl Into<String>) {
        self.errors.push(FieldError {
            pointer: pointer.into(),
            detail: detail.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    pub fn single(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        let mut errors = Self::default();
        errors.push(pointer, detail);
        errors
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, error) in self.errors.iter().enumerate() {
            if n > 0 {
                f.write_str("; ")?;
            }
            let pointer = if error.pointer.is_empty() {
                "(body)"
            } else {
                &error.pointer
            };
            write!(f, "{pointer}: {}", error.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Where a value sits in a request body: an RFC 6901 JSON pointer kept as a chain of
/// borrowed tokens and written out (escaped) only when an error names it. Request
/// parsing checks every value of every task twice (the API, then the worker that plans
/// it), and most values have nothing to report.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place<'a> {
    parent: Option<&'a Place<'a>>,
    token: Token<'a>,
}

#[derive(Debug, Clone, Copy)]
enum Token<'a> {
    Key(&'a str),
    Index(usize),
}

impl<'a> Place<'a> {
    /// A member of the body itself: `/name`.
    pub(crate) const fn top(key: &'a str) -> Place<'a> {
        Place {
            parent: None,
            token: Token::Key(key),
        }
    }

    pub(crate) fn key(&'a self, key: &'a str) -> Place<'a> {
        Place {
            parent: Some(self),
            token: Token::Key(key),
        }
    }

    pub(crate) fn index(&'a self, index: usize) -> Place<'a> {
        Place {
            parent: Some(self),
            token: Token::Index(index),
        }
    }

    fn write(&self, out: &mut String) {
        if let Some(parent) = self.parent {
            parent.write(out);
        }
        out.push('/');
        match self.token {
            Token::Key(key) => {
                for c in key.chars() {
                    match c {
                        '~' => out.push_str("~0"),
                        '/' => out.push_str("~1"),
                        c => out.push(c),
                    }
                }
            }
            Token::Index(index) => out.push_str(&index.to_string()),
        }
    }
}

impl From<&Place<'_>> for String {
    fn from(place: &Place<'_>) -> String {
        let mut pointer = String::new();
        place.write(&mut pointer);
        pointer
    }
}

impl From<Place<'_>> for String {
    fn from(place: Place<'_>) -> String {
        String::from(&place)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_tokens_are_escaped() {
        let payload = Place::top("payload");
        let item = payload.index(0);
        assert_eq!(String::from(item.key("a/b~c")), "/payload/0/a~1b~0c");
        assert_eq!(String::from(Place::top("~")), "/~0");
    }

    #[test]
    fn display_lists_every_error() {
        let mut errors = ValidationErrors::default();
        errors.push("", "must be an object");
        errors.push("/task_name", "is required");
        assert_eq!(
            errors.to_string(),
            "(body): must be an object; /task_name: is required"
        );
    }
}
