//! The embedded SQLite engine: one writer connection with group commit, a pool of read-only
//! connections, and a checkpointer thread.
//!
//! Each statement runs directly on the thread of the task that holds the connection (rusqlite),
//! not on a driver thread reached by a channel: a transaction costs no context switch per
//! statement. SQLite statements on a warm page cache take microseconds, so they run inline.
//!
//! **Group commit.** Writers queue for the one writer connection (a fair async mutex). The
//! first of them opens a transaction (`BEGIN IMMEDIATE`); each request's work is a savepoint
//! inside it, so a request that fails rolls back alone. When a request finishes and another
//! writer is already waiting, the transaction is left open for that writer and the request
//! waits for the commit; the last writer of the group (or the one that finds the group full)
//! commits for all, with one write of the log, and every request of the group is answered only
//! then. A failed commit fails every request of its group and none of their writes remain.
//!
//! **Durability.** `synchronous = NORMAL` in WAL mode: a commit is in the log before it is
//! acknowledged, so a killed process loses nothing it acknowledged; the log is synced to disk
//! at checkpoints. `?synchronous=full` in the database URL syncs at every (group) commit, for
//! machines whose power may fail without the disk's cache surviving it.
//!
//! **Checkpoints** run off the request path: a thread copies the log back into the database
//! every 100 ms without blocking anyone (`PASSIVE`). A passive checkpoint cannot finish while
//! writers keep appending, so when the log passes [`Settings::wal_restart_pages`] the writer,
//! between two groups and after answering them, restarts the log (`RESTART`, waiting at most
//! a quarter of a second for readers), which bounds its size.

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore, oneshot};

use super::super::{CommitStats, SqlValue, StoreError, StoreResult};
use super::exec::Row;

/// Bytes of a log frame's header, before the page it carries.
const WAL_FRAME_HEADER: i64 = 24;

/// Tuning of the engine.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    /// Read-only connections (parallel readers).
    pub readers: usize,
    /// Most requests committed together.
    pub max_group: usize,
    /// Longest a group stays open once its first request finished.
    pub max_group_age: Duration,
    /// Log size (pages) past which the writer restarts the log between groups.
    pub wal_restart_pages: i64,
    /// Sync the log at every commit (`synchronous = FULL`) instead of at checkpoints.
    pub sync_full: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            readers: 4,
            max_group: 64,
            max_group_age: Duration::from_millis(4),
            wal_restart_pages: 16_384,
            sync_full: false,
        }
    }
}

/// Pragmas of every connection: WAL (readers never block the writer); reads through a memory
/// map (no read() and copy per page; 1 GiB of address space, not of memory); a 16 MiB page
/// cache; no checkpoint inside a commit (the checkpointer does them).
fn configure(conn: &Connection, sync_full: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", if sync_full { "FULL" } else { "NORMAL" })?;
    conn.pragma_update(None, "mmap_size", 1_073_741_824i64)?;
    conn.pragma_update(None, "cache_size", -16_384i64)?;
    conn.pragma_update(None, "wal_autocheckpoint", 0i64)?;
    // Plans that do not depend on bound values. Without this, SQLite marks a statement whose
    // LIMIT is a parameter to be compiled again whenever a value is bound, so every page query
    // was parsed and planned anew despite the statement cache.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.set_prepared_statement_cache_capacity(256);
    Ok(())
}

struct Writer {
    conn: Connection,
    /// The open group: requests whose savepoints were released, waiting for the commit.
    group: Option<Group>,
}

struct Group {
    waiters: Vec<oneshot::Sender<Result<(), String>>>,
    /// When the first request of the group finished (and began waiting for the commit).
    first_done: Option<Instant>,
}

