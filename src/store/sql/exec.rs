//! Statements and rows shared by both backends: the SQL text and its `$N` parameters are the
//! same for SQLite and PostgreSQL (see [`super::super::Dialect`]); only where they run differs.
//! PostgreSQL statements go through sqlx's pooled async driver; SQLite statements run directly
//! on the thread that holds the connection (see [`super::sqlite`]), with no hop to another
//! thread per statement.

use sqlx::any::{AnyRow, AnyTypeInfoKind};
use sqlx::{AssertSqlSafe, Column, Row as _};
use std::cell::Cell;
use std::sync::Arc;

use super::super::{SqlValue, StoreError, StoreResult};
use super::sqlite;

/// What a transaction's statements run on.
pub(super) enum Conn {
    /// A sqlx transaction (PostgreSQL, or SQLite while migrating): committed explicitly,
    /// rolled back when dropped.
    SqlxTx(sqlx::Transaction<'static, sqlx::Any>),
    /// A pooled PostgreSQL connection in autocommit mode: each statement is its own snapshot.
    SqlxPooled(sqlx::pool::PoolConnection<sqlx::Any>),
    /// A SQLite connection held by this transaction (the writer, or one of the readers).
    Lite(sqlite::Session),
}

/// A statement and its parameters, numbered `$1`, `$2`... in the SQL text.
pub(super) struct Query {
    sql: String,
    params: Vec<SqlValue>,
    /// See [`q_positional`].
    positional: bool,
}

/// A statement without parameters yet.
pub(super) fn q(sql: String) -> Query {
    Query { sql, params: Vec::new(), positional: false }
}

/// A generated statement whose SQL text has `$` only in its placeholders `$1`..`$n`, none
/// missing. SQLite runs it with `?N` placeholders, which are slot N by definition, and binds its
/// values by position: a `$N` placeholder is a named one, found by a walk of the statement's
/// parameter list, so binding a multi-row INSERT by name costs the square of its parameters.
/// PostgreSQL runs the text as it is.
pub(super) fn q_positional(sql: String) -> Query {
    Query { sql, params: Vec::new(), positional: true }
}

/// A statement with these parameters appended.
pub(super) fn bind_all(mut query: Query, params: Vec<SqlValue>) -> Query {
    query.params.extend(params);
    query
}

impl From<String> for SqlValue {
    fn from(s: String) -> Self {
        SqlValue::Text(s)
    }
}

impl From<&str> for SqlValue {
    fn from(s: &str) -> Self {
        SqlValue::Text(s.to_string())
    }
}

impl From<i64> for SqlValue {
    fn from(i: i64) -> Self {
        SqlValue::Int(i)
    }
}

impl From<Option<String>> for SqlValue {
    fn from(s: Option<String>) -> Self {
        s.map_or(SqlValue::Null, SqlValue::Text)
    }
}

/// What a statement that returns no rows did.
pub(super) struct Done {
    rows: u64,
}

impl Done {
    /// Rows inserted, updated or deleted.
    pub(super) fn rows_affected(&self) -> u64 {
        self.rows
    }
}

impl Query {
    /// Appends the next parameter.
    pub(super) fn bind(mut self, v: impl Into<SqlValue>) -> Self {
        self.params.push(v.into());
        self
    }

    /// Runs a statement that returns no rows.
    pub(super) async fn execute(self, conn: &mut Conn) -> StoreResult<Done> {
        match conn {
            Conn::SqlxTx(tx) => pg_execute(self, tx).await,
            Conn::SqlxPooled(c) => pg_execute(self, c).await,
            Conn::Lite(s) if self.positional => Ok(Done { rows: s.execute_positional(&self.sql, &self.params)? }),
            Conn::Lite(s) => Ok(Done { rows: s.execute(&self.sql, &self.params)? }),
        }
    }

    /// Runs a query and returns every row.
    pub(super) async fn fetch_all(self, conn: &mut Conn) -> StoreResult<Vec<Row>> {
        match conn {
            Conn::SqlxTx(tx) => pg_fetch(self, tx).await,
            Conn::SqlxPooled(c) => pg_fetch(self, c).await,
            Conn::Lite(s) => s.query(&self.sql, &self.params),
        }
    }

    /// Runs a query that returns at most one row.
    pub(super) async fn fetch_optional(self, conn: &mut Conn) -> StoreResult<Option<Row>> {
        Ok(self.fetch_all(conn).await?.into_iter().next())
    }

    /// Runs a query that returns exactly one row (an aggregate).
    pub(super) async fn fetch_one(self, conn: &mut Conn) -> StoreResult<Row> {
        let what = self.sql.clone();
        self.fetch_optional(conn).await?.ok_or_else(|| StoreError::Corrupt(format!("no row from `{what}`")))
    }

