//! `scim-operator migrate`: copies a SQLite database into an empty PostgreSQL database.
//!
//! The source is read inside one SQLite read transaction (a consistent snapshot, even while a
//! server still writes to it); the target is written inside one PostgreSQL transaction, table by
//! table in dependency order, and the row counts of both sides are compared before that
//! transaction commits: the copy is whole or nothing is written.

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AssertSqlSafe, Row};
use std::time::{Duration, Instant};

use super::{Store, StoreError, StoreResult};

/// Column kinds, for decoding from SQLite and casting into PostgreSQL.
#[derive(Clone, Copy)]
enum Col {
    Text,
    Int,
    Json,
}

use Col::{Int, Json, Text};

/// Tables in the order foreign keys need, with their columns (`seq` is renumbered in order).
const TABLES: &[(&str, &[(&str, Col)])] = &[
    (
        "users",
        &[
            ("id", Text),
            ("user_name", Text),
            ("user_name_key", Text),
            ("external_id", Text),
            ("display_name", Text),
            ("active", Int),
            ("data", Json),
            ("created", Text),
            ("last_modified", Text),
            ("version", Int),
            ("deleted_at", Text),
            ("data_folded", Json),
        ],
    ),
    (
        "teams",
        &[
            ("id", Text),
            ("name", Text),
            ("handle", Text),
            ("scim_id", Text),
            ("external_id", Text),
            ("data", Json),
            ("created", Text),
            ("last_modified", Text),
            ("version", Int),
            ("name_key", Text),
            ("data_folded", Json),
            ("declared_by", Text),
        ],
    ),
    ("team_members", &[("team_id", Text), ("user_id", Text), ("added_at", Text), ("added_by", Text)]),
    (
        "api_keys",
        &[
            ("id", Text),
            ("name", Text),
            ("owner_kind", Text),
            ("owner_user_id", Text),
            ("secret_hash", Text),
            ("hint", Text),
            ("permissions", Text),
            ("created", Text),
            ("revoked_at", Text),
            ("revoked_reason", Text),
            ("last_used_at", Text),
        ],
    ),
    (
        "audit_events",
        &[
            ("id", Text),
            ("time", Text),
            ("actor", Text),
            ("action", Text),
            ("target_type", Text),
            ("target_id", Text),
            ("request_id", Text),
            ("details", Json),
        ],
    ),
    (
        "roles",
        &[("id", Text), ("name", Text), ("name_key", Text), ("builtin", Int), ("description", Text), ("created", Text)],
    ),
    ("settings", &[("name", Text), ("value", Text)]),
    (
        "user_roles",
        &[("user_id", Text), ("role_id", Text), ("source", Text), ("granted_at", Text), ("granted_by", Text)],
    ),
    (
        "role_mappings",
        &[
            ("id", Text),
            ("display_name", Text),
            ("external_id", Text),
            ("data", Json),
            ("created", Text),
            ("last_modified", Text),
            ("version", Int),
        ],
    ),
    ("role_mapping_roles", &[("mapping_id", Text), ("role_id", Text)]),
    ("role_mapping_teams", &[("mapping_id", Text), ("team_name", Text)]),
    (
        "invitations",
        &[
            ("id", Text),
            ("user_id", Text),
            ("token_hash", Text),
            ("email", Text),
            ("created", Text),
            ("expires_at", Text),
            ("status", Text),
            ("status_at", Text),
        ],
    ),
    (
        "outbox",
        &[
            ("id", Text),
            ("kind", Text),
            ("recipient", Text),
            ("subject", Text),
            ("body", Text),
            ("created", Text),
            ("attempts", Int),
            ("last_error", Text),
            ("sent_at", Text),
            ("invitation_id", Text),
            ("link", Text),
            ("next_attempt_at", Text),
            ("claim", Text),
            ("claimed_until", Text),
            ("parked_at", Text),
            ("cancelled_at", Text),
        ],
    ),
];

/// Rows per multi-row INSERT (well below PostgreSQL's limit of 65535 bind parameters).
const BATCH_ROWS: usize = 500;