struct Readers {
    idle: SyncMutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

/// The engine of one SQLite database file.
pub(super) struct Engine {
    writer: Arc<Mutex<Writer>>,
    /// Writers waiting for the writer connection (a group stays open only while one is).
    waiting: AtomicUsize,
    readers: Readers,
    /// Pages in the log at the checkpointer's last look.
    wal_pages: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    settings: Settings,
    commits: AtomicU64,
    committed: AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("sqlite::Engine").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens the (already migrated) database file at `path`.
    pub(super) fn open(path: &str, settings: Settings) -> StoreResult<Arc<Self>> {
        let rw = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, rw)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unsupported(format!("SQLite could not use WAL mode here (journal_mode {mode})")));
        }
        configure(&conn, settings.sync_full)?;
        // The log file is cut back to this size when it restarts, so a burst does not keep
        // its disk space. Twice the restart bound: in steady use the file keeps its size and
        // each cycle overwrites it in place. A limit under the bound (as it was) made every
        // restart shorten the file and every cycle grow it again, block by block, which showed
        // as slower commits and longer restarts.
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let frame = page_size + WAL_FRAME_HEADER;
        conn.pragma_update(None, "journal_size_limit", 2 * settings.wal_restart_pages * frame)?;
        // Each request of a group is a savepoint, so SQLite keeps the pages it changes for a
        // rollback to that savepoint in a statement journal. In a temporary file that was one
        // write() per page, more bytes than the log itself; in memory it is a copy, at most a
        // group's pages.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        let ro = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut idle = Vec::with_capacity(settings.readers);
        for _ in 0..settings.readers.max(1) {
            let r = Connection::open_with_flags(path, ro)?;
            configure(&r, settings.sync_full)?;
            r.pragma_update(None, "query_only", "ON")?;
            idle.push(r);
        }
        let checkpointer = Connection::open_with_flags(path, rw)?;
        checkpointer.busy_timeout(Duration::from_millis(100))?;
        let engine = Arc::new(Self {
            writer: Arc::new(Mutex::new(Writer { conn, group: None })),
            waiting: AtomicUsize::new(0),
            readers: Readers { permits: Arc::new(Semaphore::new(idle.len())), idle: SyncMutex::new(idle) },
            wal_pages: Arc::new(AtomicI64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            settings,
            commits: AtomicU64::new(0),
            committed: AtomicU64::new(0),
        });
        spawn_checkpointer(checkpointer, engine.wal_pages.clone(), engine.stop.clone())?;
        Ok(engine)
    }

    /// Starts a write transaction: waits for the writer connection, then opens a savepoint in
    /// the group's transaction.
    pub(super) async fn begin_write(self: &Arc<Self>) -> StoreResult<Session> {
        let queued = Queued::new(self.clone());
        let mut guard = self.writer.clone().lock_owned().await;
        queued.done();
        if guard.group.is_none() {
            run(&guard.conn, "BEGIN IMMEDIATE")?;
            guard.group = Some(Group { waiters: Vec::new(), first_done: None });
        }
        if let Err(e) = run(&guard.conn, "SAVEPOINT request") {
            // Nothing of this request is in the group: let the group commit without it.
            self.finish_group(&mut guard);
            return Err(e.into());
        }
        Ok(Session::Write(WriteSession { guard: Some(guard), engine: self.clone() }))
    }

    /// A read-only connection, in a transaction (one snapshot) when `snapshot`.
    pub(super) async fn begin_read(self: &Arc<Self>, snapshot: bool) -> StoreResult<Session> {
        let permit = self
            .readers
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unsupported("the store is closed".into()))?;
        let conn = lock(&self.readers.idle)
            .pop()
            .ok_or_else(|| StoreError::Corrupt("a read permit without a read connection".into()))?;
        let mut session = ReadSession { conn: Some(conn), engine: self.clone(), in_tx: false, _permit: permit };
        if snapshot {
            run(session.conn()?, "BEGIN")?;
            session.in_tx = true;
        }
        Ok(Session::Read(session))
    }

    /// Commits the open group, if any, and answers its requests.
    fn finish_group(&self, w: &mut Writer) {
        let Some(group) = w.group.take() else { return };
        let outcome = match off_the_runtime(|| run(&w.conn, "COMMIT")) {
            Ok(()) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                self.committed.fetch_add(group.waiters.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, requests = group.waiters.len(), "a group commit failed");
                // A failed COMMIT may leave the transaction open: end it.
                if !w.conn.is_autocommit() {
                    let _ = run(&w.conn, "ROLLBACK");
                }
                Err(e.to_string())
            }
        };
        for waiter in group.waiters {
            // A request that stopped waiting (its client went away) is committed all the same.
            let _ = waiter.send(outcome.clone());
        }
        self.restart_log_if_large(&w.conn);
    }

    /// Restarts the log when the checkpointer saw it past the bound (between groups, after
    /// their answers are sent).
    fn restart_log_if_large(&self, conn: &Connection) {
        if self.wal_pages.load(Ordering::Relaxed) <= self.settings.wal_restart_pages {
            return;
        }
        let _ = conn.busy_timeout(Duration::from_millis(250));
        let restart = off_the_runtime(|| {
            conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
        });
        match restart {
            Ok((busy, pages)) => {
                tracing::debug!(busy, pages, "restarted the SQLite log");
                if busy == 0 {
                    self.wal_pages.store(0, Ordering::Relaxed);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not restart the SQLite log"),
        }
        let _ = conn.busy_timeout(Duration::from_secs(10));
    }

    /// Commits an open group nobody is left to commit (its next writer gave up waiting).
    async fn flush(self: Arc<Self>) {
        let mut guard = self.writer.clone().lock_owned().await;
        if self.waiting.load(Ordering::Acquire) == 0 {
            self.finish_group(&mut guard);
        }
    }

    /// Commits and the request transactions they made durable.
    pub(super) fn stats(&self) -> CommitStats {
        CommitStats {
            commits: self.commits.load(Ordering::Relaxed),
            transactions: self.committed.load(Ordering::Relaxed),
        }
    }

    /// Stops the checkpointer.
    pub(super) fn close(&self) {
        self.stop.store(true, Ordering::Release);
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Runs file I/O that may wait for the disk (a commit's write of the log, which can stall
/// behind a checkpoint's sync; a log restart) without holding up the other tasks of this
/// runtime thread: on a multi-threaded runtime they move to another thread meanwhile.
fn off_the_runtime<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) if rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn lock<T>(m: &SyncMutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The vector of idle connections stays consistent even if a holder panicked.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Counts a writer waiting for the connection; a writer that gives up waiting (its request was
/// cancelled) commits a group that was left open for it.
struct Queued {
    engine: Option<Arc<Engine>>,
}

impl Queued {
    fn new(engine: Arc<Engine>) -> Self {
        engine.waiting.fetch_add(1, Ordering::AcqRel);
        Self { engine: Some(engine) }
    }
    fn done(mut self) {
        if let Some(e) = self.engine.take() {
            e.waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        if let Some(e) = self.engine.take()
            && e.waiting.fetch_sub(1, Ordering::AcqRel) == 1
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(e.flush());
        }
    }
}

fn spawn_checkpointer(conn: Connection, wal_pages: Arc<AtomicI64>, stop: Arc<AtomicBool>) -> StoreResult<()> {
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(100));
                match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
                    Ok(pages) => wal_pages.store(pages, Ordering::Relaxed),
                    Err(e) => tracing::debug!(error = %e, "passive checkpoint skipped"),
                }
            }
        })
        .map_err(|e| StoreError::Unsupported(format!("could not start the SQLite checkpointer: {e}")))?;
    Ok(())
}

