"""SQLite writers: how long an API create waits while the controller writes.

One process plays the controller: THREADS threads, each in a loop of a short
write transaction (an UPDATE and an INSERT with 0.3 ms of Python between
them) and 3 ms of Python outside it, as the controller's workers do. The
bench's own process plays the API: 300 creates (``BEGIN IMMEDIATE``, an
INSERT, commit) 10 ms apart, each timed. Measured with the product's engine
(``store.db.make_engine``: writers queue on ``<database>-writer``,
``store/writers.py``) and, in the same run, the baseline: the same engine
without the queue, where a writer that finds the lock taken waits in
SQLite's busy handler (the engine before 2026-12-02). Figures: the creates'
p50/p90/p99/max, and the controller's write transactions per second (the
queue must not cost it throughput).

    .venv/bin/python bench/writers.py [--quick] [--threads 4,16] [--creates 300]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text

from benchlib import Machine, pct, r, report, table
from vmshadow.store.db import make_engine
from vmshadow.store.writers import queue_writes

CREATE_GAP_S = 0.01


def engine(url: str, queued: bool) -> Engine:
    eng = make_engine(url)
    if not queued:  # the baseline: SQLite's busy handler alone orders the writers
        event.remove(eng, "before_cursor_execute", queue_writes)
    return eng


def burn(ms: float) -> None:
    """Python work holding the GIL, as mapping rows and building XML does."""
    until = time.process_time() + ms / 1000
    while time.process_time() < until:
        pass


def controller(url: str, queued: bool, threads: int, stop: Any, ready: Any) -> None:
    eng = engine(url, queued)

    def worker() -> None:
        while not stop.is_set():
            with eng.begin() as c:
                c.execute(text("UPDATE t SET v = v + 1 WHERE id = 1"))
                burn(0.3)
                c.execute(text("INSERT INTO ev (src) VALUES ('controller')"))
            burn(3.0)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    ready.set()
    for t in pool:
        t.join()


def run(threads: int, creates: int, queued: bool, folder: Path) -> dict[str, Any]:
    url = f"sqlite:///{folder / f'{threads}-{queued}.db'}"
    eng = engine(url, queued)
    with eng.begin() as c:
        c.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)"))
        c.execute(text("INSERT INTO t VALUES (1, 0)"))
        c.execute(text("CREATE TABLE ev (src TEXT)"))
    ctx = mp.get_context("spawn")
    stop, ready = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=controller, args=(url, queued, threads, stop, ready))
    proc.start()
    try:
        ready.wait(60)
        time.sleep(0.5)  # the controller's threads in their stride
        with eng.connect() as c:
            before = c.execute(text("SELECT count(*) FROM ev")).scalar() or 0
        waits = []
        t0 = time.monotonic()
        for _ in range(creates):
            s = time.monotonic()
            with eng.begin() as c:
                c.execute(text("BEGIN IMMEDIATE"))
                c.execute(text("INSERT INTO ev (src) VALUES ('api')"))
            waits.append(time.monotonic() - s)
            time.sleep(CREATE_GAP_S)
        wall = time.monotonic() - t0
        with eng.connect() as c:
            after = c.execute(text("SELECT count(*) FROM ev")).scalar() or 0
    finally:
        stop.set()
        proc.join(60)
        eng.dispose()
    ms = [w * 1000 for w in waits]
    return {
        "writers": "queued" if queued else "busy handler (before)",
        "controller_threads": threads,
        "creates": creates,
        "create_p50_ms": r(pct(ms, 50), 1),
        "create_p90_ms": r(pct(ms, 90), 1),
        "create_p99_ms": r(pct(ms, 99), 1),
        "create_max_ms": r(max(ms), 1),
        "controller_txn_per_s": r((after - before - creates) / wall, 0),
        "wall_s": r(wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 threads, 100 creates")
    ap.add_argument("--threads", default="4,16", help="the controller's writing threads")
    ap.add_argument("--creates", type=int, default=300)
    args = ap.parse_args()
    levels = [4] if args.quick else [int(x) for x in args.threads.split(",")]
    creates = 100 if args.quick else args.creates
    machine = Machine()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for threads in levels:
            for queued in (False, True):  # the baseline first, then the product
                rows.append(run(threads, creates, queued, Path(tmp)))
                print(rows[-1], flush=True)
    table(
        rows,
        ["writers", "controller_threads", "create_p50_ms", "create_p90_ms", "create_p99_ms",
         "create_max_ms", "controller_txn_per_s"],
    )  # fmt: skip
    report(
        "writers",
        machine,
        {"threads": levels, "creates": creates, "create_gap_s": CREATE_GAP_S},
        {"rows": rows},
    )


if __name__ == "__main__":
    main()
