//! JSON text bound as `jsonb` as it is, without a [`serde_json::Value`] in between.

use std::io::Write as _;

use diesel::pg::Pg;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Jsonb;

/// JSON text ([`orchestrator_core::RawJson`]) for a `jsonb` parameter: PostgreSQL parses
/// it, so it goes as it came (`jsonb`'s binary format is a version byte, then the text).
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonText<'a>(pub(crate) &'a str);

impl ToSql<Jsonb, Pg> for JsonText<'_> {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(&[1])?;
        out.write_all(self.0.as_bytes())?;
        Ok(IsNull::No)
    }
}
