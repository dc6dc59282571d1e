"""Which B-trees the commits in a SQLite write-ahead log wrote, in pages per commit. Standard
library only:

    cp DB DB-wal DB-shm /some/dir/   # during a write load (bench/run.sh, or wrk with a workload)
    python3 bench/wal_pages.py /some/dir/DB

Reads the log's frames of the current cycle (those whose salts match the log header, up to
the last commit frame) and names the table or index that owns each page (the `dbstat`
virtual table, on a copy, so the live database is not touched). This is how the cost of
random ids was found: each of them made every insert write a page at a random place in an
index, where ids that grow with time append to pages shared by the commit.
"""
import collections
import os
import shutil
import sqlite3
import struct
import sys
import tempfile

WAL_HEADER, FRAME_HEADER = 32, 24


def frames(wal: bytes):
    """(page number, is a commit frame) of each valid frame of the current cycle."""
    page_size = struct.unpack(">I", wal[8:12])[0]
    salts = wal[16:24]
    out, valid, off = [], 0, WAL_HEADER
    while off + FRAME_HEADER + page_size <= len(wal):
        pgno, db_size = struct.unpack(">II", wal[off:off + 8])
        if wal[off + 8:off + 16] != salts:
            break
        out.append((pgno, db_size != 0))
        if db_size != 0:
            valid = len(out)
        off += FRAME_HEADER + page_size
    return out[:valid]


def main(path: str) -> None:
    with open(path + "-wal", "rb") as f:
        log = frames(f.read())
    with tempfile.TemporaryDirectory() as d:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                shutil.copy(path + suffix, os.path.join(d, "db" + suffix))
        db = sqlite3.connect(os.path.join(d, "db"))
        owner = dict((pageno, name) for name, pageno in db.execute("SELECT name, pageno FROM dbstat"))
        db.close()
    commits = sum(1 for _, c in log if c)
    if commits == 0:
        sys.exit("no commit in the log's current cycle")
    print(f"{len(log)} frames, {commits} commits, {len(log) / commits:.1f} pages per commit")
    for name, n in collections.Counter(owner.get(p, "(free page)") for p, _ in log).most_common():
        print(f"{n / commits:7.2f} pages/commit  {name}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 bench/wal_pages.py DB")
    main(sys.argv[1])
