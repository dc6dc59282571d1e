//! [`Store`] implementation: one body of SQL for SQLite and PostgreSQL, with the few dialect
//! differences in [`Dialect`]. PostgreSQL runs it through sqlx's async pool; SQLite through
//! the embedded engine of [`sqlite`] (rusqlite: statements on the calling thread, one writer
//! with group commit, read-only readers). Each area's SQL is a module of its own.

mod audit;
mod console;
mod exec;
mod invitations;
mod keys;
mod requests;
mod roles;
mod sqlite;
mod teams;
mod users;

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, AssertSqlSafe, Executor};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::filter_sql::{ResourceTable, SqlValue, sort_expression, translate};
use super::*;
use crate::scim::fold::{fold, fold_group_document, fold_user_document};
use crate::scim::list::SortOrder;
use exec::{Conn, Row, bind_all, q, q_positional};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Largest number of bind parameters put in one IN list or multi-row insert.
const CHUNK: usize = 400;

/// Where the store's transactions run.
enum Backend {
    /// PostgreSQL: sqlx's pool; writers run in parallel, each on its own connection.
    Postgres(AnyPool),
    /// SQLite: the embedded engine.
    Sqlite(Arc<sqlite::Engine>),
}

/// The SQL store.
pub struct SqlStore {
    backend: Backend,
    dialect: Dialect,
    /// See [`Store::key_generation`].
    key_generation: Arc<AtomicU64>,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: never print it.
        f.debug_struct("SqlStore").field("dialect", &self.dialect).finish_non_exhaustive()
    }
}

/// Turns a `--db` argument into a connection URL and its dialect.
pub(crate) fn database_url(arg: &str) -> (String, Dialect) {
    if arg.starts_with("postgres://") || arg.starts_with("postgresql://") {
        (arg.to_string(), Dialect::Postgres)
    } else if arg.starts_with("sqlite:") {
        let url = if arg.contains('?') { arg.to_string() } else { format!("{arg}?mode=rwc") };
        (url, Dialect::Sqlite)
    } else {
        (format!("sqlite://{arg}?mode=rwc"), Dialect::Sqlite)
    }
}

/// Connection-pool and session settings for PostgreSQL, read from the URL's query string
/// (`?max_connections=32&statement_timeout=15s&acquire_timeout=10s`) and removed from it before
/// the URL reaches the driver. SQLite ignores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Largest number of connections one process keeps open.
    pub max_connections: u32,
    /// How long a request waits for a free connection.
    pub acquire_timeout: Duration,
    /// Longest a single statement may run (lock waits included) before PostgreSQL cancels it.
    pub statement_timeout: Duration,
    /// Longest a connection may sit inside a transaction doing nothing before PostgreSQL ends it
    /// (releases the locks of a stuck client).
    pub idle_in_transaction_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(15),
            idle_in_transaction_timeout: Duration::from_secs(60),
        }
    }
}

/// Reads `10s`, `1500ms`, `2m` or a bare number of seconds.
fn parse_duration(key: &str, value: &str) -> StoreResult<Duration> {
    let bad =
        || StoreError::Unsupported(format!("database URL parameter {key}={value}: expected e.g. 15s, 500ms or 2m"));
    let (digits, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => value.split_at(i),
        None => (value, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" | "min" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(bad()),
    }
}

/// Splits the store's own parameters off a PostgreSQL URL: returns the URL for the driver and
/// the settings.
pub(crate) fn pool_settings(url: &str) -> StoreResult<(String, PoolSettings)> {
    let mut settings = PoolSettings::default();
    let Some((base, query)) = url.split_once('?') else { return Ok((url.to_string(), settings)) };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "max_connections" => {
                settings.max_connections = value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    StoreError::Unsupported(format!(
                        "database URL parameter max_connections={value}: expected a positive number"
                    ))
                })?;
            }
            "acquire_timeout" => settings.acquire_timeout = parse_duration(key, value)?,
            "statement_timeout" => settings.statement_timeout = parse_duration(key, value)?,
            "idle_in_transaction_timeout" => settings.idle_in_transaction_timeout = parse_duration(key, value)?,
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    Ok((url, settings))
}

