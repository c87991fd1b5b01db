//! Hand-written SQL that PostgreSQL parses and plans once per connection.
//!
//! `diesel::sql_query` marks its statement as never to be cached, so PostgreSQL parses,
//! analyses and plans it again at every execution. For the lifecycle's batch
//! statements (an `UPDATE ... FROM unnest(...)` of a batch's outcomes, the webhook
//! outbox's insert with its body) that is up to half a millisecond of PostgreSQL's
//! CPU per statement, run for every batch. [`prepared`] takes a fixed text instead,
//! and diesel's statement cache keeps it prepared on each connection (keyed by its
//! text, like the query builder's own statements).
//!
//! The text numbers its parameters `$1`, `$2`, ... in the order of the [`Prepared::bind`]
//! calls, each used once, in that order along the text (the statement is written out
//! again with the same numbers, so diesel's placeholders and ours agree); a text that
//! does not is refused when the statement is built.

use std::marker::PhantomData;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::{Error, QueryResult};
use diesel::serialize::ToSql;
use diesel::sql_types::{HasSqlType, Untyped};

/// A statement with a fixed text, prepared once per connection. Load rows with
/// `QueryableByName`, as from `diesel::sql_query`.
pub(crate) fn prepared(sql: &'static str) -> Prepared<()> {
    Prepared { sql, binds: () }
}

/// A statement of [`prepared`] and the values bound so far.
#[derive(Debug, Clone)]
#[must_use = "a statement does nothing until it is executed or loaded"]
pub(crate) struct Prepared<B> {
    sql: &'static str,
    binds: B,
}

/// One value bound as SQL type `ST`.
#[derive(Debug, Clone)]
pub(crate) struct Bind<ST, V> {
    value: V,
    sql_type: PhantomData<ST>,
}

impl<B> Prepared<B> {
    /// Binds the next parameter (`$1` first) as SQL type `ST`.
    pub(crate) fn bind<ST, V>(self, value: V) -> Prepared<(B, Bind<ST, V>)> {
        Prepared {
            sql: self.sql,
            binds: (
                self.binds,
                Bind {
                    value,
                    sql_type: PhantomData,
                },
            ),
        }
    }
}

/// The bound values, pushed in order, each after the text before its placeholder.
pub(crate) trait Binds {
    /// Pushes these values' placeholders and the text before each; answers how many.
    fn push<'b>(&'b self, text: &mut Text, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<usize>;
}

impl Binds for () {
    fn push<'b>(&'b self, _: &mut Text, _: &mut AstPass<'_, 'b, Pg>) -> QueryResult<usize> {
        Ok(0)
    }
}

impl<B, ST, V> Binds for (B, Bind<ST, V>)
where
    B: Binds,
    Pg: HasSqlType<ST>,
    V: ToSql<ST, Pg>,
{
    fn push<'b>(&'b self, text: &mut Text, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<usize> {
        let before = self.0.push(text, out)?;
        let number = before + 1;
        out.push_sql(text.up_to_placeholder(number)?);
        out.push_bind_param::<ST, V>(&self.1.value)?;
        Ok(number)
    }
}

/// The statement's text, consumed from placeholder to placeholder.
pub(crate) struct Text {
    rest: &'static str,
}

impl Text {
    /// The text before placeholder `$number`, which must come next; skips the
    /// placeholder (diesel writes its own, with the same number).
    fn up_to_placeholder(&mut self, number: usize) -> QueryResult<&'static str> {
        match next_placeholder(self.rest) {
            Some((at, end, found)) if found == number => {
                let before = &self.rest[..at];
                self.rest = &self.rest[end..];
                Ok(before)
            }
            _ => Err(misnumbered(number)),
        }
    }

    /// What follows the last placeholder, which must hold none.
    fn rest(&self, count: usize) -> QueryResult<&'static str> {
        match next_placeholder(self.rest) {
            Some(_) => Err(misnumbered(count + 1)),
            None => Ok(self.rest),
        }
    }
}

/// The first `$<digits>` in `text`: where it starts, where it ends, and its number. A
/// `$` without digits is text (none of ours has one).
fn next_placeholder(text: &str) -> Option<(usize, usize, usize)> {
    let bytes = text.as_bytes();
    (0..bytes.len()).find_map(|at| {
        if bytes[at] != b'$' {
            return None;
        }
        let digits = bytes[at + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let end = at + 1 + digits;
        // Too many digits to be a number is no placeholder of ours either.
        text[at + 1..end]
            .parse()
            .ok()
            .map(|number| (at, end, number))
    })
}

fn misnumbered(number: usize) -> Error {
    Error::QueryBuilderError(
        format!(
            "a prepared statement's placeholders must be $1, $2, ... in the order of its \
             binds, each once: expected ${number} next"
        )
        .into(),
    )
}

impl<B: Binds> QueryFragment<Pg> for Prepared<B> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let mut text = Text { rest: self.sql };
        let count = self.binds.push(&mut text, &mut out)?;
        out.push_sql(text.rest(count)?);
        Ok(())
    }
}

impl<B> QueryId for Prepared<B> {
    // No static id: diesel's cache keys the statement by its text and bind types.
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<B> Query for Prepared<B> {
    type SqlType = Untyped;
}

#[cfg(test)]
mod tests {
    use diesel::debug_query;
    use diesel::sql_types::{Array, Integer, Text as SqlText};

    use super::*;

    #[test]
    fn the_text_is_written_with_diesels_placeholders_in_order() {
        let query = prepared("SELECT $1::int4 + 1 WHERE $2 = 'a$'")
            .bind::<Integer, _>(4)
            .bind::<SqlText, _>("b");
        let shown = debug_query::<Pg, _>(&query).to_string();
        assert!(
            shown.starts_with("SELECT $1::int4 + 1 WHERE $2 = 'a$'"),
            "{shown}"
        );
        let with_array =
            prepared("SELECT * FROM unnest($1::int4[])").bind::<Array<Integer>, _>(vec![1, 2]);
        let shown = debug_query::<Pg, _>(&with_array).to_string();
        assert!(
            shown.starts_with("SELECT * FROM unnest($1::int4[])"),
            "{shown}"
        );
    }

    #[test]
    fn placeholders_out_of_order_missing_or_extra_are_refused() {
        use diesel::query_builder::QueryBuilder;
        fn build(query: &impl QueryFragment<Pg>) -> QueryResult<String> {
            let mut builder = diesel::pg::PgQueryBuilder::default();
            query.to_sql(&mut builder, &Pg)?;
            Ok(builder.finish())
        }
        let two =
            |sql: &'static str| build(&prepared(sql).bind::<Integer, _>(1).bind::<Integer, _>(2));
        assert!(two("SELECT $2, $1").is_err(), "out of order");
        assert!(two("SELECT $1").is_err(), "a bind without a placeholder");
        assert!(
            two("SELECT $1, $2, $3").is_err(),
            "a placeholder without a bind"
        );
        let twice = prepared("SELECT $1, $1").bind::<Integer, _>(1);
        assert!(build(&twice).is_err(), "a placeholder used twice");
        assert_eq!(two("SELECT $1, $2").expect("builds"), "SELECT $1, $2");
    }
}
