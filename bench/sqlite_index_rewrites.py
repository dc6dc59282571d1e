"""How many WAL pages an UPDATE writes in SQLite when its SET list names indexed columns whose
values do not change, against one that sets only an unindexed column. Standard library only:

    python3 bench/sqlite_index_rewrites.py

This is why the store's updates write indexed columns only when they change.
"""
import os
import sqlite3
import tempfile
import uuid

ROWS, UPDATES = 200_000, 100
PAGE_FRAME = 4096 + 24  # default page size plus the WAL frame header

with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "t.db")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA wal_autocheckpoint = 0")
    # The shape of the teams table: indexed name, lower(name), handle and id.
    db.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, id TEXT UNIQUE, name TEXT, handle TEXT UNIQUE, data TEXT)")
    db.execute("CREATE INDEX t_name ON t (name)")
    db.execute("CREATE INDEX t_name_lower ON t (lower(name))")
    db.execute("BEGIN")
    db.executemany("INSERT INTO t (id, name, handle, data) VALUES (?, ?, ?, ?)",
                   ((str(uuid.uuid4()), f"name{i}", f"h{i}", "x" * 100) for i in range(ROWS)))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ids = [r[0] for r in db.execute("SELECT id FROM t ORDER BY random() LIMIT ?", (UPDATES,))]

    def frames():
        return os.path.getsize(path + "-wal") // PAGE_FRAME

    f0 = frames()
    for i in ids:
        db.execute("UPDATE t SET name = name, handle = handle, data = 'y' WHERE id = ?", (i,))
    f1 = frames()
    for i in ids:
        db.execute("UPDATE t SET data = 'z' WHERE id = ?", (i,))
    f2 = frames()
    print(f"WAL pages per update: {(f1 - f0) / UPDATES:.2f} with unchanged indexed columns in the SET list, "
          f"{(f2 - f1) / UPDATES:.2f} with the changed column only")