/// Splits the store's own parameters off a SQLite URL (`?synchronous=full`, `?readers=8`):
/// returns the URL for the migrator and the engine's settings.
fn sqlite_settings(url: &str) -> StoreResult<(String, sqlite::Settings)> {
    let mut settings = sqlite::Settings::default();
    let Some((base, query)) = url.split_once('?') else { return Ok((url.to_string(), settings)) };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "synchronous" => {
                settings.sync_full = match value.to_ascii_lowercase().as_str() {
                    "full" => true,
                    "normal" => false,
                    _ => {
                        return Err(StoreError::Unsupported(format!(
                            "database URL parameter synchronous={value}: expected full or normal"
                        )));
                    }
                }
            }
            "readers" => {
                settings.readers = value.parse().ok().filter(|n| (1..=64).contains(n)).ok_or_else(|| {
                    StoreError::Unsupported(format!("database URL parameter readers={value}: expected 1 to 64"))
                })?;
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    Ok((url, settings))
}

/// The SQLite file a URL names.
fn sqlite_path(url: &str) -> StoreResult<String> {
    super::copy::sqlite_file(url).map(str::to_string).ok_or_else(|| {
        StoreError::Unsupported("the SQLite store needs a database file, not an in-memory database".into())
    })
}

/// A one-connection sqlx pool on the SQLite file, for migrations and the start-up backfill
/// only (the migrator and its advisory locking are sqlx's); closed before serving.
async fn sqlite_migration_pool(url: &str) -> StoreResult<AnyPool> {
    Ok(AnyPoolOptions::new()
        .max_connections(1)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute("PRAGMA journal_mode = WAL").await?;
                conn.execute("PRAGMA foreign_keys = ON").await?;
                conn.execute("PRAGMA busy_timeout = 10000").await?;
                Ok(())
            })
        })
        .connect_with(AnyConnectOptions::from_str(url)?)
        .await?)
}

impl SqlStore {
    /// A transaction or read handle of this store over `conn`.
    fn handle(&self, conn: Conn, lock: &'static str) -> SqlTx {
        SqlTx {
            conn,
            d: self.dialect,
            lock,
            pending_audit: Vec::new(),
            keys_changed: false,
            key_generation: self.key_generation.clone(),
        }
    }

    /// Connects, configures and migrates.
    pub async fn open(arg: &str) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let (url, dialect) = database_url(arg);
        let backend = match dialect {
            Dialect::Sqlite => {
                let (url, settings) = sqlite_settings(&url)?;
                let pool = sqlite_migration_pool(&url).await?;
                SQLITE_MIGRATIONS.run(&pool).await?;
                backfill_folded(&pool, dialect).await?;
                pool.close().await;
                let path = sqlite_path(&url)?;
                let engine = tokio::task::spawn_blocking(move || sqlite::Engine::open(&path, settings))
                    .await
                    .map_err(|e| StoreError::Unsupported(format!("opening the SQLite database: {e}")))??;
                Backend::Sqlite(engine)
            }
            Dialect::Postgres => {
                let (url, settings) = pool_settings(&url)?;
                let session = format!(
                    "SET statement_timeout = {}; SET idle_in_transaction_session_timeout = {}",
                    settings.statement_timeout.as_millis(),
                    settings.idle_in_transaction_timeout.as_millis()
                );
                let pool = AnyPoolOptions::new()
                    .max_connections(settings.max_connections)
                    .acquire_timeout(settings.acquire_timeout)
                    .after_connect(move |conn, _meta| {
                        let session = session.clone();
                        Box::pin(async move {
                            conn.execute(AssertSqlSafe(session)).await?;
                            Ok(())
                        })
                    })
                    .connect_with(AnyConnectOptions::from_str(&url)?)
                    .await?;
                // Several replicas may start at once: the migrator serialises them with an
                // advisory lock.
                POSTGRES_MIGRATIONS.run(&pool).await?;
                backfill_folded(&pool, dialect).await?;
                Backend::Postgres(pool)
            }
        };
        Ok(Self { backend, dialect, key_generation: Arc::new(AtomicU64::new(0)) })
    }
}

