//! The opaque cursor that pages through tasks, newest first.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

/// A position in the newest-first order of tasks: the last task of the previous page.
///
/// Keyset pagination on `(created_at, id)` rather than an offset: a page costs the same
/// wherever it is, and tasks inserted while a client pages neither shift nor repeat rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskCursor {
    pub created_at: DateTime<Utc>,
    pub id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the cursor is not one this API returned")]
pub struct InvalidCursor;

const VERSION: &str = "v1";

impl TaskCursor {
    pub fn encode(&self) -> String {
        let micros = self.created_at.timestamp_micros();
        URL_SAFE_NO_PAD.encode(format!("{VERSION}:{micros}:{}", self.id))
    }

    pub fn decode(cursor: &str) -> Result<Self, InvalidCursor> {
        let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| InvalidCursor)?;
        let text = String::from_utf8(bytes).map_err(|_| InvalidCursor)?;
        let mut parts = text.split(':');
        let (Some(VERSION), Some(micros), Some(id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(InvalidCursor);
        };
        let micros: i64 = micros.parse().map_err(|_| InvalidCursor)?;
        let id: i64 = id.parse().map_err(|_| InvalidCursor)?;
        let created_at = DateTime::from_timestamp_micros(micros).ok_or(InvalidCursor)?;
        Ok(Self { created_at, id })
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
        assert_eq!(TaskCursor::decode(&cursor.encode()), Ok(cursor));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "!!",
            "djE6eDoy",
            &URL_SAFE_NO_PAD.encode("v2:1:2"),
            &URL_SAFE_NO_PAD.encode("v1:1:2:3"),
        ] {
            assert_eq!(TaskCursor::decode(bad), Err(InvalidCursor), "{bad:?}");
        }
    }
}