/// A connection held by one transaction or read handle.
pub(super) enum Session {
    Write(WriteSession),
    Read(ReadSession),
}

impl Session {
    fn conn(&self) -> StoreResult<&Connection> {
        match self {
            Session::Write(w) => w.guard.as_ref().map(|g| &g.conn),
            Session::Read(r) => r.conn.as_ref(),
        }
        .ok_or_else(|| StoreError::Unsupported("the transaction has ended".into()))
    }

    /// Runs a statement that returns no rows; returns the rows it changed.
    pub(super) fn execute(&self, sql: &str, params: &[SqlValue]) -> StoreResult<u64> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(sql)?;
        bind(&mut stmt, params)?;
        Ok(stmt.raw_execute()? as u64)
    }

    /// Runs a statement of [`super::exec::q_positional`] (placeholders `$1`..`$n` only, `$` nowhere
    /// else): as `?1`..`?n`, bound by position, linear in its parameters.
    pub(super) fn execute_positional(&self, sql: &str, params: &[SqlValue]) -> StoreResult<u64> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(&sql.replace('$', "?"))?;
        if stmt.parameter_count() != params.len() {
            return Err(StoreError::Corrupt(format!(
                "the statement has {} parameters and {} values",
                stmt.parameter_count(),
                params.len()
            )));
        }
        for (i, value) in params.iter().enumerate() {
            bind_value(&mut stmt, i + 1, value)?;
        }
        Ok(stmt.raw_execute()? as u64)
    }

    /// Runs a query; returns its rows.
    pub(super) fn query(&self, sql: &str, params: &[SqlValue]) -> StoreResult<Vec<Row>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(sql)?;
        bind(&mut stmt, params)?;
        let columns: Arc<[String]> = stmt.column_names().into_iter().map(str::to_string).collect();
        let width = columns.len();
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(match r.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => SqlValue::Null,
                    rusqlite::types::ValueRef::Integer(i) => SqlValue::Int(i),
                    rusqlite::types::ValueRef::Real(f) => SqlValue::Float(f),
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => SqlValue::Text(
                        std::str::from_utf8(t).map_err(|e| StoreError::Corrupt(e.to_string()))?.to_string(),
                    ),
                });
            }
            out.push(Row::new(columns.clone(), values));
        }
        Ok(out)
    }

    /// Ends the transaction: a write joins its group's commit and returns once that commit is
    /// done; a read releases its snapshot.
    pub(super) async fn commit(self) -> StoreResult<()> {
        match self {
            Session::Write(w) => w.commit().await,
            Session::Read(mut r) => {
                r.end();
                Ok(())
            }
        }
    }
}