#[async_trait]
impl Store for SqlStore {
    fn dialect(&self) -> Dialect {
        self.dialect
    }

    async fn begin_write(&self) -> StoreResult<Box<dyn Tx>> {
        Ok(Box::new(match &self.backend {
            // READ COMMITTED, with the rows a write depends on locked as they are read (see
            // `SqlTx::lock`): concurrent writers of one user or group queue instead of failing.
            Backend::Postgres(pool) => self.handle(Conn::SqlxTx(pool.begin().await?), " FOR UPDATE"),
            Backend::Sqlite(engine) => self.handle(Conn::Lite(engine.begin_write().await?), ""),
        }))
    }

    async fn begin_read(&self) -> StoreResult<Box<dyn ReadTx>> {
        Ok(Box::new(match &self.backend {
            // One snapshot for a page and its total count; read-only snapshots never fail to
            // serialise.
            Backend::Postgres(pool) => self
                .handle(Conn::SqlxTx(pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?), ""),
            Backend::Sqlite(engine) => self.handle(Conn::Lite(engine.begin_read(true).await?), ""),
        }))
    }

    async fn read(&self) -> StoreResult<Box<dyn ReadTx>> {
        Ok(Box::new(match &self.backend {
            Backend::Postgres(pool) => self.handle(Conn::SqlxPooled(pool.acquire().await?), ""),
            Backend::Sqlite(engine) => self.handle(Conn::Lite(engine.begin_read(false).await?), ""),
        }))
    }

    fn key_generation(&self) -> u64 {
        self.key_generation.load(Ordering::Acquire)
    }

    async fn ping(&self) -> StoreResult<()> {
        match &self.backend {
            Backend::Postgres(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
            Backend::Sqlite(engine) => {
                let mut conn = Conn::Lite(engine.begin_read(false).await?);
                q("SELECT 1".into()).fetch_one(&mut conn).await?;
            }
        }
        Ok(())
    }

    fn commit_stats(&self) -> CommitStats {
        match &self.backend {
            Backend::Postgres(_) => CommitStats::default(),
            Backend::Sqlite(engine) => engine.stats(),
        }
    }

    async fn close(&self) {
        match &self.backend {
            Backend::Postgres(pool) => pool.close().await,
            Backend::Sqlite(engine) => engine.close(),
        }
    }
}

struct SqlTx {
    conn: Conn,
    d: Dialect,
    /// Appended to reads of one user, team or role mapping: ` FOR UPDATE` in a PostgreSQL
    /// write transaction, so that the version read is the version written over (no lost update
    /// between replicas, no optimistic retry storm on a busy group); empty otherwise.
    lock: &'static str,
    /// Audit events of this transaction, written in one multi-row INSERT before the commit
    /// (or before the transaction reads the trail): one round trip instead of one per event.
    pending_audit: Vec<AuditEvent>,
    /// Whether this transaction revoked or added keys (bumps the store's key generation on
    /// commit).
    keys_changed: bool,
    key_generation: Arc<AtomicU64>,
}

/// A refused write: a uniqueness constraint becomes [`StoreError::Conflict`] with `what`.
fn map_unique(e: StoreError, what: &str) -> StoreError {
    let unique = match &e {
        StoreError::Database(sqlx::Error::Database(db)) => db.is_unique_violation(),
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => {
            f.code == rusqlite::ErrorCode::ConstraintViolation
                && matches!(
                    f.extended_code,
                    rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                )
        }
        _ => false,
    };
    if unique { StoreError::Conflict(what.to_string()) } else { e }
}

fn doc_from(text: &str) -> StoreResult<Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(StoreError::Corrupt("document is not a JSON object".into())),
        Err(e) => Err(StoreError::Corrupt(e.to_string())),
    }
}

