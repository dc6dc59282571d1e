//! [`Store`] implementation on sqlx's `Any` driver: one body of SQL for SQLite and PostgreSQL,
//! with the few dialect differences in [`Dialect`].

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Executor, Row};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::filter_sql::{ResourceTable, SqlValue, sort_expression, translate};
use super::*;
use crate::provisioning::roles::Role;
use crate::scim::fold::{fold, fold_group_document, fold_user_document};
use crate::scim::list::SortOrder;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Largest number of bind parameters put in one IN list or multi-row insert.
const CHUNK: usize = 400;

/// The SQL store.
pub struct SqlStore {
    pool: AnyPool,
    /// SQLite: the one connection that writes (see [`SqlStore::open`]); PostgreSQL: none.
    write_pool: Option<AnyPool>,
    dialect: Dialect,
    /// SQLite has one writer: queue writers here instead of failing with SQLITE_BUSY.
    write_lock: Option<Arc<Mutex<()>>>,
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

/// A pool of `size` SQLite connections, configured for this store.
async fn sqlite_pool(url: &str, size: u32) -> StoreResult<AnyPool> {
    Ok(AnyPoolOptions::new()
        .max_connections(size)
        // A local file does not drop connections: no ping (a round trip to the connection's
        // thread) before every use.
        .test_before_acquire(false)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // WAL: readers never block the writer; NORMAL sync is safe against process
                // crashes (a killed server loses nothing it acknowledged).
                conn.execute("PRAGMA journal_mode = WAL").await?;
                conn.execute("PRAGMA synchronous = NORMAL").await?;
                conn.execute("PRAGMA foreign_keys = ON").await?;
                conn.execute("PRAGMA busy_timeout = 10000").await?;
                // Read pages through a memory map instead of a read() system call and a copy
                // per page: a connection whose cache another writer invalidated refills it
                // cheaply. 1 GiB of address space, not of memory.
                conn.execute("PRAGMA mmap_size = 1073741824").await?;
                conn.execute("PRAGMA cache_size = -16384").await?;
                Ok(())
            })
        })
        .connect_with(AnyConnectOptions::from_str(url)?)
        .await?)
}

impl SqlStore {
    /// A transaction or read handle of this store over `tx`.
    fn handle(&self, tx: Handle, lock: &'static str, guard: Option<OwnedMutexGuard<()>>) -> Box<dyn Tx> {
        Box::new(SqlTx {
            tx,
            d: self.dialect,
            lock,
            pending_audit: Vec::new(),
            keys_changed: false,
            key_generation: self.key_generation.clone(),
            _guard: guard,
        })
    }

    /// Connects, configures and migrates.
    pub async fn open(arg: &str) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let (url, dialect) = database_url(arg);
        let pool = match dialect {
            Dialect::Sqlite => sqlite_pool(&url, 8).await?,
            Dialect::Postgres => {
                let (url, settings) = pool_settings(&url)?;
                let session = format!(
                    "SET statement_timeout = {}; SET idle_in_transaction_session_timeout = {}",
                    settings.statement_timeout.as_millis(),
                    settings.idle_in_transaction_timeout.as_millis()
                );
                AnyPoolOptions::new()
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
                    .await?
            }
        };
        // Several replicas may start at once: the migrator serialises them with an advisory lock.
        match dialect {
            Dialect::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Dialect::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        backfill_folded(&pool, dialect).await?;
        let write_lock = (dialect == Dialect::Sqlite).then(|| Arc::new(Mutex::new(())));
        // SQLite has one writer at a time anyway; giving writes one connection of their own
        // keeps its page cache warm (a connection's cache is dropped whenever another
        // connection has committed since its last transaction).
        let write_pool = match dialect {
            Dialect::Sqlite => Some(sqlite_pool(&url, 1).await?),
            Dialect::Postgres => None,
        };
        Ok(Self { pool, write_pool, dialect, write_lock, key_generation: Arc::new(AtomicU64::new(0)) })
    }
}

#[async_trait]
impl Store for SqlStore {
    fn dialect(&self) -> Dialect {
        self.dialect
    }

