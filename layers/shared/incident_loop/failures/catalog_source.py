"""The error catalog failures are matched against: the copy synced into PostgreSQL, read once per container
on a thread of its own within CATALOG_BUDGET_S of the caller's 2 s; the shipped file until it has been read."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from functools import cache

import psycopg
from psycopg.rows import dict_row

from incident_loop.catalog.lookup import Catalog
from incident_loop.catalog.sync import load as load_catalog
from incident_loop.db import conninfo
from incident_loop.observability import logger

# What the catalog's database read may take of a call (the write has the 2 s): libpq's connect timeout is at least
# 2 s, so the read runs on its own thread and the call waits this long for it; the shipped file answers meanwhile.
CATALOG_BUDGET_S = 0.5
CATALOG_RETRY_S = 60.0  # after a read that failed, the file answers for this long before the database is read again


class _CatalogSource:
    """The catalog synced into PostgreSQL, read once per container and kept; until it has been read (the
    database unreachable, slow, or not synced), the shipped file. A read that fails is tried again
    CATALOG_RETRY_S later, so a container that started while the database was down does not match against
    the file for the rest of its life."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reader = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalog-read")
        self._synced: Catalog | None = None
        self._pending: concurrent.futures.Future[Catalog | None] | None = None
        self._next_try = 0.0

    def __call__(self) -> Catalog:
        with self._lock:
            if self._synced is not None:
                return self._synced
            pending = self._pending
            if pending is None and time.monotonic() >= self._next_try:
                pending = self._pending = self._reader.submit(_read_synced)
        if pending is not None:
            try:
                found = pending.result(timeout=CATALOG_BUDGET_S)
            except concurrent.futures.TimeoutError:  # still reading: the file answers this call
                return _shipped()
            with self._lock:
                if self._pending is pending:
                    self._pending = None
                    self._synced = found
                    if found is None:
                        self._next_try = time.monotonic() + CATALOG_RETRY_S
        return self._synced or _shipped()

    def cache_clear(self) -> None:
        """Forget what was read (a cold container; tests)."""
        with self._lock:
            self._synced, self._pending, self._next_try = None, None, 0.0


def _read_synced() -> Catalog | None:
    try:
        with psycopg.connect(conninfo(), connect_timeout=2, options="-c statement_timeout=1000",
                             row_factory=dict_row) as conn:
            return load_catalog(conn)
    except Exception as exc:  # noqa: BLE001 - the secret's read too (AWS): the file answers, the read is tried later
        logger.warning("error catalog not readable from the database, using the shipped file",
                       error=f"{type(exc).__name__}: {exc}")
        return None


@cache
def _shipped() -> Catalog:
    return Catalog.from_file()


catalog = _CatalogSource()
