//! Reads of rows, whatever their table: one row by its whole primary key,
//! one page of a partition resuming from the database's own paging state,
//! or every row of a statement. Each records its latency and outcome under
//! the statement's name, and says why it failed in a [`ReadError`] that the
//! query API maps to a status. What a caller does with a paging state (the
//! API's opaque cursor) is not this module's business.

use std::time::Instant;

use futures::TryStreamExt;
use scylla::client::session::Session;
use scylla::deserialize::row::DeserializeRow;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::response::{PagingState, PagingStateResponse};
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;

use super::{record_statement, StoreError};

/// Why a read failed. The API answers 503, 400 and 500 respectively.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The database did not answer, or answered with an error of its own.
    #[error("CQL read `{statement}` failed: {message}")]
    Unavailable {
        statement: &'static str,
        message: String,
    },
    /// The database refused the paging state the caller handed back.
    #[error("the database refused the paging state: {0}")]
    BadPagingState(String),
    /// A stored row does not have the shape galley writes.
    #[error("row of {table} could not be read: {message}")]
    Row {
        table: &'static str,
        message: String,
    },
}

impl ReadError {
    pub fn unavailable(statement: &'static str, err: impl std::fmt::Display) -> Self {
        ReadError::Unavailable {
            statement,
            message: err.to_string(),
        }
    }

    pub fn row(table: &'static str, err: impl std::fmt::Display) -> Self {
        ReadError::Row {
            table,
            message: err.to_string(),
        }
    }
}

/// A read made while applying events fails the batch, which is retried:
/// there every read error is a [`StoreError`].
impl From<ReadError> for StoreError {
    fn from(err: ReadError) -> Self {
        match err {
            ReadError::Row { table, message } => StoreError::Row { table, message },
            ReadError::Unavailable { statement, message } => StoreError::Query {
                statement: statement.to_string(),
                message,
            },
            ReadError::BadPagingState(message) => StoreError::Query {
                statement: "paged read".to_string(),
                message,
            },
        }
    }
}

/// One page of a paged read, and where the next one starts (`None`: the last page).
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Vec<u8>>,
}

/// Runs a statement that names a whole primary key and reads its row, if any.
/// `name` labels the statement's metrics; `table` names the table in errors.
pub async fn select_one<R>(
    session: &Session,
    name: &'static str,
    table: &'static str,
    statement: &PreparedStatement,
    values: impl SerializeRow,
) -> Result<Option<R>, ReadError>
where
    R: for<'f> DeserializeRow<'f, 'f>,
{
    let started = Instant::now();
    let result = session.execute_unpaged(statement, values).await;
    record_statement(name, started, result.is_ok());
    let rows = result
        .map_err(|e| ReadError::unavailable(name, e))?
        .into_rows_result()
        .map_err(|e| ReadError::unavailable(name, e))?;
    rows.maybe_first_row::<R>()
        .map_err(|e| ReadError::row(table, e))
}

/// Runs a statement for one page of `page_size` rows, resuming from
/// `resume` (raw paging state) when given.
pub async fn select_page<R>(
    session: &Session,
    name: &'static str,
    table: &'static str,
    statement: &PreparedStatement,
    values: impl SerializeRow,
    page_size: u32,
    resume: Option<Vec<u8>>,
) -> Result<Page<R>, ReadError>
where
    R: for<'f> DeserializeRow<'f, 'f>,
{
    // Page size is a property of the statement; a clone shares the
    // prepared id and metadata, so this costs no round trip.
    let mut statement = statement.clone();
    statement.set_page_size(i32::try_from(page_size.max(1)).unwrap_or(i32::MAX));
    let resumed = resume.is_some();
    let state = match resume {
        Some(bytes) => PagingState::new_from_raw_bytes(bytes),
        None => PagingState::start(),
    };
    let started = Instant::now();
    let result = session.execute_single_page(&statement, values, state).await;
    record_statement(name, started, result.is_ok());
    let (result, paging) = match result {
        Ok(ok) => ok,
        Err(e) if resumed && refused_request(&e) => {
            return Err(ReadError::BadPagingState(e.to_string()))
        }
        Err(e) => return Err(ReadError::unavailable(name, e)),
    };
    let rows = result
        .into_rows_result()
        .map_err(|e| ReadError::unavailable(name, e))?;
    let items = rows
        .rows::<R>()
        .map_err(|e| ReadError::row(table, e))?
        .collect::<Result<Vec<R>, _>>()
        .map_err(|e| ReadError::row(table, e))?;
    let next = match paging {
        PagingStateResponse::HasMorePages { state } => {
            state.as_bytes_slice().map(|bytes| bytes.to_vec())
        }
        PagingStateResponse::NoMorePages => None,
    };
    Ok(Page { items, next })
}

/// Every row a statement returns, fetched page by page.
pub async fn select_all<R>(
    session: &Session,
    name: &'static str,
    table: &'static str,
    statement: &PreparedStatement,
    values: impl SerializeRow,
) -> Result<Vec<R>, ReadError>
where
    R: for<'f, 'm> DeserializeRow<'f, 'm> + Send + 'static,
{
    let started = Instant::now();
    let pager = session.execute_iter(statement.clone(), values).await;
    let rows = match pager {
        Ok(pager) => match pager.rows_stream::<R>() {
            Ok(rows) => rows
                .try_collect::<Vec<R>>()
                .await
                .map_err(|e| ReadError::unavailable(name, e)),
            Err(e) => Err(ReadError::row(table, e)),
        },
        Err(e) => Err(ReadError::unavailable(name, e)),
    };
    record_statement(name, started, rows.is_ok());
    rows
}

/// Whether the database refused the request itself (rather than failing to
/// serve it): the answer to a paging state it cannot use.
fn refused_request(err: &ExecutionError) -> bool {
    matches!(
        err,
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::ProtocolError | DbError::Invalid | DbError::SyntaxError,
            _
        ))
    )
}
