"""The local token signing keys: one key set per database, so `local token` and `local start-api` agree.

Kept in the database they serve (schema `incident_loop_local`, written as the admin; the functions'
role has no access to it). Deployed, the keys live in the ApiSigningSecret of the template instead.
"""

from __future__ import annotations

import psycopg

from incident_loop.auth.tokens import KeySet

_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS incident_loop_local;
CREATE TABLE IF NOT EXISTS incident_loop_local.signing_keys (
    id        INT PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    document  TEXT NOT NULL
);
REVOKE ALL ON SCHEMA incident_loop_local FROM PUBLIC;
"""


def local_keys(admin_url: str) -> KeySet:
    """This database's key set, created on first use (concurrent first uses agree on one)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext('incident_loop_local.signing_keys'))")
        try:
            conn.execute(_SCHEMA)
            row = conn.execute("SELECT document FROM incident_loop_local.signing_keys WHERE id = 1").fetchone()
            if row is None:
                keys = KeySet.generate()
                conn.execute("INSERT INTO incident_loop_local.signing_keys (id, document) VALUES (1, %s)",
                             (keys.dumps(),))
                return keys
            return KeySet.parse(row[0])
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext('incident_loop_local.signing_keys'))")


def rotate_local_keys(admin_url: str) -> KeySet:
    """Add a new active key beside the current ones."""
    keys = local_keys(admin_url).rotated()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("UPDATE incident_loop_local.signing_keys SET document = %s WHERE id = 1", (keys.dumps(),))
    return keys
