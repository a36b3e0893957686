"""Fault injection for the fault tests and probes: PostgreSQL refused, black-holed, locked, killed or cut.

Each injector restores what it broke, so a test reads: break it, call, assert the bounded answer,
restore, redeliver, assert nothing was lost and nothing duplicated (tenant_rows against a fault-free run).
FaultProxy sits between the functions and PostgreSQL when they run in another process (`local start-api`).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from incident_loop_dev.local.services import FUNCTION_ROLE, free_port

# The answer-time bound every fault test asserts: well under API Gateway's 29 s and the consumers'
# 30 s function timeout. A correctness bound (nothing hangs), not a benchmark.
BOUND_S = 10.0


def refused_url() -> str:
    """A PostgreSQL URL on a port where nothing listens: every connect is refused at once."""
    return f"postgresql://{FUNCTION_ROLE}@127.0.0.1:{free_port()}/postgres"


@contextmanager
def black_hole() -> Iterator[str]:
    """A TCP listener on 127.0.0.1 that accepts every connection and never says a word; its URL."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"postgresql://{FUNCTION_ROLE}@127.0.0.1:{server.getsockname()[1]}/postgres"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


@contextmanager
def locked(admin_url: str, table: str, hold_s: float = 20.0) -> Iterator[None]:
    """Another (admin) connection holds ACCESS EXCLUSIVE on `table` until the block ends (at most hold_s)."""
    ready, release = threading.Event(), threading.Event()

    def hold() -> None:
        with psycopg.connect(admin_url) as conn, conn.transaction():
            conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(table)))
            ready.set()
            release.wait(hold_s)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert ready.wait(5), f"could not lock {table}"
    try:
        yield
    finally:
        release.set()
        holder.join()


def kill_function_backends(admin_conn: psycopg.Connection[Any], *, waiting_on_lock: bool = False) -> int:
    """pg_terminate_backend every backend of the functions' role on this database, waiting until each is gone."""
    rows = admin_conn.execute(
        "SELECT pg_terminate_backend(pid, 5000) AS killed FROM pg_stat_activity"
        " WHERE datname = current_database() AND usename = %(role)s AND pid <> pg_backend_pid()"
        " AND (NOT %(lock)s OR wait_event_type = 'Lock')",
        {"role": FUNCTION_ROLE, "lock": waiting_on_lock},
    ).fetchall()
    return sum(1 for r in rows if r["killed"])


class LockWatcher(threading.Thread):
    """In the background: as soon as a function backend waits on a lock, terminate it (`killed` counts)."""

    def __init__(self, admin_url: str, within_s: float = 8.0) -> None:
        super().__init__(daemon=True)
        self.admin_url, self.within_s, self.killed = admin_url, within_s, 0
        self.start()

    def run(self) -> None:
        deadline = time.monotonic() + self.within_s
        with psycopg.connect(self.admin_url, autocommit=True, row_factory=dict_row) as admin:
            while time.monotonic() < deadline and not self.killed:
                self.killed = kill_function_backends(admin, waiting_on_lock=True)
                time.sleep(0.02)


def note(**figures: Any) -> None:
    """With FAULT_FIGURES=path set, append this test's figures to it as a JSON line (docs/reliability.md)."""
    path = os.environ.get("FAULT_FIGURES")
    if path:
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
        with open(path, "a") as out:
            out.write(json.dumps({"test": test, **figures}) + "\n")


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    """What `call` returned, and how long it took (time.monotonic)."""
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def tenant_rows(admin_conn: psycopg.Connection[Any], tenant: str) -> dict[str, int]:
    """Rows per table of one tenant (what 'nothing lost or duplicated' counts): every table with a tenant_id,
    and every table with an incident_id but no tenant_id, through its incident."""
    columns: dict[str, set[str]] = {}
    for r in admin_conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
            " AND column_name IN ('tenant_id', 'incident_id')").fetchall():
        columns.setdefault(r["table_name"], set()).add(r["column_name"])
    counts = {}
    for table, found in sorted(columns.items()):
        query = (sql.SQL("SELECT count(*) AS n FROM {} WHERE tenant_id = %(t)s") if "tenant_id" in found else
                 sql.SQL("SELECT count(*) AS n FROM {} x JOIN incidents i ON i.id = x.incident_id"
                         " WHERE i.tenant_id = %(t)s"))
        row = admin_conn.execute(query.format(sql.Identifier(table)), {"t": tenant}).fetchone()
        counts[table] = int(row["n"])
    note(rows=sum(counts.values()), tables=len(counts))
    return counts


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of PostgreSQL, for functions that run in another process.

    forward (the default) relays every connection; down() refuses new connections and cuts the
    established ones (PostgreSQL stopped); black_hole() cuts the established ones and accepts new
    ones without a word (a failover to an endpoint that does not answer); restore() forwards again.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.mode = "forward"
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._listen()

    def url(self, database_url: str) -> str:
        """`database_url` with its host and port replaced by this proxy's."""
        return psycopg.conninfo.make_conninfo(database_url, host="127.0.0.1", port=str(self.port))

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client = listener.accept()[0]
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._open.append(client)
            if self.mode == "black_hole":
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.append(upstream)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Cut every connection through the proxy (both ends see it close)."""
        with self._lock:
            open_, self._open = self._open, []
        for sock in open_:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def down(self) -> None:
        self.mode = "down"
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self.cut()

    def black_hole(self) -> None:
        self.mode = "black_hole"
        self.cut()

    def restore(self) -> None:
        self.cut()  # the black hole's held connections
        self.mode = "forward"
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        self.down()
