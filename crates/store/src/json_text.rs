//! JSON text bound as `jsonb`, and `jsonb` read as text, as it is, without a
//! [`serde_json::Value`] in between.

use std::io::Write as _;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Jsonb;
use orchestrator_core::RawJson;

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

/// A `jsonb` column read as its text ([`RawJson`]), for a reader that parses it into
/// types of its own rather than a [`serde_json::Value`].
#[derive(Debug, FromSqlRow)]
pub(crate) struct StoredJson(pub(crate) RawJson);

impl FromSql<Jsonb, Pg> for StoredJson {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        match value.as_bytes().split_first() {
            Some((1, text)) => Ok(Self(RawJson::parse(text)?)),
            _ => Err("jsonb in a binary format other than version 1".into()),
        }
    }
}