fn doc_text(doc: &Map<String, Value>) -> String {
    Value::Object(doc.clone()).to_string()
}

/// The folded copy of a user document that filters and sorting read (see `crate::scim::fold`).
fn user_folded_text(doc: &Map<String, Value>) -> String {
    Value::Object(fold_user_document(doc)).to_string()
}

/// The folded copy of a team document.
fn team_folded_text(doc: &Map<String, Value>) -> String {
    Value::Object(fold_group_document(doc)).to_string()
}

/// Fills the folded columns of rows written before they existed (migration 0002 adds them
/// empty: the folding is Unicode's, computed here, not SQL's). Runs at every start and finds
/// nothing to do once done; replicas starting together write the same values.
async fn backfill_folded(pool: &AnyPool, d: Dialect) -> StoreResult<()> {
    let mut tx = Conn::SqlxTx(pool.begin().await?);
    let rows = q(format!("SELECT id, user_name, {} AS data FROM users WHERE data_folded IS NULL", d.json_out("data")))
        .fetch_all(&mut tx)
        .await?;
    let users = rows.len();
    for row in rows {
        let id: String = row.try_get("id")?;
        let user_name: String = row.try_get("user_name")?;
        let data = doc_from(&row.try_get::<String, _>("data")?)?;
        q(format!("UPDATE users SET data_folded = {} WHERE id = $2", d.json_in(1)))
            .bind(user_folded_text(&data))
            .bind(id.clone())
            .execute(&mut tx)
            .await?;
        // A key that the new folding would make collide (e.g. "STRASSE" and "straße") keeps
        // its old value; the conflict is reported once, not fixed silently.
        let key = q("UPDATE users SET user_name_key = $1 WHERE id = $2 AND NOT EXISTS \
                     (SELECT 1 FROM users o WHERE o.user_name_key = $1 AND o.id <> $2 AND o.deleted_at IS NULL)"
            .into())
        .bind(fold(&user_name))
        .bind(id.clone())
        .execute(&mut tx)
        .await?;
        if key.rows_affected() == 0 {
            tracing::warn!(user = %id, user_name = %user_name, "userName collides with another one under Unicode case folding; its uniqueness key is left as it was");
        }
    }
    let rows = q(format!("SELECT id, name, {} AS data FROM teams WHERE data_folded IS NULL", d.json_out("data")))
        .fetch_all(&mut tx)
        .await?;
    let teams = rows.len();
    for row in rows {
        let id: String = row.try_get("id")?;
        let name: String = row.try_get("name")?;
        let data = doc_from(&row.try_get::<String, _>("data")?)?;
        q(format!("UPDATE teams SET name_key = $1, data_folded = {} WHERE id = $3", d.json_in(2)))
            .bind(fold(&name))
            .bind(team_folded_text(&data))
            .bind(id)
            .execute(&mut tx)
            .await?;
    }
    if let Conn::SqlxTx(tx) = tx {
        tx.commit().await?;
    }
    if users + teams > 0 {
        tracing::info!(users, teams, "filled the folded text columns");
    }
    Ok(())
}

