"""A client of `incident-loop local start-api` that can send anything, and reads the database as the admin."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from incident_loop.auth.tokens import issue
from incident_loop_dev.local.keys import local_keys

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any  # JSON when it parses, else the text


class LocalApi:
    """A client of the local API that can send anything: raw bytes, any content type, no token."""

    def __init__(self, base: str, admin_url: str, env: dict[str, str], logs: Path | None = None):
        self.base, self.admin_url, self.env, self.logs = base, admin_url, env, logs

    def server_log(self, last: int = 6000) -> str:
        """The tail of the server's stderr (the functions' logs), to explain a failure."""
        return self.logs.read_text(errors="replace")[-last:] if self.logs else ""

    def token(self, tenant: str, role: str | None = None, subject: str | None = None) -> str:
        """A token signed with the keys `local start-api` verifies with (what `local token` prints)."""
        return issue(local_keys(self.admin_url), tenant, role, subject=subject)

    def send(self, method: str, path: str, token: str | None = None, *, json_body: Any = None,
             raw: bytes | None = None, content_type: str | None = "application/json",
             headers: dict[str, str] | None = None) -> Answer:
        data = raw if raw is not None else None if json_body is None else json.dumps(json_body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if content_type is not None:
            request.add_header("Content-Type", content_type)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, found, text = response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as exc:
            status, found, text = exc.code, dict(exc.headers), exc.read().decode()
        try:
            return Answer(status, found, json.loads(text))
        except json.JSONDecodeError:
            return Answer(status, found, text)

    def queues(self) -> dict[str, int]:
        return dict(self.send("GET", "/_local/queues").body["queues"])

    def dead_letters(self) -> dict[str, int]:
        """The dead-letter queues that hold anything."""
        return {name: n for name, n in self.queues().items() if name.endswith("DLQ") and n}

    def drained(self, timeout: float = 90) -> None:
        """Wait until every source queue is empty twice in a row (the consumers have caught up)."""
        deadline, quiet, depths = time.monotonic() + timeout, 0, {}
        while time.monotonic() < deadline:
            depths = {name: n for name, n in self.queues().items() if not name.endswith("DLQ")}
            quiet = quiet + 1 if not any(depths.values()) else 0
            if quiet >= 2:
                return
            time.sleep(0.3)
        raise AssertionError(f"queues did not drain: {depths}")

    def snapshot(self) -> dict[str, tuple[int, str]]:
        """Every table of the application, as the admin (row-level security does not apply): rows and digest."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            tables = [r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename").fetchall()]
            out = {}
            for table in tables:
                query = sql.SQL("SELECT count(*), coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '')"
                                " FROM {} t").format(sql.Identifier(table))
                count, digest = conn.execute(query).fetchone()  # type: ignore[misc]
                out[table] = (int(count), str(digest))
            return out
