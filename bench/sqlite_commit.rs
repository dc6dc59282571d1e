//! The durable-commit ceiling of SQLite on this machine, for the benchmarks:
//! `cargo run --release --example bench-sqlite-commit -- DIR SECONDS [WRITERS]`.
//!
//! Creates a fresh database in DIR (put it on the file system the server's database is on: the
//! sync cost is the point), opens WRITERS connections (16) with the pragmas the store sets on its
//! SQLite connections, and has one thread per connection commit single-row transactions
//! (`BEGIN IMMEDIATE; INSERT; COMMIT`) for SECONDS. Prints one JSON line for the results file:
//! `{"target":"ceiling","workload":"sqlite_commit","rps":...,"p50_ms":...,"p99_ms":...}`; the
//! latency of a transaction includes its wait for the write lock.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use rusqlite::Connection;
use serde_json::json;

/// The pragmas of the store's SQLite connections (`sqlite_pool` in `src/store/sql.rs`): the
/// ceiling must pay for the same journal and sync settings as the server.
const PRAGMAS: &str = "PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA foreign_keys = ON;
PRAGMA busy_timeout = 10000;
PRAGMA mmap_size = 1073741824;
PRAGMA cache_size = -16384;";

/// A row shaped like a user of the store (a key, a unique name, a JSON document), so each
/// commit writes about as many pages as a create does.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS rows (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    data TEXT NOT NULL
)";

fn open(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    conn.execute_batch(PRAGMAS).context("setting the pragmas")?;
    Ok(conn)
}

/// What one writer measured: the latency of each committed transaction, and its failures.
struct Measured {
    latencies_us: Vec<u64>,
    errors: u64,
}

fn writer(path: &Path, writer_id: usize, until: Instant) -> anyhow::Result<Measured> {
    let conn = open(path)?;
    let mut insert = conn.prepare("INSERT INTO rows (id, name, data) VALUES (?1, ?2, ?3)")?;
    let mut m = Measured { latencies_us: Vec::new(), errors: 0 };
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let id = uuid::Uuid::new_v4().to_string();
        let name = format!("writer{writer_id}-{n}@bench.test");
        let data = json!({"userName": name, "active": true,
            "emails": [{"value": name, "type": "work", "primary": true}]})
        .to_string();
        let start = Instant::now();
        let done = conn
            .execute_batch("BEGIN IMMEDIATE")
            .and_then(|()| insert.execute((&id, &name, &data)))
            .and_then(|_| conn.execute_batch("COMMIT"));
        match done {
            Ok(()) => m.latencies_us.push(start.elapsed().as_micros() as u64),
            Err(_) => {
                m.errors += 1;
                // Leave no transaction open for the next round; there may be none to end.
                let _ = conn.execute_batch("ROLLBACK");
            }
        }
    }
    Ok(m)
}

fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    sorted_us[rank.clamp(1, sorted_us.len()) - 1] as f64 / 1000.0
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!((3..=4).contains(&args.len()), "usage: bench-sqlite-commit DIR SECONDS [WRITERS]");
    let dir = Path::new(&args[1]);
    let seconds: f64 = args[2].parse().context("SECONDS must be a number")?;
    let writers: usize = match args.get(3) {
        Some(w) => w.parse().context("WRITERS must be a whole number")?,
        None => 16,
    };
    anyhow::ensure!(writers > 0, "WRITERS must be at least 1");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("sqlite_commit.db");
    for suffix in ["", "-wal", "-shm"] {
        let file = dir.join(format!("sqlite_commit.db{suffix}"));
        if file.exists() {
            std::fs::remove_file(&file).with_context(|| format!("removing the old {}", file.display()))?;
        }
    }
    open(&path)?.execute_batch(SCHEMA).context("creating the table")?;

    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    let measured = std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                s.spawn({
                    let path = &path;
                    move || writer(path, w, until)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow::anyhow!("a writer thread panicked"))?)
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let elapsed = start.elapsed().as_secs_f64();
    let errors: u64 = measured.iter().map(|m| m.errors).sum();
    let mut all: Vec<u64> = measured.into_iter().flat_map(|m| m.latencies_us).collect();
    all.sort_unstable();
    let line = json!({
        "target": "ceiling",
        "workload": "sqlite_commit",
        "requests": all.len(),
        "seconds": (elapsed * 1000.0).round() / 1000.0,
        "rps": ((all.len() as f64 / elapsed) * 10.0).round() / 10.0,
        "p50_ms": percentile_ms(&all, 50.0),
        "p99_ms": percentile_ms(&all, 99.0),
        "errors": errors,
        "writers": writers,
    });
    println!("{line}");
    for suffix in ["", "-wal", "-shm"] {
        // The file is scratch: a failed removal only leaves it for the caller's temp dir.
        let _ = std::fs::remove_file(dir.join(format!("sqlite_commit.db{suffix}")));
    }
    Ok(())
}