/// Binds `$N` (and `?N`) parameters by their number, as sqlx does: the SQL text numbers them,
/// SQLite numbers its slots in order of first appearance.
fn bind(stmt: &mut rusqlite::CachedStatement<'_>, params: &[SqlValue]) -> StoreResult<()> {
    for slot in 1..=stmt.parameter_count() {
        let n = stmt
            .parameter_name(slot)
            .and_then(|name| name.get(1..))
            .and_then(|digits| digits.parse::<usize>().ok())
            .ok_or_else(|| StoreError::Corrupt(format!("statement parameter {slot} is not numbered")))?;
        let value = params
            .get(n.wrapping_sub(1))
            .ok_or_else(|| StoreError::Corrupt(format!("statement parameter ${n} has no value")))?;
        bind_value(stmt, slot, value)?;
    }
    Ok(())
}

/// Binds `value` to the parameter in `slot` (1-based).
fn bind_value(stmt: &mut rusqlite::CachedStatement<'_>, slot: usize, value: &SqlValue) -> StoreResult<()> {
    match value {
        SqlValue::Text(s) => stmt.raw_bind_parameter(slot, s.as_str())?,
        SqlValue::Int(i) => stmt.raw_bind_parameter(slot, *i)?,
        SqlValue::Float(f) => stmt.raw_bind_parameter(slot, *f)?,
        SqlValue::Null => stmt.raw_bind_parameter(slot, rusqlite::types::Null)?,
    }
    Ok(())
}

/// A request's write transaction: a savepoint in the open group, holding the writer.
pub(super) struct WriteSession {
    guard: Option<OwnedMutexGuard<Writer>>,
    engine: Arc<Engine>,
}

impl WriteSession {
    async fn commit(mut self) -> StoreResult<()> {
        let Some(mut guard) = self.guard.take() else {
            return Err(StoreError::Unsupported("the transaction has ended".into()));
        };
        if let Err(e) = run(&guard.conn, "RELEASE request") {
            rollback_request(&mut guard.conn);
            self.engine.finish_group(&mut guard);
            return Err(e.into());
        }
        let engine = self.engine.clone();
        let group =
            guard.group.as_ref().map(|g| (g.waiters.len() + 1, g.first_done.map_or(Duration::ZERO, |t| t.elapsed())));
        let full =
            group.is_none_or(|(size, age)| size >= engine.settings.max_group || age >= engine.settings.max_group_age);
        if full || engine.waiting.load(Ordering::Acquire) == 0 {
            // Nobody is queued behind this request (or the group is full): commit the group.
            let result = if guard.group.is_some() { commit_now(&engine, &mut guard) } else { Ok(()) };
            drop(guard);
            return result;
        }
        let (tx, rx) = oneshot::channel();
        if let Some(g) = guard.group.as_mut() {
            g.waiters.push(tx);
            g.first_done.get_or_insert_with(Instant::now);
        }
        // The next writer continues the group; the last one commits it.
        drop(guard);
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::CommitFailed(e)),
            Err(_) => Err(StoreError::CommitFailed("the group ended without a commit".into())),
        }
    }
}

