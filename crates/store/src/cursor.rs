//! The cursor that pages through tasks newest first (and, the same way, the audit log).

use chrono::{DateTime, Utc};
use diesel::BoxableExpression;
use diesel::dsl::sql;
use diesel::pg::Pg;
use diesel::sql_types::{BigInt, Bool, Timestamptz};

/// A position in the newest-first order of tasks: the last task of the previous page.
///
/// Keyset pagination on `(created_at, id)` rather than an offset: a page costs the same
/// wherever it is, and tasks inserted while a client pages neither shift nor repeat rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskCursor {
    pub created_at: DateTime<Utc>,
    pub id: i64,
}

/// The rows on one side of `cursor` in `(time, id)` order, as a row comparison
/// (`(created_at, id) < (...)`), so that PostgreSQL starts an index scan at the cursor
/// instead of filtering its way there. `columns` names the pair, qualified, e.g.
/// `tasks.created_at, tasks.id`; `operator` is `<`, `>` or `>=`.
pub(crate) fn keyset<'a, T: 'a>(
    columns: &str,
    operator: &str,
    cursor: TaskCursor,
) -> Box<dyn BoxableExpression<T, Pg, SqlType = Bool> + 'a> {
    Box::new(
        sql::<Bool>(&format!("({columns}) {operator} ("))
            .bind::<Timestamptz, _>(cursor.created_at)
            .sql(", ")
            .bind::<BigInt, _>(cursor.id)
            .sql(")"),
    )
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the cursor is not one this API returned")]
pub struct InvalidCursor;

impl TaskCursor {
    /// What every cursor looks like, and every text that looks like it is a cursor (so
    /// the OpenAPI document can say exactly which values are accepted): the task's
    /// creation time in microseconds since 1970 and its row id, in decimal. 18 digits
    /// each keep both within range.
    pub const PATTERN: &str = "^[0-9]{1,18}\\.[0-9]{1,18}$";
    const MAX_DIGITS: usize = 18;

    pub fn encode(&self) -> String {
        format!("{}.{}", self.created_at.timestamp_micros(), self.id)
    }

    pub fn decode(cursor: &str) -> Result<Self, InvalidCursor> {
        let number = |digits: &str| {
            let valid = (1..=Self::MAX_DIGITS).contains(&digits.len())
                && digits.bytes().all(|b| b.is_ascii_digit());
            valid
                .then(|| digits.parse::<i64>().ok())
                .flatten()
                .ok_or(InvalidCursor)
        };
        let (micros, id) = cursor.split_once('.').ok_or(InvalidCursor)?;
        let created_at = DateTime::from_timestamp_micros(number(micros)?).ok_or(InvalidCursor)?;
        Ok(Self {
            created_at,
            id: number(id)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let cursor = TaskCursor {
            created_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).expect("valid"),
            id: 42,
        };
        assert_eq!(cursor.encode(), "1764000000123456.42");
        assert_eq!(TaskCursor::decode(&cursor.encode()), Ok(cursor));
    }

    #[test]
    fn any_text_of_the_pattern_is_a_cursor() {
        let largest = "999999999999999999.999999999999999999";
        assert!(TaskCursor::decode(largest).is_ok());
        assert!(TaskCursor::decode("0.0").is_ok());
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "!!",
            "1.",
            ".1",
            "1.2.3",
            "-1.2",
            "+1.2",
            "1.2 ",
            "1234567890123456789.1",
            "djE6MTc2NDAwMDAwMDEyMzQ1NjQyOjQy",
        ] {
            assert_eq!(TaskCursor::decode(bad), Err(InvalidCursor), "{bad:?}");
        }
    }
}
