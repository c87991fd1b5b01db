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

/// Appends one reference token to a JSON pointer, escaping it as RFC 6901 requires.
pub(crate) fn pointer_push(base: &str, token: &str) -> String {
    let escaped = token.replace('~', "~0").replace('/', "~1");
    format!("{base}/{escaped}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_tokens_are_escaped() {
        assert_eq!(pointer_push("/payload/0", "a/b~c"), "/payload/0/a~1b~0c");
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
