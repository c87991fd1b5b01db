//! Ways the store can fail.

/// An error from the database layer. Callers decide what it means to their users.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("could not get a database connection from the pool")]
    Pool(#[from] diesel_async::pooled_connection::deadpool::PoolError),
    #[error("could not build the database pool")]
    PoolBuild(#[from] diesel_async::pooled_connection::deadpool::BuildError),
    #[error("could not connect to the database")]
    Connect(#[from] diesel::ConnectionError),
    #[error("database query failed")]
    Query(#[from] diesel::result::Error),
    #[error("applying migrations failed: {0}")]
    Migration(String),
    #[error(
        "the lease of partition {partition} moved on from epoch {epoch}; the write was refused"
    )]
    Fenced { partition: i32, epoch: i64 },
    #[error("stored row is inconsistent: {0}")]
    Corrupt(String),
    #[error("the database did not answer in time")]
    Timeout,
    /// A batched write failed because the database could not be reached; every caller
    /// whose write was in the batch gets this (the cause is logged once by the batcher).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// True when the database could not be reached at all (as opposed to a query that
    /// the database refused), so callers can answer "try again later".
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Pool(_)
                | StoreError::Connect(_)
                | StoreError::Timeout
                | StoreError::Unavailable(_)
                | StoreError::Query(diesel::result::Error::BrokenTransactionManager)
        )
    }
}