fn placeholders(start: usize, n: usize) -> String {
    (start..start + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

impl SqlTx {
    /// The connection statements run on.
    fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    fn user_cols(&self) -> String {
        format!(
            "u.id, u.user_name, u.external_id, u.display_name, u.active, {} AS data, u.created, u.last_modified, u.version",
            self.d.json_out("u.data")
        )
    }

    fn team_cols(&self) -> String {
        format!(
            "t.id, t.name, t.handle, t.scim_id, t.external_id, t.declared_by, {} AS data, t.created, t.last_modified, t.version",
            self.d.json_out("t.data")
        )
    }

    fn user_from(row: &Row) -> StoreResult<UserRecord> {
        Ok(UserRecord {
            id: row.try_get("id")?,
            user_name: row.try_get("user_name")?,
            external_id: row.try_get("external_id")?,
            display_name: row.try_get("display_name")?,
            active: row.try_get::<i64, _>("active")? != 0,
            data: doc_from(&row.try_get::<String, _>("data")?)?,
            created: row.try_get("created")?,
            last_modified: row.try_get("last_modified")?,
            version: row.try_get("version")?,
        })
    }

    fn team_from(row: &Row) -> StoreResult<TeamRecord> {
        Ok(TeamRecord {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            handle: row.try_get("handle")?,
            scim_id: row.try_get("scim_id")?,
            external_id: row.try_get("external_id")?,
            declared_by: row.try_get("declared_by")?,
            data: doc_from(&row.try_get::<String, _>("data")?)?,
            created: row.try_get("created")?,
            last_modified: row.try_get("last_modified")?,
            version: row.try_get("version")?,
        })
    }

    fn key_from(row: &Row) -> StoreResult<ApiKeyRecord> {
        let owner: String = row.try_get("owner_kind")?;
        let permissions: String = row.try_get("permissions")?;
        Ok(ApiKeyRecord {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            owner: KeyOwner::parse(&owner).ok_or_else(|| StoreError::Corrupt(format!("key owner kind '{owner}'")))?,
            owner_user_id: row.try_get("owner_user_id")?,
            secret_hash: row.try_get("secret_hash")?,
            hint: row.try_get("hint")?,
            permissions: permissions.split(',').filter(|p| !p.is_empty()).map(str::to_string).collect(),
            created: row.try_get("created")?,
            revoked_at: row.try_get("revoked_at")?,
            revoked_reason: row.try_get("revoked_reason")?,
            last_used_at: row.try_get("last_used_at")?,
        })
    }

    async fn fetch_users(&mut self, sql: String, params: Vec<SqlValue>) -> StoreResult<Vec<UserRecord>> {
        let rows = bind_all(q(sql), params).fetch_all(self.conn()).await?;
        rows.iter().map(Self::user_from).collect()
    }

    async fn fetch_teams(&mut self, sql: String, params: Vec<SqlValue>) -> StoreResult<Vec<TeamRecord>> {
        let rows = bind_all(q(sql), params).fetch_all(self.conn()).await?;
        rows.iter().map(Self::team_from).collect()
    }

    async fn count(&mut self, sql: String, params: Vec<SqlValue>) -> StoreResult<u64> {
        let row = bind_all(q(sql), params).fetch_one(self.conn()).await?;
        let n: i64 = row.try_get(0)?;
        Ok(n.max(0) as u64)
    }

    /// The total of a list whose page held `served` rows. A first page that is not full holds
    /// every match: no COUNT needed (the common lookup-before-create case,
    /// `filter=userName eq "..."`). Otherwise the COUNT may run outside the page's snapshot (on
    /// a read handle), so the total is never less than what was served.
    async fn page_total(
        &mut self,
        spec: &ListSpec<'_>,
        served: usize,
        count_sql: String,
        params: Vec<SqlValue>,
    ) -> StoreResult<u64> {
        let served = served as u64;
        if spec.offset == 0 && served < spec.limit {
            return Ok(served);
        }
        let at_least = if served == 0 { 0 } else { spec.offset.saturating_add(served) };
        Ok(self.count(count_sql, params).await?.max(at_least))
    }

    /// A page of users (with their groups when asked) and the total count.
    async fn user_page(&mut self, spec: &ListSpec<'_>, with_groups: bool) -> StoreResult<(u64, Vec<UserWithGroups>)> {
        let (where_sql, order, params) = self.list_clauses(spec, ResourceTable::Users)?;
        let count_sql = format!("SELECT COUNT(*) FROM users u WHERE {where_sql}");
        if spec.limit == 0 {
            return Ok((self.count(count_sql, params).await?, Vec::new()));
        }
        let n = params.len();
        let groups =
            if with_groups { format!(", {} AS groups_json", self.d.user_groups_json()) } else { String::new() };
        let sql = format!(
            "SELECT {}{groups} FROM users u WHERE {where_sql} ORDER BY {order} LIMIT ${} OFFSET ${}",
            self.user_cols(),
            n + 1,
            n + 2
        );
        let rows = bind_all(q(sql), page_params(&params, spec)).fetch_all(self.conn()).await?;
        let page = rows
            .iter()
            .map(|r| Ok((Self::user_from(r)?, if with_groups { groups_from(r)? } else { Vec::new() })))
            .collect::<StoreResult<Vec<_>>>()?;
        let total = self.page_total(spec, page.len(), count_sql, params).await?;
        Ok((total, page))
    }

    /// WHERE clause and ORDER BY for a list, with parameters.
    fn list_clauses(&self, spec: &ListSpec<'_>, table: ResourceTable) -> StoreResult<(String, String, Vec<SqlValue>)> {
        let (base, alias) = match table {
            ResourceTable::Users => ("u.deleted_at IS NULL", "u"),
            ResourceTable::Groups => ("t.scim_id IS NOT NULL", "t"),
        };
        let (mut where_sql, mut params) = (base.to_string(), Vec::new());
        if let Some(f) = spec.filter {
            let c = translate(f, spec.resource_type, table, self.d, 1)?;
            where_sql = format!("{base} AND ({})", c.sql);
            params = c.params;
        }
        let dir = match spec.sort_order {
            SortOrder::Ascending => "ASC",
            SortOrder::Descending => "DESC",
        };
        let order = match spec.sort_by {
            Some(path) => {
                let expr = sort_expression(path, spec.resource_type, table, self.d)?;
                // Resources without the attribute come last either way (RFC 7644 §3.4.2.3).
                format!("CASE WHEN {expr} IS NULL THEN 1 ELSE 0 END, {expr} {dir}, {alias}.seq")
            }
            None => format!("{alias}.seq"),
        };
        Ok((where_sql, order, params))
    }
}

/// The `groups_json` column of a user row: `[[group id, name], ...]`.
fn groups_from(row: &Row) -> StoreResult<Vec<(String, String)>> {
    let text: Option<String> = row.try_get("groups_json")?;
    match text {
        None => Ok(Vec::new()),
        Some(t) => serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("groups of a user: {e}"))),
    }
}