/// Commits the group this request belongs to and returns its outcome.
fn commit_now(engine: &Engine, w: &mut Writer) -> StoreResult<()> {
    let (tx, mut rx) = oneshot::channel();
    if let Some(g) = w.group.as_mut() {
        g.waiters.push(tx);
    }
    engine.finish_group(w);
    match rx.try_recv() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(StoreError::CommitFailed(e)),
        Err(_) => Err(StoreError::CommitFailed("the group ended without a commit".into())),
    }
}

/// Runs one statement that returns no rows through the connection's statement cache: the
/// transaction statements run several times per request, and parsing them each time showed in
/// the profile.
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.raw_execute().map(|_| ())
}

/// Undoes the current request's savepoint, keeping the rest of the group.
fn rollback_request(conn: &mut Connection) {
    if let Err(e) = run(conn, "ROLLBACK TO request").and_then(|()| run(conn, "RELEASE request")) {
        tracing::error!(error = %e, "could not roll a request back to its savepoint");
    }
}

impl Drop for WriteSession {
    fn drop(&mut self) {
        // Not committed (an error, or the request was cancelled): this request's writes go,
        // the group's stay; commit the group now if nobody is queued to continue it.
        if let Some(mut guard) = self.guard.take() {
            rollback_request(&mut guard.conn);
            let empty = guard.group.as_ref().is_some_and(|g| g.waiters.is_empty());
            if empty && !guard.conn.is_autocommit() {
                // Only this request was in the transaction: end it without a commit.
                let _ = run(&guard.conn, "ROLLBACK");
                guard.group = None;
            } else if self.engine.waiting.load(Ordering::Acquire) == 0 {
                self.engine.finish_group(&mut guard);
            }
        }
    }
}

/// A read-only connection, returned to the pool when dropped.
pub(super) struct ReadSession {
    conn: Option<Connection>,
    engine: Arc<Engine>,
    in_tx: bool,
    _permit: OwnedSemaphorePermit,
}

impl ReadSession {
    fn conn(&self) -> StoreResult<&Connection> {
        self.conn.as_ref().ok_or_else(|| StoreError::Unsupported("the read handle has ended".into()))
    }

    fn end(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.in_tx || !conn.is_autocommit() {
                let _ = run(&conn, "ROLLBACK");
            }
            lock(&self.engine.readers.idle).push(conn);
        }
    }
}

impl Drop for ReadSession {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_read_connection_refuses_writes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ro.db").to_string_lossy().into_owned();
        let engine = Engine::open(&path, Settings::default()).expect("open");
        let w = engine.begin_write().await.expect("writer");
        w.execute("CREATE TABLE t (x INTEGER)", &[]).expect("create");
        w.commit().await.expect("commit");
        let r = engine.begin_read(false).await.expect("reader");
        let refused = r.execute("INSERT INTO t (x) VALUES (1)", &[]);
        assert!(matches!(refused, Err(StoreError::Sqlite(_))), "a reader wrote: {refused:?}");
        assert_eq!(r.query("SELECT COUNT(*) FROM t", &[]).expect("count")[0].try_get::<i64, _>(0).expect("n"), 0);
    }

    #[tokio::test]
    async fn a_page_query_is_compiled_once_whatever_its_limit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("plan.db").to_string_lossy().into_owned();
        let engine = Engine::open(&path, Settings::default()).expect("open");
        let w = engine.begin_write().await.expect("writer");
        w.execute("CREATE TABLE t (x INTEGER)", &[]).expect("create");
        w.execute("INSERT INTO t (x) VALUES (1), (2), (3)", &[]).expect("insert");
        w.commit().await.expect("commit");
        let r = engine.begin_read(false).await.expect("reader");
        let sql = "SELECT x FROM t ORDER BY x LIMIT $1 OFFSET $2";
        for limit in 1..=3 {
            let rows = r.query(sql, &[SqlValue::Int(limit), SqlValue::Int(0)]).expect("page");
            assert_eq!(rows.len() as i64, limit);
        }
        // Without the planner's stability guarantee SQLite compiles this statement again at
        // every bind of its LIMIT (three times here).
        let conn = r.conn().expect("connection");
        let reprepared = conn.prepare_cached(sql).expect("cached").get_status(rusqlite::StatementStatus::RePrepare);
        assert_eq!(reprepared, 0, "the page query was compiled again {reprepared} times");
    }
}