    async fn begin_write(&self) -> StoreResult<Box<dyn Tx>> {
        let guard = match &self.write_lock {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        let tx = match self.dialect {
            Dialect::Sqlite => self.write_pool.as_ref().unwrap_or(&self.pool).begin_with("BEGIN IMMEDIATE").await?,
            // READ COMMITTED, with the rows a write depends on locked as they are read (see
            // `SqlTx::lock`): concurrent writers of one user or group queue instead of failing.
            Dialect::Postgres => self.pool.begin().await?,
        };
        let lock = if self.dialect == Dialect::Postgres { " FOR UPDATE" } else { "" };
        Ok(self.handle(Handle::Tx(tx), lock, guard))
    }

    async fn begin_read(&self) -> StoreResult<Box<dyn Tx>> {
        let tx = match self.dialect {
            Dialect::Sqlite => self.pool.begin().await?,
            // One snapshot for a page and its total count; read-only snapshots never fail to
            // serialise.
            Dialect::Postgres => self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?,
        };
        Ok(self.handle(Handle::Tx(tx), "", None))
    }

    async fn read(&self) -> StoreResult<Box<dyn Tx>> {
        Ok(self.handle(Handle::Conn(self.pool.acquire().await?), "", None))
    }

    fn key_generation(&self) -> u64 {
        self.key_generation.load(Ordering::Acquire)
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        if let Some(w) = &self.write_pool {
            w.close().await;
        }
        self.pool.close().await;
    }
}

/// What a [`SqlTx`] runs its statements on.
enum Handle {
    /// A transaction: committed by [`Tx::commit`], rolled back when dropped.
    Tx(sqlx::Transaction<'static, sqlx::Any>),
    /// A pooled connection in autocommit mode: each statement is its own snapshot.
    Conn(sqlx::pool::PoolConnection<sqlx::Any>),
}

struct SqlTx {
    tx: Handle,
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
    _guard: Option<OwnedMutexGuard<()>>,
}

type AnyQuery = sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments>;

fn q(sql: String) -> AnyQuery {
    sqlx::query(AssertSqlSafe(sql))
}

fn bind_all(mut query: AnyQuery, params: Vec<SqlValue>) -> AnyQuery {
    for p in params {
        query = match p {
            SqlValue::Text(s) => query.bind(s),
            SqlValue::Int(i) => query.bind(i),
            SqlValue::Float(f) => query.bind(f),
            SqlValue::Null => query.bind(Option::<String>::None),
        };
    }
    query
}

fn map_unique(e: sqlx::Error, what: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what.to_string()),
        _ => StoreError::from(e),
    }
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
    let mut tx = pool.begin().await?;
    let rows = q(format!("SELECT id, user_name, {} AS data FROM users WHERE data_folded IS NULL", d.json_out("data")))
        .fetch_all(&mut *tx)
        .await?;
    let users = rows.len();
    for row in rows {
        let id: String = row.try_get("id")?;
        let user_name: String = row.try_get("user_name")?;
        let data = doc_from(&row.try_get::<String, _>("data")?)?;
        q(format!("UPDATE users SET data_folded = {} WHERE id = $2", d.json_in(1)))
            .bind(user_folded_text(&data))
            .bind(id.clone())
            .execute(&mut *tx)
            .await?;
        // A key that the new folding would make collide (e.g. "STRASSE" and "straße") keeps
        // its old value; the conflict is reported once, not fixed silently.
        let key = q("UPDATE users SET user_name_key = $1 WHERE id = $2 AND NOT EXISTS \
                     (SELECT 1 FROM users o WHERE o.user_name_key = $1 AND o.id <> $2 AND o.deleted_at IS NULL)"
            .into())
        .bind(fold(&user_name))
        .bind(id.clone())
        .execute(&mut *tx)
        .await?;
        if key.rows_affected() == 0 {
            tracing::warn!(user = %id, user_name = %user_name, "userName collides with another one under Unicode case folding; its uniqueness key is left as it was");
        }
    }
    let rows = q(format!("SELECT id, name, {} AS data FROM teams WHERE data_folded IS NULL", d.json_out("data")))
        .fetch_all(&mut *tx)
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
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
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
    fn conn(&mut self) -> &mut sqlx::AnyConnection {
        match &mut self.tx {
            Handle::Tx(tx) => tx,
            Handle::Conn(conn) => conn,
        }
    }

    fn user_cols(&self) -> String {
        format!(
            "u.id, u.user_name, u.external_id, u.display_name, u.active, {} AS data, u.created, u.last_modified, u.version",
            self.d.json_out("u.data")
        )
    }

    fn team_cols(&self) -> String {
        format!(
            "t.id, t.name, t.handle, t.scim_id, t.external_id, {} AS data, t.created, t.last_modified, t.version",
            self.d.json_out("t.data")
        )
    }

