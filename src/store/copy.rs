//! `scim-operator migrate`: copies a SQLite database into an empty PostgreSQL database, in
//! one PostgreSQL transaction, table by table in dependency order, then checks the counts.

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, AssertSqlSafe, Row};

use super::{StoreError, StoreResult};

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
        ],
    ),
    ("team_members", &[("team_id", Text), ("user_id", Text)]),
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
    ("user_roles", &[("user_id", Text), ("role_id", Text), ("source", Text)]),
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
        ],
    ),
];

/// Rows copied per table.
pub type CopyReport = Vec<(String, u64)>;

async fn count(pool: &AnyPool, table: &str) -> StoreResult<i64> {
    let row = sqlx::query(AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"))).fetch_one(pool).await?;
    Ok(row.try_get(0)?)
}

/// Copies `from` (a SQLite path or URL) into `to` (a PostgreSQL URL). Both are migrated first.
/// Refuses a target that already holds users, teams or keys.
pub async fn copy_sqlite_to_postgres(from: &str, to: &str) -> StoreResult<CopyReport> {
    let (from_url, from_dialect) = super::sql::database_url(from);
    let (to_url, to_dialect) = super::sql::database_url(to);
    if from_dialect != super::Dialect::Sqlite || to_dialect != super::Dialect::Postgres {
        return Err(StoreError::Unsupported("migrate copies a SQLite database into PostgreSQL".into()));
    }
    // Opening runs the migrations on both sides.
    super::SqlStore::open(from).await?;
    super::SqlStore::open(to).await?;
    let src = AnyPoolOptions::new().max_connections(1).connect(&from_url).await?;
    let dst = AnyPoolOptions::new().max_connections(1).connect(&to_url).await?;
    for table in ["users", "teams", "api_keys", "role_mappings"] {
        if count(&dst, table).await? > 0 {
            return Err(StoreError::Conflict(format!(
                "the target database already has {table}; migrate into an empty database"
            )));
        }
    }
    let mut tx = dst.begin().await?;
    let mut report = Vec::new();
    for (table, cols) in TABLES {
        let names: Vec<&str> = cols.iter().map(|(n, _)| *n).collect();
        let order =
            if ["team_members", "settings", "user_roles", "role_mapping_roles", "role_mapping_teams"].contains(table) {
                "1"
            } else {
                "seq"
            };
        let rows = sqlx::query(AssertSqlSafe(format!("SELECT {} FROM {table} ORDER BY {order}", names.join(", "))))
            .fetch_all(&src)
            .await?;
        let placeholders: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, (_, c))| match c {
                Json => format!("${}::jsonb", i + 1),
                _ => format!("${}", i + 1),
            })
            .collect();
        // Built-in roles and the default-role setting exist in every new database already.
        let conflict = match *table {
            "roles" => " ON CONFLICT (id) DO NOTHING",
            "settings" => " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            _ => "",
        };
        let sql = format!("INSERT INTO {table} ({}) VALUES ({}){conflict}", names.join(", "), placeholders.join(", "));
        let mut copied = 0u64;
        for row in &rows {
            let mut q = sqlx::query(AssertSqlSafe(sql.clone()));
            for (i, (_, c)) in cols.iter().enumerate() {
                q = match c {
                    Int => q.bind(row.try_get::<Option<i64>, _>(i)?),
                    Text | Json => q.bind(row.try_get::<Option<String>, _>(i)?),
                };
            }
            copied += q.execute(&mut *tx).await?.rows_affected();
        }
        report.push((table.to_string(), copied));
    }
    tx.commit().await?;
    // The copy must be whole: same number of rows on both sides.
    for (table, _) in TABLES {
        let (a, b) = (count(&src, table).await?, count(&dst, table).await?);
        if a != b {
            return Err(StoreError::Corrupt(format!(
                "{table}: {a} rows in SQLite but {b} in PostgreSQL after the copy"
            )));
        }
    }
    Ok(report)
}