/// Tables whose rows a fresh database does not have: a target holding any of them is not empty.
const USER_DATA: &[(&str, &str)] = &[
    ("users", "1 = 1"),
    ("teams", "1 = 1"),
    ("api_keys", "1 = 1"),
    ("role_mappings", "1 = 1"),
    ("roles", "builtin = 0"),
    ("invitations", "1 = 1"),
    ("outbox", "1 = 1"),
    ("audit_events", "1 = 1"),
];

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// Rows now in each table of the target (equal to the source's), in copy order.
    pub tables: Vec<(String, u64)>,
    /// Wall-clock time of the copy.
    pub elapsed: Duration,
}

impl CopyReport {
    /// Rows in all tables together.
    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

async fn count(conn: &mut AnyConnection, table: &str, filter: &str) -> StoreResult<u64> {
    let row =
        sqlx::query(AssertSqlSafe(format!("SELECT COUNT(*) FROM {table} WHERE {filter}"))).fetch_one(conn).await?;
    Ok(row.try_get::<i64, _>(0)?.max(0) as u64)
}

/// The SQLite file behind a `--from` argument, when it names one.
pub(crate) fn sqlite_file(arg: &str) -> Option<&str> {
    let path = arg.strip_prefix("sqlite://").or_else(|| arg.strip_prefix("sqlite:")).unwrap_or(arg);
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// Copies `from` (a SQLite path or URL) into `to` (a PostgreSQL URL). The source is migrated to
/// the current schema first (as `serve` would); the target is created and migrated. Refuses a
/// target that already holds users, teams, keys, role mappings, custom roles, invitations,
/// messages or audit events: ids, versions (ETags) and the audit trail are copied as they are and
/// must not mix with other data.
pub async fn copy_sqlite_to_postgres(from: &str, to: &str) -> StoreResult<CopyReport> {
    let started = Instant::now();
    let (from_url, from_dialect) = super::sql::database_url(from);
    let (to_url, to_dialect) = super::sql::database_url(to);
    if from_dialect != super::Dialect::Sqlite || to_dialect != super::Dialect::Postgres {
        return Err(StoreError::Unsupported(
            "migrate copies a SQLite database (--from FILE) into PostgreSQL (--to postgres://...)".into(),
        ));
    }
    if let Some(file) = sqlite_file(from)
        && !std::path::Path::new(file).is_file()
    {
        return Err(StoreError::Unsupported(format!("the SQLite database {file} does not exist")));
    }
    // Opening runs the migrations on both sides.
    super::SqlStore::open(from).await?.close().await;
    super::SqlStore::open(to).await?.close().await;
    let (to_url, _) = super::sql::pool_settings(&to_url)?;
    let src = AnyPoolOptions::new().max_connections(1).connect(&from_url).await?;
    let dst = AnyPoolOptions::new().max_connections(1).connect(&to_url).await?;

    let mut read = src.begin().await?;
    let mut write = dst.begin().await?;
    // Nobody may add data to the target while we check that it is empty and fill it.
    let names: Vec<&str> = TABLES.iter().map(|(t, _)| *t).collect();
    sqlx::query(AssertSqlSafe(format!("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE", names.join(", "))))
        .execute(&mut *write)
        .await?;
    let mut found = Vec::new();
    for (table, filter) in USER_DATA {
        let n = count(&mut write, table, filter).await?;
        if n > 0 {
            found.push(format!("{n} {}", if *table == "roles" { "custom roles" } else { table }));
        }
    }
    if !found.is_empty() {
        return Err(StoreError::Conflict(format!(
            "the target database is not empty (it holds {}); migrate copies ids, versions and the audit trail \
             exactly and will not merge them into existing data: point --to at a new, empty database",
            found.join(", ")
        )));
    }

    let mut tables = Vec::new();
    for (table, cols) in TABLES {
        let names: Vec<&str> = cols.iter().map(|(n, _)| *n).collect();
        // A column this version does not know would be silently dropped: refuse instead.
        let source_cols = sqlx::query(AssertSqlSafe(format!("SELECT name FROM pragma_table_info('{table}')")))
            .fetch_all(&mut *read)
            .await?;
        for c in &source_cols {
            let c: String = c.try_get(0)?;
            if c != "seq" && !names.contains(&c.as_str()) {
                return Err(StoreError::Unsupported(format!(
                    "the SQLite table {table} has a column {c} that this version of migrate does not copy"
                )));
            }
        }
        // Rows keep their order (and so their new `seq`s keep the old order: audit trail, lists).
        let order =
            if ["team_members", "settings", "user_roles", "role_mapping_roles", "role_mapping_teams"].contains(table) {
                names.join(", ")
            } else {
                "seq".to_string()
            };
        let rows = sqlx::query(AssertSqlSafe(format!("SELECT {} FROM {table} ORDER BY {order}", names.join(", "))))
            .fetch_all(&mut *read)
            .await?;
        // Built-in roles and the default-role setting exist in every new database already.
        let conflict = match *table {
            "roles" => " ON CONFLICT (id) DO NOTHING",
            "settings" => " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            _ => "",
        };
        for batch in rows.chunks(BATCH_ROWS) {
            insert_batch(&mut write, table, cols, batch, conflict).await?;
        }
        // The copy must be whole: same number of rows on both sides, checked before commit.
        let (a, b) = (count(&mut read, table, "1 = 1").await?, count(&mut write, table, "1 = 1").await?);
        if a != b {
            return Err(StoreError::Corrupt(format!(
                "{table}: {a} rows in SQLite but {b} in PostgreSQL after the copy; nothing was committed"
            )));
        }
        tables.push((table.to_string(), b));
    }
    write.commit().await?;
    drop(read);
    src.close().await;
    dst.close().await;
    Ok(CopyReport { tables, elapsed: started.elapsed() })
}

async fn insert_batch(
    conn: &mut AnyConnection,
    table: &str,
    cols: &[(&str, Col)],
    rows: &[AnyRow],
    conflict: &str,
) -> StoreResult<()> {
    let names: Vec<&str> = cols.iter().map(|(n, _)| *n).collect();
    let mut values = Vec::with_capacity(rows.len());
    for r in 0..rows.len() {
        let ph: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, (_, c))| {
                let n = r * cols.len() + i + 1;
                match c {
                    Json => format!("${n}::jsonb"),
                    _ => format!("${n}"),
                }
            })
            .collect();
        values.push(format!("({})", ph.join(", ")));
    }
    let sql = format!("INSERT INTO {table} ({}) VALUES {}{conflict}", names.join(", "), values.join(", "));
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for row in rows {
        for (i, (name, c)) in cols.iter().enumerate() {
            q = match c {
                Int => q.bind(row.try_get::<Option<i64>, _>(i)?),
                Text => q.bind(row.try_get::<Option<String>, _>(i)?),
                Json => {
                    let text: Option<String> = row.try_get(i)?;
                    if let Some(t) = &text
                        && serde_json::from_str::<serde_json::Value>(t).is_err()
                    {
                        return Err(StoreError::Corrupt(format!("{table}.{name} holds a value that is not JSON")));
                    }
                    q.bind(text)
                }
            };
        }
    }
    q.execute(conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_files_are_found_behind_urls() {
        assert_eq!(sqlite_file("/var/lib/scim.db"), Some("/var/lib/scim.db"));
        assert_eq!(sqlite_file("sqlite:///var/lib/scim.db?mode=rwc"), Some("/var/lib/scim.db"));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
    }

    #[test]
    fn every_table_of_the_schema_is_copied() {
        let schema = include_str!("../../migrations/sqlite/0001_init.sql");
        let created: Vec<&str> = schema
            .lines()
            .filter_map(|l| l.strip_prefix("CREATE TABLE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let copied: Vec<&str> = TABLES.iter().map(|(t, _)| *t).collect();
        assert_eq!(created, copied, "a table was added to the schema but not to migrate's list");
    }
}