    fn user_from(row: &AnyRow) -> StoreResult<UserRecord> {
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

    fn team_from(row: &AnyRow) -> StoreResult<TeamRecord> {
        Ok(TeamRecord {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            handle: row.try_get("handle")?,
            scim_id: row.try_get("scim_id")?,
            external_id: row.try_get("external_id")?,
            data: doc_from(&row.try_get::<String, _>("data")?)?,
            created: row.try_get("created")?,
            last_modified: row.try_get("last_modified")?,
            version: row.try_get("version")?,
        })
    }

    fn key_from(row: &AnyRow) -> StoreResult<ApiKeyRecord> {
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
fn groups_from(row: &AnyRow) -> StoreResult<Vec<(String, String)>> {
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

/// The advisory lock key of a team name's role recomputation (see [`Tx::lock_team_names`]): 64
/// bits of a hash of the name under a prefix of its own, so it collides with no other use of
/// advisory locks (a collision of two names would only serialise them needlessly).
fn team_lock_key(name: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("scim-operator/team-roles/{name}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

fn role_from(row: &AnyRow) -> StoreResult<Role> {
    Ok(Role {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        builtin: row.try_get::<i64, _>("builtin")? != 0,
        description: row.try_get("description")?,
    })
}

fn invitation_from(row: &AnyRow) -> StoreResult<InvitationRecord> {
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

fn outbox_from(row: &AnyRow) -> StoreResult<OutboxMessage> {
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

    async fn mapping_from(&mut self, r: &AnyRow) -> StoreResult<RoleMappingRecord> {
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
    async fn user(&mut self, id: &str) -> StoreResult<Option<UserRecord>> {
        let sql =
            format!("SELECT {} FROM users u WHERE u.id = $1 AND u.deleted_at IS NULL{}", self.user_cols(), self.lock);
        Ok(self.fetch_users(sql, vec![SqlValue::Text(id.to_string())]).await?.pop())
    }

    async fn user_by_name(&mut self, user_name: &str) -> StoreResult<Option<UserRecord>> {
        let sql = format!(
            "SELECT {} FROM users u WHERE u.user_name_key = $1 AND u.deleted_at IS NULL{}",
            self.user_cols(),
            self.lock
        );
        Ok(self.fetch_users(sql, vec![SqlValue::Text(fold(user_name))]).await?.pop())
    }

    async fn insert_user(&mut self, u: &UserRecord) -> StoreResult<()> {
        let sql = format!(
            "INSERT INTO users (id, user_name, user_name_key, external_id, display_name, active, data, created, last_modified, version, data_folded) \
             VALUES ($1, $2, $3, $4, $5, $6, {}, $8, $9, $10, {})",
            self.d.json_in(7),
            self.d.json_in(11)
        );
        q(sql)
            .bind(u.id.clone())
            .bind(u.user_name.clone())
            .bind(fold(&u.user_name))
            .bind(u.external_id.clone())
            .bind(u.display_name.clone())
            .bind(u.active as i64)
            .bind(doc_text(&u.data))
            .bind(u.created.clone())
            .bind(u.last_modified.clone())
            .bind(u.version)
            .bind(user_folded_text(&u.data))
            .execute(self.conn())
            .await
            .map_err(|e| map_unique(e, &format!("userName '{}' is already taken", u.user_name)))?;
        Ok(())
    }

    async fn update_user(&mut self, before: &UserRecord, u: &UserRecord) -> StoreResult<()> {
        let mut set = SetClause::new(self.d);
        set.value("display_name", SqlValue::opt(&u.display_name));
        set.value("active", SqlValue::Int(u.active as i64));
        set.json("data", doc_text(&u.data));
        set.json("data_folded", user_folded_text(&u.data));
        set.value("last_modified", SqlValue::Text(u.last_modified.clone()));
        set.value("version", SqlValue::Int(u.version));
        if u.user_name != before.user_name {
            set.value("user_name", SqlValue::Text(u.user_name.clone()));
            set.value("user_name_key", SqlValue::Text(fold(&u.user_name)));
        }
        if u.external_id != before.external_id {
            set.value("external_id", SqlValue::opt(&u.external_id));
        }
        let (set_sql, mut params) = set.finish();
        let sql = format!(
            "UPDATE users SET {set_sql} WHERE id = ${} AND version = ${} AND deleted_at IS NULL",
            params.len() + 1,
            params.len() + 2
        );
        params.push(SqlValue::Text(u.id.clone()));
        params.push(SqlValue::Int(u.version - 1));
        let done = bind_all(q(sql), params)
            .execute(self.conn())
            .await
            .map_err(|e| map_unique(e, &format!("userName '{}' is already taken", u.user_name)))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Concurrent(format!("user {}", u.id)));
        }
        Ok(())
    }

    async fn delete_user(&mut self, id: &str, now: &str) -> StoreResult<bool> {
        let done = q("UPDATE users SET deleted_at = $2, active = 0, version = version + 1, last_modified = $2 \
                      WHERE id = $1 AND deleted_at IS NULL"
            .into())
        .bind(id.to_string())
        .bind(now.to_string())
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        // Teams that lose a member change version too (their ETag must not lie).
        q("UPDATE teams SET version = version + 1, last_modified = $2 \
           WHERE id IN (SELECT team_id FROM team_members WHERE user_id = $1)"
            .into())
        .bind(id.to_string())
        .bind(now.to_string())
        .execute(self.conn())
        .await?;
        q("DELETE FROM team_members WHERE user_id = $1".into()).bind(id.to_string()).execute(self.conn()).await?;
        Ok(true)
    }

    async fn list_users(&mut self, spec: &ListSpec<'_>) -> StoreResult<(u64, Vec<UserRecord>)> {
        let (total, rows) = self.user_page(spec, false).await?;
        Ok((total, rows.into_iter().map(|(u, _)| u).collect()))
    }

    async fn user_with_groups(&mut self, id: &str) -> StoreResult<Option<UserWithGroups>> {
        let sql = format!(
            "SELECT {}, {} AS groups_json FROM users u WHERE u.id = $1 AND u.deleted_at IS NULL",
            self.user_cols(),
            self.d.user_groups_json()
        );
        let row = q(sql).bind(id.to_string()).fetch_optional(self.conn()).await?;
        row.as_ref().map(|r| Ok((Self::user_from(r)?, groups_from(r)?))).transpose()
    }

    async fn list_users_with_groups(
        &mut self,
        spec: &ListSpec<'_>,
        with_groups: bool,
    ) -> StoreResult<(u64, Vec<UserWithGroups>)> {
        self.user_page(spec, with_groups).await
    }

    async fn existing_user_ids(&mut self, ids: &[String]) -> StoreResult<Vec<String>> {
        let mut found = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let sql =
                format!("SELECT id FROM users WHERE deleted_at IS NULL AND id IN ({})", placeholders(1, chunk.len()));
            let params = chunk.iter().map(|i| SqlValue::Text(i.clone())).collect();
            for row in bind_all(q(sql), params).fetch_all(self.conn()).await? {
                found.push(row.try_get::<String, _>(0)?);
            }
        }
        Ok(found)
    }

    async fn groups_of_user(&mut self, user_id: &str) -> StoreResult<Vec<(String, String)>> {
        let rows = q("SELECT t.scim_id, t.name FROM team_members m JOIN teams t ON t.id = m.team_id \
                      WHERE m.user_id = $1 AND t.scim_id IS NOT NULL ORDER BY t.name, t.scim_id"
            .into())
        .bind(user_id.to_string())
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    async fn team(&mut self, team_id: &str) -> StoreResult<Option<TeamRecord>> {
        let sql = format!("SELECT {} FROM teams t WHERE t.id = $1{}", self.team_cols(), self.lock);
        Ok(self.fetch_teams(sql, vec![SqlValue::Text(team_id.to_string())]).await?.pop())
    }

    async fn group(&mut self, scim_id: &str) -> StoreResult<Option<TeamRecord>> {
        let sql = format!("SELECT {} FROM teams t WHERE t.scim_id = $1{}", self.team_cols(), self.lock);
        Ok(self.fetch_teams(sql, vec![SqlValue::Text(scim_id.to_string())]).await?.pop())
    }

    async fn team_by_name(&mut self, name: &str) -> StoreResult<Option<TeamRecord>> {
        let sql =
            format!("SELECT {} FROM teams t WHERE t.name = $1 ORDER BY t.seq LIMIT 1{}", self.team_cols(), self.lock);
        Ok(self.fetch_teams(sql, vec![SqlValue::Text(name.to_string())]).await?.pop())
    }

    async fn handle_taken(&mut self, handle: &str) -> StoreResult<bool> {
        let n = self
            .count("SELECT COUNT(*) FROM teams WHERE handle = $1".into(), vec![SqlValue::Text(handle.into())])
            .await?;
        Ok(n > 0)
    }

    async fn insert_team(&mut self, t: &TeamRecord) -> StoreResult<()> {
        let sql = format!(
            "INSERT INTO teams (id, name, handle, scim_id, external_id, data, created, last_modified, version, name_key, data_folded) \
             VALUES ($1, $2, $3, $4, $5, {}, $7, $8, $9, $10, {})",
            self.d.json_in(6),
            self.d.json_in(11)
        );
        q(sql)
            .bind(t.id.clone())
            .bind(t.name.clone())
            .bind(t.handle.clone())
            .bind(t.scim_id.clone())
            .bind(t.external_id.clone())
            .bind(doc_text(&t.data))
            .bind(t.created.clone())
            .bind(t.last_modified.clone())
            .bind(t.version)
            .bind(fold(&t.name))
            .bind(team_folded_text(&t.data))
            .execute(self.conn())
            .await
            .map_err(|e| map_unique(e, &format!("a team with handle '{}' already exists", t.handle)))?;
        Ok(())
    }

    async fn update_team(&mut self, before: &TeamRecord, t: &TeamRecord) -> StoreResult<()> {
        let mut set = SetClause::new(self.d);
        set.json("data", doc_text(&t.data));
        set.json("data_folded", team_folded_text(&t.data));
        set.value("last_modified", SqlValue::Text(t.last_modified.clone()));
        set.value("version", SqlValue::Int(t.version));
        if t.name != before.name {
            set.value("name", SqlValue::Text(t.name.clone()));
            set.value("name_key", SqlValue::Text(fold(&t.name)));
        }
        if t.handle != before.handle {
            set.value("handle", SqlValue::Text(t.handle.clone()));
        }
        if t.scim_id != before.scim_id {
            set.value("scim_id", SqlValue::opt(&t.scim_id));
        }
        if t.external_id != before.external_id {
            set.value("external_id", SqlValue::opt(&t.external_id));
        }
        let (set_sql, mut params) = set.finish();
        let sql =
            format!("UPDATE teams SET {set_sql} WHERE id = ${} AND version = ${}", params.len() + 1, params.len() + 2);
        params.push(SqlValue::Text(t.id.clone()));
        params.push(SqlValue::Int(t.version - 1));
        let done = bind_all(q(sql), params)
            .execute(self.conn())
            .await
            .map_err(|e| map_unique(e, &format!("a team with handle '{}' already exists", t.handle)))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Concurrent(format!("team {}", t.id)));
        }
        Ok(())
    }

    async fn list_groups(&mut self, spec: &ListSpec<'_>) -> StoreResult<(u64, Vec<TeamRecord>)> {
        let (where_sql, order, params) = self.list_clauses(spec, ResourceTable::Groups)?;
        let count_sql = format!("SELECT COUNT(*) FROM teams t WHERE {where_sql}");
        if spec.limit == 0 {
            return Ok((self.count(count_sql, params).await?, Vec::new()));
        }
        let n = params.len();
        let sql = format!(
            "SELECT {} FROM teams t WHERE {where_sql} ORDER BY {order} LIMIT ${} OFFSET ${}",
            self.team_cols(),
            n + 1,
            n + 2
        );
        let page = self.fetch_teams(sql, page_params(&params, spec)).await?;
        let total = self.page_total(spec, page.len(), count_sql, params).await?;
        Ok((total, page))
    }

    async fn list_teams(&mut self) -> StoreResult<Vec<TeamRecord>> {
        let sql = format!("SELECT {} FROM teams t ORDER BY t.name, t.seq", self.team_cols());
        self.fetch_teams(sql, Vec::new()).await
    }

    async fn team_members(&mut self, team_id: &str) -> StoreResult<Vec<String>> {
        let rows = q("SELECT user_id FROM team_members WHERE team_id = $1 ORDER BY user_id".into())
            .bind(team_id.to_string())
            .fetch_all(self.conn())
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    async fn team_member_count(&mut self, team_id: &str) -> StoreResult<u64> {
        self.count("SELECT COUNT(*) FROM team_members WHERE team_id = $1".into(), vec![SqlValue::Text(team_id.into())])
            .await
    }

    async fn add_team_members(&mut self, team_id: &str, user_ids: &[String]) -> StoreResult<u64> {
        let mut added = 0;
        for chunk in user_ids.chunks(CHUNK) {
            let values: Vec<String> = (0..chunk.len()).map(|i| format!("($1, ${})", i + 2)).collect();
            let sql = format!(
                "INSERT INTO team_members (team_id, user_id) VALUES {} ON CONFLICT DO NOTHING",
                values.join(", ")
            );
            let mut params = vec![SqlValue::Text(team_id.to_string())];
            params.extend(chunk.iter().map(|u| SqlValue::Text(u.clone())));
            added += bind_all(q(sql), params).execute(self.conn()).await?.rows_affected();
        }
        Ok(added)
    }

    async fn remove_team_members(&mut self, team_id: &str, user_ids: &[String]) -> StoreResult<u64> {
        let mut removed = 0;
        for chunk in user_ids.chunks(CHUNK) {
            let sql = format!(
                "DELETE FROM team_members WHERE team_id = $1 AND user_id IN ({})",
                placeholders(2, chunk.len())
            );
            let mut params = vec![SqlValue::Text(team_id.to_string())];
            params.extend(chunk.iter().map(|u| SqlValue::Text(u.clone())));
            removed += bind_all(q(sql), params).execute(self.conn()).await?.rows_affected();
        }
        Ok(removed)
    }

    async fn clear_team_members(&mut self, team_id: &str) -> StoreResult<u64> {
        let done = q("DELETE FROM team_members WHERE team_id = $1".into())
            .bind(team_id.to_string())
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected())
    }

    async fn insert_key(&mut self, k: &ApiKeyRecord) -> StoreResult<()> {
        self.keys_changed = true;
        q("INSERT INTO api_keys (id, name, owner_kind, owner_user_id, secret_hash, hint, permissions, created) \
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            .into())
        .bind(k.id.clone())
        .bind(k.name.clone())
        .bind(k.owner.as_str())
        .bind(k.owner_user_id.clone())
        .bind(k.secret_hash.clone())
        .bind(k.hint.clone())
        .bind(k.permissions.join(","))
        .bind(k.created.clone())
        .execute(self.conn())
        .await
        .map_err(|e| map_unique(e, "key collision"))?;
        Ok(())
    }

    async fn key_by_hash(&mut self, secret_hash: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let row = q("SELECT * FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL".into())
            .bind(secret_hash.to_string())
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(Self::key_from).transpose()
    }

    async fn list_keys(&mut self) -> StoreResult<Vec<ApiKeyRecord>> {
        let rows = q("SELECT * FROM api_keys ORDER BY seq".into()).fetch_all(self.conn()).await?;
        rows.iter().map(Self::key_from).collect()
    }

    async fn revoke_key(&mut self, id_or_name: &str, now: &str, reason: &str) -> StoreResult<bool> {
        self.keys_changed = true;
        let done = q("UPDATE api_keys SET revoked_at = $2, revoked_reason = $3 \
                      WHERE (id = $1 OR name = $1) AND revoked_at IS NULL"
            .into())
        .bind(id_or_name.to_string())
        .bind(now.to_string())
        .bind(reason.to_string())
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn revoke_user_keys(&mut self, user_id: &str, now: &str, reason: &str) -> StoreResult<Vec<String>> {
        self.keys_changed = true;
        let rows = q("SELECT id FROM api_keys WHERE owner_user_id = $1 AND revoked_at IS NULL ORDER BY seq".into())
            .bind(user_id.to_string())
            .fetch_all(self.conn())
            .await?;
        let ids: Vec<String> = rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?;
        if !ids.is_empty() {
            q("UPDATE api_keys SET revoked_at = $2, revoked_reason = $3 WHERE owner_user_id = $1 AND revoked_at IS NULL"
                .into())
            .bind(user_id.to_string())
            .bind(now.to_string())
            .bind(reason.to_string())
            .execute(self.conn())
            .await?;
        }
        Ok(ids)
    }

    async fn append_audit(&mut self, e: &AuditEvent) -> StoreResult<()> {
        self.pending_audit.push(e.clone());
        Ok(())
    }

    async fn list_audit(&mut self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        self.flush_audit().await?;
        let mut conds = vec!["1 = 1".to_string()];
        let mut params = Vec::new();
        if let Some(s) = &query.since {
            params.push(SqlValue::Text(crate::clock::normalize_time(s)));
            conds.push(format!("time >= ${}", params.len()));
        }
        if let Some(a) = &query.action {
            params.push(SqlValue::Text(a.clone()));
            conds.push(format!("action = ${}", params.len()));
        }
        if let Some(t) = &query.target_id {
            params.push(SqlValue::Text(t.clone()));
            conds.push(format!("target_id = ${}", params.len()));
        }
        let mut sql = format!(
            "SELECT id, time, actor, action, target_type, target_id, request_id, {} AS details FROM audit_events WHERE {} ORDER BY seq",
            self.d.json_out("details"),
            conds.join(" AND ")
        );
        if let Some(limit) = query.limit {
            params.push(SqlValue::Int(limit.min(i64::MAX as u64) as i64));
            sql.push_str(&format!(" LIMIT ${}", params.len()));
        }
        let rows = bind_all(q(sql), params).fetch_all(self.conn()).await?;
        rows.iter()
            .map(|r| {
                let details: String = r.try_get("details")?;
                Ok(AuditEvent {
                    id: r.try_get("id")?,
                    time: r.try_get("time")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target_type: r.try_get("target_type")?,
                    target_id: r.try_get("target_id")?,
                    request_id: r.try_get("request_id")?,
                    details: serde_json::from_str(&details).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                })
            })
            .collect()
    }

    async fn roles(&mut self) -> StoreResult<Vec<Role>> {
        let rows = q("SELECT id, name, builtin, description FROM roles ORDER BY builtin DESC, seq".into())
            .fetch_all(self.conn())
            .await?;
        rows.iter().map(role_from).collect()
    }

    async fn insert_role(&mut self, r: &Role, now: &str) -> StoreResult<()> {
        q("INSERT INTO roles (id, name, name_key, builtin, description, created) VALUES ($1, $2, $3, $4, $5, $6)"
            .into())
        .bind(r.id.clone())
        .bind(r.name.clone())
        .bind(r.name.to_lowercase())
        .bind(r.builtin as i64)
        .bind(r.description.clone())
        .bind(now.to_string())
        .execute(self.conn())
        .await
        .map_err(|e| map_unique(e, &format!("a role named '{}' already exists", r.name)))?;
        Ok(())
    }

    async fn delete_role(&mut self, id_or_name: &str) -> StoreResult<bool> {
        let done = q("DELETE FROM roles WHERE builtin = 0 AND (id = $1 OR name_key = $2)".into())
            .bind(id_or_name.to_string())
            .bind(id_or_name.to_lowercase())
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn setting(&mut self, name: &str) -> StoreResult<Option<String>> {
        let row = q("SELECT value FROM settings WHERE name = $1".into())
            .bind(name.to_string())
            .fetch_optional(self.conn())
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<Option<String>, _>(0)?,
            None => None,
        })
    }

    async fn role_named_by_setting(&mut self, name: &str) -> StoreResult<Option<Role>> {
        let row = q("SELECT r.id, r.name, r.builtin, r.description FROM settings s \
                     JOIN roles r ON r.id = s.value WHERE s.name = $1"
            .into())
        .bind(name.to_string())
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(role_from).transpose()
    }

    async fn set_setting(&mut self, name: &str, value: Option<&str>) -> StoreResult<()> {
        q("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value"
            .into())
        .bind(name.to_string())
        .bind(value.map(str::to_string))
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn user_roles(&mut self, user_id: &str) -> StoreResult<Vec<(Role, String)>> {
        let rows = q("SELECT r.id, r.name, r.builtin, r.description, ur.source FROM user_roles ur \
                      JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = $1 ORDER BY r.builtin DESC, r.seq"
            .into())
        .bind(user_id.to_string())
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(|r| Ok((role_from(r)?, r.try_get("source")?))).collect()
    }

    async fn set_user_roles(&mut self, user_id: &str, roles: &[(String, String)], had_roles: bool) -> StoreResult<()> {
        if had_roles {
            q("DELETE FROM user_roles WHERE user_id = $1".into())
                .bind(user_id.to_string())
                .execute(self.conn())
                .await?;
        }
        if roles.is_empty() {
            return Ok(());
        }
        let values: Vec<String> = (0..roles.len()).map(|i| format!("($1, ${}, ${})", 2 * i + 2, 2 * i + 3)).collect();
        let sql = format!(
            "INSERT INTO user_roles (user_id, role_id, source) VALUES {} ON CONFLICT DO NOTHING",
            values.join(", ")
        );
        let mut params = vec![SqlValue::Text(user_id.to_string())];
        for (role_id, source) in roles {
            params.push(SqlValue::Text(role_id.clone()));
            params.push(SqlValue::Text(source.clone()));
        }
        bind_all(q(sql), params).execute(self.conn()).await?;
        Ok(())
    }

    async fn mapped_roles_of_user(&mut self, user_id: &str) -> StoreResult<Vec<Role>> {
        let rows = q("SELECT DISTINCT r.id, r.name, r.builtin, r.description, r.seq FROM team_members m \
                      JOIN teams t ON t.id = m.team_id \
                      JOIN role_mapping_teams mt ON mt.team_name = t.name \
                      JOIN role_mapping_roles mr ON mr.mapping_id = mt.mapping_id \
                      JOIN roles r ON r.id = mr.role_id \
                      WHERE m.user_id = $1 ORDER BY r.builtin DESC, r.seq"
            .into())
        .bind(user_id.to_string())
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(role_from).collect()
    }

    async fn team_is_mapped(&mut self, team_name: &str) -> StoreResult<bool> {
        let n = self
            .count(
                "SELECT COUNT(*) FROM role_mapping_teams WHERE team_name = $1".into(),
                vec![SqlValue::Text(team_name.into())],
            )
            .await?;
        Ok(n > 0)
    }

    async fn members_of_team_names(&mut self, names: &[String]) -> StoreResult<Vec<String>> {
        let mut out = std::collections::BTreeSet::new();
        for chunk in names.chunks(CHUNK) {
            let sql = format!(
                "SELECT DISTINCT m.user_id FROM team_members m JOIN teams t ON t.id = m.team_id WHERE t.name IN ({})",
                placeholders(1, chunk.len())
            );
            let params = chunk.iter().map(|n| SqlValue::Text(n.clone())).collect();
            for row in bind_all(q(sql), params).fetch_all(self.conn()).await? {
                out.insert(row.try_get::<String, _>(0)?);
            }
        }
        Ok(out.into_iter().collect())
    }

    async fn lock_team_names(&mut self, names: &[String]) -> StoreResult<()> {
        // Only PostgreSQL write transactions lock (`self.lock` is set for them alone).
        if self.d != Dialect::Postgres || self.lock.is_empty() {
            return Ok(());
        }
        let keys: std::collections::BTreeSet<i64> = names.iter().map(|n| team_lock_key(n)).collect();
        for key in keys {
            // The function returns void, which the Any driver cannot decode: count instead.
            q("SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock($1)) AS l".into())
                .bind(key)
                .fetch_one(self.conn())
                .await?;
        }
        Ok(())
    }

    async fn role_mapping(&mut self, id: &str) -> StoreResult<Option<RoleMappingRecord>> {
        let sql = format!(
            "SELECT id, display_name, external_id, {} AS data, created, last_modified, version FROM role_mappings WHERE id = $1{}",
            self.d.json_out("data"),
            self.lock
        );
        let row = q(sql).bind(id.to_string()).fetch_optional(self.conn()).await?;
        match row {
            Some(r) => Ok(Some(self.mapping_from(&r).await?)),
            None => Ok(None),
        }
    }

    async fn role_mappings(&mut self) -> StoreResult<Vec<RoleMappingRecord>> {
        let sql = format!(
            "SELECT id, display_name, external_id, {} AS data, created, last_modified, version FROM role_mappings ORDER BY seq",
            self.d.json_out("data")
        );
        let rows = q(sql).fetch_all(self.conn()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.mapping_from(r).await?);
        }
        Ok(out)
    }

    async fn insert_role_mapping(&mut self, m: &RoleMappingRecord) -> StoreResult<()> {
        let sql = format!(
            "INSERT INTO role_mappings (id, display_name, external_id, data, created, last_modified, version) \
             VALUES ($1, $2, $3, {}, $5, $6, $7)",
            self.d.json_in(4)
        );
        q(sql)
            .bind(m.id.clone())
            .bind(m.display_name.clone())
            .bind(m.external_id.clone())
            .bind(doc_text(&m.data))
            .bind(m.created.clone())
            .bind(m.last_modified.clone())
            .bind(m.version)
            .execute(self.conn())
            .await
            .map_err(|e| map_unique(e, &format!("a role mapping named '{}' already exists", m.display_name)))?;
        self.write_mapping_links(m).await
    }

    async fn update_role_mapping(&mut self, m: &RoleMappingRecord) -> StoreResult<()> {
        let sql = format!(
            "UPDATE role_mappings SET display_name = $2, external_id = $3, data = {}, last_modified = $5, version = $6 \
             WHERE id = $1 AND version = $7",
            self.d.json_in(4)
        );
        let done = q(sql)
            .bind(m.id.clone())
            .bind(m.display_name.clone())
            .bind(m.external_id.clone())
            .bind(doc_text(&m.data))
            .bind(m.last_modified.clone())
            .bind(m.version)
            .bind(m.version - 1)
            .execute(self.conn())
            .await
            .map_err(|e| map_unique(e, &format!("a role mapping named '{}' already exists", m.display_name)))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Concurrent(format!("role mapping {}", m.id)));
        }
        q("DELETE FROM role_mapping_roles WHERE mapping_id = $1".into())
            .bind(m.id.clone())
            .execute(self.conn())
            .await?;
        q("DELETE FROM role_mapping_teams WHERE mapping_id = $1".into())
            .bind(m.id.clone())
            .execute(self.conn())
            .await?;
        self.write_mapping_links(m).await
    }

    async fn delete_role_mapping(&mut self, id: &str) -> StoreResult<bool> {
        q("DELETE FROM role_mapping_roles WHERE mapping_id = $1".into())
            .bind(id.to_string())
            .execute(self.conn())
            .await?;
        q("DELETE FROM role_mapping_teams WHERE mapping_id = $1".into())
            .bind(id.to_string())
            .execute(self.conn())
            .await?;
        let done =
            q("DELETE FROM role_mappings WHERE id = $1".into()).bind(id.to_string()).execute(self.conn()).await?;
        Ok(done.rows_affected() > 0)
    }

    async fn insert_invitation(&mut self, i: &InvitationRecord) -> StoreResult<()> {
        q("INSERT INTO invitations (id, user_id, token_hash, email, created, expires_at, status, status_at) \
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            .into())
        .bind(i.id.clone())
        .bind(i.user_id.clone())
        .bind(i.token_hash.clone())
        .bind(i.email.clone())
        .bind(i.created.clone())
        .bind(i.expires_at.clone())
        .bind(i.status.as_str())
        .bind(i.status_at.clone())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn invitation_by_token_hash(&mut self, token_hash: &str) -> StoreResult<Option<InvitationRecord>> {
        let row = q("SELECT * FROM invitations WHERE token_hash = $1".into())
            .bind(token_hash.to_string())
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(invitation_from).transpose()
    }

    async fn invitations(&mut self, user_id: Option<&str>) -> StoreResult<Vec<InvitationRecord>> {
        let rows = match user_id {
            Some(u) => {
                q("SELECT * FROM invitations WHERE user_id = $1 ORDER BY seq DESC".into())
                    .bind(u.to_string())
                    .fetch_all(self.conn())
                    .await?
            }
            None => q("SELECT * FROM invitations ORDER BY seq DESC".into()).fetch_all(self.conn()).await?,
        };
        rows.iter().map(invitation_from).collect()
    }

    async fn accept_invitation(&mut self, id: &str, now: &str) -> StoreResult<bool> {
        // The condition is evaluated on the row as it is when the update locks it: a second
        // concurrent accept waits for the first and then finds the invitation no longer pending.
        let done = q("UPDATE invitations SET status = 'accepted', status_at = $2 \
                      WHERE id = $1 AND status = 'pending' AND expires_at > $2"
            .into())
        .bind(id.to_string())
        .bind(now.to_string())
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn cancel_invitations(&mut self, user_id: &str, now: &str) -> StoreResult<u64> {
        q("UPDATE outbox SET cancelled_at = $2, link = NULL \
           WHERE sent_at IS NULL AND parked_at IS NULL AND cancelled_at IS NULL \
           AND invitation_id IN (SELECT id FROM invitations WHERE user_id = $1 AND status = 'pending')"
            .into())
        .bind(user_id.to_string())
        .bind(now.to_string())
        .execute(self.conn())
        .await?;
        let done =
            q("UPDATE invitations SET status = 'cancelled', status_at = $2 WHERE user_id = $1 AND status = 'pending'"
                .into())
            .bind(user_id.to_string())
            .bind(now.to_string())
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected())
    }

    async fn insert_outbox(&mut self, m: &OutboxMessage) -> StoreResult<()> {
        q("INSERT INTO outbox (id, kind, recipient, subject, body, created, attempts, invitation_id, link) \
           VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8)"
            .into())
        .bind(m.id.clone())
        .bind(m.kind.clone())
        .bind(m.recipient.clone())
        .bind(m.subject.clone())
        .bind(m.body.clone())
        .bind(m.created.clone())
        .bind(m.invitation_id.clone())
        .bind(m.link.clone())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn outbox(&mut self, limit: u64) -> StoreResult<Vec<OutboxMessage>> {
        let rows = q("SELECT * FROM outbox ORDER BY seq DESC LIMIT $1".into())
            .bind(limit.min(i64::MAX as u64) as i64)
            .fetch_all(self.conn())
            .await?;
        rows.iter().map(outbox_from).collect()
    }

    async fn claim_outbox(
        &mut self,
        now: &str,
        until: &str,
        claim: &str,
        limit: u64,
    ) -> StoreResult<Vec<OutboxMessage>> {
        // PostgreSQL: rows locked by another replica's claim in progress are skipped. SQLite:
        // this write transaction is the only writer, so the select and update are one step.
        let skip_locked = match self.d {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let sql = format!(
            "SELECT id FROM outbox WHERE sent_at IS NULL AND parked_at IS NULL AND cancelled_at IS NULL \
             AND (next_attempt_at IS NULL OR next_attempt_at <= $1) AND (claimed_until IS NULL OR claimed_until <= $1) \
             ORDER BY seq LIMIT $2{skip_locked}"
        );
        let ids: Vec<String> = q(sql)
            .bind(now.to_string())
            .bind(limit.min(i64::MAX as u64) as i64)
            .fetch_all(self.conn())
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut params = vec![SqlValue::Text(claim.to_string()), SqlValue::Text(until.to_string())];
        params.extend(ids.iter().map(|i| SqlValue::Text(i.clone())));
        let update =
            format!("UPDATE outbox SET claim = $1, claimed_until = $2 WHERE id IN ({})", placeholders(3, ids.len()));
        bind_all(q(update), params).execute(self.conn()).await?;
        let mut params: Vec<SqlValue> = ids.iter().map(|i| SqlValue::Text(i.clone())).collect();
        params.push(SqlValue::Text(claim.to_string()));
        let select = format!(
            "SELECT * FROM outbox WHERE id IN ({}) AND claim = ${} ORDER BY seq",
            placeholders(1, ids.len()),
            ids.len() + 1
        );
        let rows = bind_all(q(select), params).fetch_all(self.conn()).await?;
        rows.iter().map(outbox_from).collect()
    }

    async fn outbox_sent(&mut self, id: &str, claim: &str, now: &str, body: &str) -> StoreResult<bool> {
        let done =
            q("UPDATE outbox SET sent_at = $3, body = $4, link = NULL, attempts = attempts + 1, last_error = NULL, \
                      next_attempt_at = NULL, claim = NULL, claimed_until = NULL \
                      WHERE id = $1 AND claim = $2 AND sent_at IS NULL"
                .into())
            .bind(id.to_string())
            .bind(claim.to_string())
            .bind(now.to_string())
            .bind(body.to_string())
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn outbox_failed(
        &mut self,
        id: &str,
        claim: &str,
        error: &str,
        now: &str,
        retry_at: Option<&str>,
    ) -> StoreResult<bool> {
        let sql = match retry_at {
            Some(_) => {
                "UPDATE outbox SET attempts = attempts + 1, last_error = $3, next_attempt_at = $4, \
                 claim = NULL, claimed_until = NULL WHERE id = $1 AND claim = $2 AND sent_at IS NULL"
            }
            None => {
                "UPDATE outbox SET attempts = attempts + 1, last_error = $3, parked_at = $4, link = NULL, \
                 next_attempt_at = NULL, claim = NULL, claimed_until = NULL WHERE id = $1 AND claim = $2 AND sent_at IS NULL"
            }
        };
        let done = q(sql.into())
            .bind(id.to_string())
            .bind(claim.to_string())
            .bind(error.to_string())
            .bind(retry_at.unwrap_or(now).to_string())
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn commit(mut self: Box<Self>) -> StoreResult<()> {
        self.flush_audit().await?;
        if let Handle::Tx(tx) = self.tx {
            tx.commit().await?;
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