/// The parameters of a page query: the filter's, then LIMIT and OFFSET.
fn page_params(params: &[SqlValue], spec: &ListSpec<'_>) -> Vec<SqlValue> {
    let mut all = params.to_vec();
    all.push(SqlValue::Int(spec.limit.min(i64::MAX as u64) as i64));
    all.push(SqlValue::Int(spec.offset.min(i64::MAX as u64) as i64));
    all
}

/// The SET list of an UPDATE, with its parameters numbered from 1.
struct SetClause {
    d: Dialect,
    parts: Vec<String>,
    params: Vec<SqlValue>,
}

impl SetClause {
    fn new(d: Dialect) -> Self {
        Self { d, parts: Vec::new(), params: Vec::new() }
    }
    fn value(&mut self, column: &str, v: SqlValue) {
        self.params.push(v);
        self.parts.push(format!("{column} = ${}", self.params.len()));
    }
    fn json(&mut self, column: &str, text: String) {
        self.params.push(SqlValue::Text(text));
        self.parts.push(format!("{column} = {}", self.d.json_in(self.params.len())));
    }
    fn finish(self) -> (String, Vec<SqlValue>) {
        (self.parts.join(", "), self.params)
    }
}

/// The advisory lock key of a team name's role recomputation (see [`RoleWrites::lock_team_names`]): 64
/// bits of a hash of the name under a prefix of its own, so it collides with no other use of
/// advisory locks (a collision of two names would only serialise them needlessly).
fn team_lock_key(name: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("scim-operator/team-roles/{name}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

fn role_from(row: &Row) -> StoreResult<Role> {
    Ok(Role {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        builtin: row.try_get::<i64, _>("builtin")? != 0,
        description: row.try_get("description")?,
    })
}

fn invitation_from(row: &Row) -> StoreResult<InvitationRecord> {
    let status: String = row.try_get("status")?;
    Ok(InvitationRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        token_hash: row.try_get("token_hash")?,
        email: row.try_get("email")?,
        created: row.try_get("created")?,
        expires_at: row.try_get("expires_at")?,
        status: InvitationStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("invitation status '{status}'")))?,
        status_at: row.try_get("status_at")?,
    })
}

