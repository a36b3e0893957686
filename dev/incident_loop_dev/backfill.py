"""`incident-loop backfill-provenance`: load historical simulations into costsim_provenance.

JSON (an array or one object) and JSONL files are streamed record by record (ijson for JSON),
so memory stays constant whatever the size: one batch is held at most. Writing overlaps reading:
when the role may write every tenant's rows, each record goes into a COPY straight into the table as
soon as it is read, so PostgreSQL stores one batch while Python parses it (a batch goes in whole
or not at all: the unique index turns back a batch with a stored key, which is then staged, and the
batches after it are probed before they are COPYed). Any other batch goes through COPY into a staging
table and an INSERT ... ON CONFLICT on (tenant_id, input_hash), so re-running a file inserts nothing
twice. Each tenant's rows are then
written and read under that tenant's scope (row-level security), so the command works as the
functions' role as well as the owner.

Python's cyclic garbage collector is paused for the run (the objects of a record die young and make
no cycles, but every collection would walk them all): parsing costs a third as much without it.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, islice
from pathlib import Path
from typing import Any, Literal

import ijson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from tqdm import tqdm

from incident_loop.costsim.models import drift
from incident_loop.db import connect
from incident_loop.schemas.costsim import Plan
from incident_loop.stores.costsim import copy_new, insert_batch, stored, writes_every_tenant

SUFFIXES = (".json", ".jsonl", ".ndjson")
PROGRESS_EVERY = 1000  # JSONL records between two moves of the progress bar


class ProvenanceRecord(BaseModel):
    """One historical simulation as the files carry it."""

    model_config = ConfigDict(extra="ignore")

    tenant_id: str = Field(min_length=1, max_length=128)
    plan: Plan
    v1_version: str = Field(min_length=1)
    v1_cost_usd: float = Field(ge=0)
    v2_version: str | None = None
    v2_cost_usd: float | None = Field(default=None, ge=0)
    drift: float | None = Field(default=None, ge=0)
    served: Literal["v1", "v2"] = "v1"  # as the table allows: another value stopped the whole run
    # When it was simulated: history without a time was stamped now and counted as the last hour's drift.
    created_at: datetime
    input_hash: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ProvenanceRecord:
        if (self.v2_cost_usd is None) != (self.v2_version is None):
            raise ValueError("v2_cost_usd and v2_version go together")
        if self.served == "v2" and self.v2_cost_usd is None:
            raise ValueError("served v2 needs v2_cost_usd")
        canonical = self.plan.canonical_json()
        computed = self.plan.input_hash(canonical)
        if self.input_hash is not None and self.input_hash != computed:
            raise ValueError("input_hash does not match the plan")
        self.__dict__["_canonical"], self.__dict__["_hash"] = canonical, computed
        return self

    def row(self) -> tuple[Any, ...]:
        """The record as a costsim_provenance row, in COLUMNS order (the plan's JSON computed once)."""
        computed = drift(self.v1_cost_usd, self.v2_cost_usd) if self.v2_cost_usd is not None else None
        return (self.__dict__["_hash"], self.tenant_id, self.__dict__["_canonical"],
                self.v1_version, self.v1_cost_usd, self.v2_version, self.v2_cost_usd,
                self.drift if self.drift is not None else computed, self.served, "backfill",
                self.created_at)


@dataclass
class Summary:
    read: int = 0
    inserted: int = 0
    duplicates: int = 0
    already_stored: int = 0
    invalid: list[str] = field(default_factory=list)
    verified: int = 0
    mismatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def files_of(directory: Path | None, file: Path | None) -> list[Path]:
    if file is not None:
        return [file]
    assert directory is not None
    return sorted(p for p in directory.rglob("*") if p.suffix in SUFFIXES and p.is_file())


def records(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, a parsed object, a JSONL line, or the error) for every record of a file, streamed."""
    if path.suffix == ".json":
        with path.open("rb") as handle:
            head = handle.read(64).lstrip()
            handle.seek(0)
            try:
                prefix = "item" if head.startswith(b"[") else ""
                for n, obj in enumerate(ijson.items(handle, prefix, use_float=True), 1):
                    yield f"{path}:item {n}", obj
            except ijson.JSONError as exc:
                yield f"{path}: unreadable JSON", exc
        return
    with path.open(encoding="utf-8") as handle:
        for n, line in enumerate(handle, 1):
            if line.strip():
                yield f"{path}:{n}", line


def _valid(stream: Iterator[tuple[str, Any]], summary: Summary, bar: Any) -> Iterator[tuple[str, ProvenanceRecord]]:
    for where, obj in stream:
        summary.read += 1
        bar.update(1)
        if isinstance(obj, Exception):
            summary.invalid.append(f"{where}: {obj}")
            continue
        try:
            # pydantic parses a JSONL line itself (faster than json.loads, and bad JSON is a ValidationError)
            yield where, (ProvenanceRecord.model_validate_json(obj) if isinstance(obj, str)
                          else ProvenanceRecord.model_validate(obj))
        except ValidationError as exc:
            summary.invalid.append(_invalid(where, exc))


def _invalid(where: str, exc: ValidationError) -> str:
    first = exc.errors()[0]
    return f"{where}: {'.'.join(map(str, first['loc'])) or 'record'}: {first['msg']}"


def rows_of(paths: list[Path], summary: Summary, bar: Any) -> Iterator[tuple[Any, ...]]:
    """The files' valid records as rows, counted into the summary (the invalid ones with where and why).

    A JSONL line goes from its text to its row in one step, without the generators the other readers
    go through: this loop is most of the backfill's Python, once per record.
    """
    validate = ProvenanceRecord.model_validate_json
    for path in paths:
        if path.suffix == ".json":
            for _, record in _valid(records(path), summary, bar):
                yield record.row()
            continue
        shown = summary.read
        with path.open(encoding="utf-8") as handle:
            for n, line in enumerate(handle, 1):
                if line.isspace():
                    continue
                summary.read += 1
                if summary.read - shown >= PROGRESS_EVERY:
                    bar.update(summary.read - shown)
                    shown = summary.read
                try:
                    row = validate(line).row()
                except ValidationError as exc:
                    summary.invalid.append(_invalid(f"{path}:{n}", exc))
                    continue
                yield row
        bar.update(summary.read - shown)


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection in the block (reference counting still frees everything acyclic)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def run(paths: list[Path], dsn: str | None = None, *, dry_run: bool = False, verify: bool = False,
        batch_size: int = 5000, progress: bool = True) -> Summary:
    """Backfill (or, with dry_run, only check) the files; with verify, compare stored rows to them."""
    summary = Summary()
    bar = tqdm(unit=" rec", disable=not progress, file=sys.stderr, desc="provenance")
    with connect(dsn) as conn, collector_paused():
        if verify or dry_run:
            valid = _valid((item for path in paths for item in records(path)), summary, bar)
            while batch := list(islice(valid, batch_size)):
                rows = [rec.row() for _, rec in batch]
                with conn.transaction():  # the tenant scopes set along the way end with it
                    if verify:
                        _verify(conn, batch, rows, summary)
                    else:
                        summary.already_stored += len(stored(conn, [(r[1], r[0]) for r in rows]))
        else:
            _load(conn, rows_of(paths, summary, bar), batch_size, summary)
    bar.close()
    return summary


def _load(conn: Any, stream: Iterator[tuple[Any, ...]], batch_size: int, summary: Summary) -> None:
    """Write the rows, a transaction per batch: streamed into COPY as they are read while the batches are
    new (the server stores one row while Python reads the next), staged once some were stored already."""
    every_tenant = writes_every_tenant(conn)
    # A commit need not wait for its WAL to reach the disk: the backfill is idempotent, so what a crash
    # loses (the last batches at most) a re-run restores.
    conn.execute("SET synchronous_commit TO off")
    conn.commit()
    probe = False  # a fresh backfill's keys are new: COPY at once, and let the unique index object
    while (first := next(stream, None)) is not None:
        batch = chain([first], islice(stream, batch_size - 1))
        with conn.transaction():  # the tenant scopes set along the way end with it
            rows, copied = copy_new(conn, batch, probe=probe) if every_tenant else (list(batch), False)
            if copied:
                inserted = len(rows)
            else:  # some were stored already (a re-run, a resumed file): look before COPYing from now on
                probe = every_tenant
                inserted = insert_batch(conn, rows)
        summary.inserted += inserted
        summary.duplicates += len(rows) - inserted


def _verify(conn: Any, batch: list[tuple[str, ProvenanceRecord]], rows: list[tuple[Any, ...]],
            summary: Summary) -> None:
    found = stored(conn, [(r[1], r[0]) for r in rows])
    for (where, _), row in zip(batch, rows, strict=True):
        have = found.get((row[1], row[0]))
        if have is None:
            summary.missing.append(where)
        elif (have["tenant_id"], have["v1_cost_usd"], have["v2_cost_usd"]) != (row[1], row[4], row[6]):
            summary.mismatched.append(f"{where}: stored {have['v1_cost_usd']}/{have['v2_cost_usd']}"
                                      f" != file {row[4]}/{row[6]}")
        else:
            summary.verified += 1