    fn to_sqlx(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
        let mut query = sqlx::query(AssertSqlSafe(self.sql.as_str()));
        for p in &self.params {
            query = match p {
                SqlValue::Text(s) => query.bind(s.as_str()),
                SqlValue::Int(i) => query.bind(*i),
                SqlValue::Float(f) => query.bind(*f),
                SqlValue::Null => query.bind(Option::<String>::None),
            };
        }
        query
    }
}

async fn pg_execute(query: Query, conn: &mut sqlx::AnyConnection) -> StoreResult<Done> {
    let done = query.to_sqlx().execute(conn).await?;
    Ok(Done { rows: done.rows_affected() })
}

async fn pg_fetch(query: Query, conn: &mut sqlx::AnyConnection) -> StoreResult<Vec<Row>> {
    let rows = query.to_sqlx().fetch_all(conn).await?;
    let Some(first) = rows.first() else { return Ok(Vec::new()) };
    let columns: Arc<[String]> = first.columns().iter().map(|c| c.name().to_string()).collect();
    rows.iter().map(|r| Ok(Row::new(columns.clone(), pg_values(r)?))).collect()
}

/// The values of a PostgreSQL row, decoded by the type the driver reports for each column.
fn pg_values(row: &AnyRow) -> StoreResult<Vec<SqlValue>> {
    fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> SqlValue) -> SqlValue {
        v.map_or(SqlValue::Null, f)
    }
    (0..row.columns().len())
        .map(|i| {
            let kind = row.columns()[i].type_info().kind();
            Ok(match kind {
                AnyTypeInfoKind::Null => SqlValue::Null,
                AnyTypeInfoKind::Bool => opt(row.try_get::<Option<bool>, _>(i)?, |b| SqlValue::Int(b as i64)),
                AnyTypeInfoKind::SmallInt => opt(row.try_get::<Option<i16>, _>(i)?, |v| SqlValue::Int(v.into())),
                AnyTypeInfoKind::Integer => opt(row.try_get::<Option<i32>, _>(i)?, |v| SqlValue::Int(v.into())),
                AnyTypeInfoKind::BigInt => opt(row.try_get::<Option<i64>, _>(i)?, SqlValue::Int),
                AnyTypeInfoKind::Real => opt(row.try_get::<Option<f32>, _>(i)?, |v| SqlValue::Float(v.into())),
                AnyTypeInfoKind::Double => opt(row.try_get::<Option<f64>, _>(i)?, SqlValue::Float),
                AnyTypeInfoKind::Text => opt(row.try_get::<Option<String>, _>(i)?, SqlValue::Text),
                AnyTypeInfoKind::Blob => match row.try_get::<Option<Vec<u8>>, _>(i)? {
                    None => SqlValue::Null,
                    Some(bytes) => {
                        SqlValue::Text(String::from_utf8(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?)
                    }
                },
            })
        })
        .collect()
}

/// One row of a result, owned, the same for both backends.
///
/// Reading a column moves its value out, so a text value is not copied once more for every
/// read (in the profile of a page of 100 groups on PostgreSQL those copies were a few percent
/// of the server's time). A row is decoded once; reading a column twice is an error.
pub(super) struct Row {
    columns: Arc<[String]>,
    values: Vec<Cell<Option<SqlValue>>>,
}

impl Row {
    /// A row of SQLite's.
    pub(super) fn new(columns: Arc<[String]>, values: Vec<SqlValue>) -> Self {
        Self { columns, values: values.into_iter().map(|v| Cell::new(Some(v))).collect() }
    }

    /// The value of a column, by name or position, as `T`.
    pub(super) fn try_get<T: FromSqlValue, I: ColumnIndex>(&self, index: I) -> StoreResult<T> {
        let i = index.position(&self.columns)?;
        let cell = self.values.get(i).ok_or_else(|| StoreError::Corrupt(format!("no column {i} in a row")))?;
        let v = cell.take().ok_or_else(|| StoreError::Corrupt(format!("column {} read twice", self.columns[i])))?;
        T::from_value(v).map_err(|e| StoreError::Corrupt(format!("column {}: {e}", self.columns[i])))
    }
}

/// A column named or numbered.
pub(super) trait ColumnIndex {
    fn position(&self, columns: &[String]) -> StoreResult<usize>;
}

impl ColumnIndex for usize {
    fn position(&self, columns: &[String]) -> StoreResult<usize> {
        (*self < columns.len()).then_some(*self).ok_or_else(|| StoreError::Corrupt(format!("no column {self}")))
    }
}

impl ColumnIndex for &str {
    fn position(&self, columns: &[String]) -> StoreResult<usize> {
        columns.iter().position(|c| c == self).ok_or_else(|| StoreError::Corrupt(format!("no column '{self}'")))
    }
}

/// A Rust value read from a column.
pub(super) trait FromSqlValue: Sized {
    fn from_value(v: SqlValue) -> Result<Self, String>;
}

impl FromSqlValue for String {
    fn from_value(v: SqlValue) -> Result<Self, String> {
        match v {
            SqlValue::Text(s) => Ok(s),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}

impl FromSqlValue for i64 {
    fn from_value(v: SqlValue) -> Result<Self, String> {
        match v {
            SqlValue::Int(i) => Ok(i),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}

impl<T: FromSqlValue> FromSqlValue for Option<T> {
    fn from_value(v: SqlValue) -> Result<Self, String> {
        match v {
            SqlValue::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        let columns: Arc<[String]> = ["name", "version", "note"].iter().map(|c| c.to_string()).collect();
        Row::new(columns, vec![SqlValue::Text("ops".into()), SqlValue::Int(3), SqlValue::Null])
    }

    #[test]
    fn columns_are_read_by_name_or_position_with_their_types() {
        let r = row();
        assert_eq!(r.try_get::<String, _>("name").expect("name"), "ops");
        assert_eq!(r.try_get::<i64, _>(1).expect("version"), 3);
        assert_eq!(r.try_get::<Option<String>, _>("note").expect("note"), None);
    }

    #[test]
    fn a_second_read_of_a_column_is_an_error_not_a_missing_value() {
        let r = row();
        r.try_get::<Option<String>, _>("note").expect("first read");
        let again = r.try_get::<Option<String>, _>("note");
        assert!(matches!(&again, Err(StoreError::Corrupt(m)) if m.contains("read twice")), "{again:?}");
    }

    #[test]
    fn a_wrong_type_or_column_is_an_error() {
        let r = row();
        assert!(matches!(r.try_get::<i64, _>("name"), Err(StoreError::Corrupt(_))));
        assert!(matches!(r.try_get::<String, _>("missing"), Err(StoreError::Corrupt(_))));
        assert!(matches!(r.try_get::<String, _>(7), Err(StoreError::Corrupt(_))));
    }
}