fn outbox_from(row: &Row) -> StoreResult<OutboxMessage> {
    Ok(OutboxMessage {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        recipient: row.try_get("recipient")?,
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        created: row.try_get("created")?,
        attempts: row.try_get("attempts")?,
        last_error: row.try_get("last_error")?,
        sent_at: row.try_get("sent_at")?,
        invitation_id: row.try_get("invitation_id")?,
        link: row.try_get("link")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        parked_at: row.try_get("parked_at")?,
        cancelled_at: row.try_get("cancelled_at")?,
    })
}

/// Audit events per INSERT statement (8 parameters each, well under SQLite's 32,766).
const AUDIT_ROWS_PER_INSERT: usize = 500;

impl SqlTx {
    /// Writes the buffered audit events, in the order they were appended.
    async fn flush_audit(&mut self) -> StoreResult<()> {
        let pending = std::mem::take(&mut self.pending_audit);
        for chunk in pending.chunks(AUDIT_ROWS_PER_INSERT) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let b = i * 8;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${}, ${}, {})",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5,
                        b + 6,
                        b + 7,
                        self.d.json_in(b + 8)
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO audit_events (id, time, actor, action, target_type, target_id, request_id, details) VALUES {}",
                rows.join(", ")
            );
            let mut query = q(sql);
            for e in chunk {
                query = query
                    .bind(e.id.clone())
                    .bind(e.time.clone())
                    .bind(e.actor.clone())
                    .bind(e.action.clone())
                    .bind(e.target_type.clone())
                    .bind(e.target_id.clone())
                    .bind(e.request_id.clone())
                    .bind(e.details.to_string());
            }
            query.execute(self.conn()).await?;
        }
        Ok(())
    }

    async fn mapping_from(&mut self, r: Row) -> StoreResult<RoleMappingRecord> {
        let id: String = r.try_get("id")?;
        let role_rows = q("SELECT role_id FROM role_mapping_roles WHERE mapping_id = $1 ORDER BY role_id".into())
            .bind(id.clone())
            .fetch_all(self.conn())
            .await?;
        let team_rows = q("SELECT team_name FROM role_mapping_teams WHERE mapping_id = $1 ORDER BY team_name".into())
            .bind(id.clone())
            .fetch_all(self.conn())
            .await?;
        Ok(RoleMappingRecord {
            id,
            display_name: r.try_get("display_name")?,
            external_id: r.try_get("external_id")?,
            data: doc_from(&r.try_get::<String, _>("data")?)?,
            role_ids: role_rows.iter().map(|x| x.try_get(0)).collect::<Result<_, _>>()?,
            teams: team_rows.iter().map(|x| x.try_get(0)).collect::<Result<_, _>>()?,
            created: r.try_get("created")?,
            last_modified: r.try_get("last_modified")?,
            version: r.try_get("version")?,
        })
    }

    async fn write_mapping_links(&mut self, m: &RoleMappingRecord) -> StoreResult<()> {
        for role in &m.role_ids {
            q("INSERT INTO role_mapping_roles (mapping_id, role_id) VALUES ($1, $2) ON CONFLICT DO NOTHING".into())
                .bind(m.id.clone())
                .bind(role.clone())
                .execute(self.conn())
                .await?;
        }
        for team in &m.teams {
            q("INSERT INTO role_mapping_teams (mapping_id, team_name) VALUES ($1, $2) ON CONFLICT DO NOTHING".into())
                .bind(m.id.clone())
                .bind(team.clone())
                .execute(self.conn())
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Tx for SqlTx {
    async fn commit(mut self: Box<Self>) -> StoreResult<()> {
        self.flush_audit().await?;
        match self.conn {
            Conn::SqlxTx(tx) => tx.commit().await?,
            Conn::SqlxPooled(_) => {}
            Conn::Lite(session) => session.commit().await?,
        }
        if self.keys_changed {
            self.key_generation.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both engines migrate through the same versions, with the same names, in increasing order
    /// (sqlx applies a version it has not applied yet even after a higher one, so a number left
    /// free, like 0005 reserved for another change, may be filled later on either engine).
    #[test]
    fn both_engines_have_the_same_migrations_in_order() {
        let versions = |m: &sqlx::migrate::Migrator| -> Vec<(i64, String)> {
            m.iter().map(|m| (m.version, m.description.to_string())).collect()
        };
        let sqlite = versions(&SQLITE_MIGRATIONS);
        assert_eq!(sqlite, versions(&POSTGRES_MIGRATIONS));
        assert!(sqlite.windows(2).all(|w| w[0].0 < w[1].0), "{sqlite:?}");
        assert!(sqlite.iter().any(|m| m.0 == 6 && m.1 == "console"), "{sqlite:?}");
        assert!(sqlite.iter().any(|m| m.0 == 7 && m.1 == "access review"), "{sqlite:?}");
    }

    #[test]
    fn pool_settings_are_read_from_the_url_and_removed_from_it() {
        let (url, s) = pool_settings(
            "postgres://u:p@h:5432/db?sslmode=disable&max_connections=4&statement_timeout=500ms&acquire_timeout=2m",
        )
        .unwrap();
        assert_eq!(url, "postgres://u:p@h:5432/db?sslmode=disable");
        assert_eq!(s.max_connections, 4);
        assert_eq!(s.statement_timeout, Duration::from_millis(500));
        assert_eq!(s.acquire_timeout, Duration::from_secs(120));
        assert_eq!(s.idle_in_transaction_timeout, PoolSettings::default().idle_in_transaction_timeout);
        let (url, s) = pool_settings("postgres://h/db?idle_in_transaction_timeout=30").unwrap();
        assert_eq!(url, "postgres://h/db");
        assert_eq!(s.idle_in_transaction_timeout, Duration::from_secs(30));
        assert_eq!(pool_settings("postgres://h/db").unwrap(), ("postgres://h/db".to_string(), PoolSettings::default()));
    }

    #[test]
    fn sqlite_settings_are_read_from_the_url_and_removed_from_it() {
        let (url, s) = sqlite_settings("sqlite:///var/lib/scim.db?mode=rwc&synchronous=FULL&readers=8").unwrap();
        assert_eq!(url, "sqlite:///var/lib/scim.db?mode=rwc");
        assert!(s.sync_full);
        assert_eq!(s.readers, 8);
        let (url, s) = sqlite_settings("sqlite:///var/lib/scim.db?mode=rwc").unwrap();
        assert_eq!(url, "sqlite:///var/lib/scim.db?mode=rwc");
        assert!(!s.sync_full);
        assert!(sqlite_settings("sqlite://x.db?synchronous=off").is_err());
        assert!(sqlite_settings("sqlite://x.db?readers=0").is_err());
        assert!(sqlite_path("sqlite::memory:").is_err());
        assert_eq!(sqlite_path("sqlite://data/x.db?mode=rwc").unwrap(), "data/x.db");
    }

    #[test]
    fn bad_pool_settings_are_refused() {
        for bad in [
            "max_connections=0",
            "max_connections=x",
            "statement_timeout=5h",
            "statement_timeout=",
            "acquire_timeout=-1s",
        ] {
            assert!(pool_settings(&format!("postgres://h/db?{bad}")).is_err(), "{bad}");
        }
    }

    #[test]
    fn database_arguments_pick_the_dialect() {
        assert_eq!(database_url("postgres://h/db").1, Dialect::Postgres);
        assert_eq!(database_url("postgresql://h/db").1, Dialect::Postgres);
        assert_eq!(database_url("/tmp/x.db"), ("sqlite:///tmp/x.db?mode=rwc".to_string(), Dialect::Sqlite));
        assert_eq!(database_url("sqlite://x.db").0, "sqlite://x.db?mode=rwc");
    }
}
