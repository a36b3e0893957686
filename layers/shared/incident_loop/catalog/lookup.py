"""Looking a failure up in the error catalog (seed 002): exact code first, then message patterns, else a miss.

Not to be confused with grouping.matcher (Bridge 1's grouping of an incident with its siblings) nor with
loop.match_pattern (the Bridge 1 stage that runs it): the catalog is a reviewed list of known errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from incident_loop.categories import Category, from_catalog

CATALOG_FILE = Path(__file__).resolve().with_name("errors.yaml")
EXACT_CONFIDENCE = 1.0
PATTERN_CONFIDENCE = 0.8


@dataclass(frozen=True)
class CatalogEntry:
    code: str
    version: int
    title: str
    category: str  # the catalog's spelling of a row of incident_loop.categories
    severity: str
    is_retryable: bool
    recovery_mode: str
    recovery_suggestion: str
    patterns: tuple[str, ...]

    @property
    def failure_category(self) -> Category:
        """The entry's row of the failure-category table (its category in the loop's spelling too)."""
        return from_catalog(self.category)

    @property
    def entry_id(self) -> str:
        """What failure_matches.catalog_entry_id records: the code at its version."""
        return f"{self.code}@v{self.version}"

    @classmethod
    def from_dict(cls, data: dict[str, Any], version: int) -> CatalogEntry:
        return cls(code=data["code"], version=int(data.get("version", version)), title=data["title"],
                   category=data["category"], severity=data["severity"], is_retryable=bool(data["is_retryable"]),
                   recovery_mode=data["recovery_mode"], recovery_suggestion=data["recovery_suggestion"],
                   patterns=tuple(data.get("patterns") or ()))


@dataclass(frozen=True)
class CatalogMatch:
    match_type: Literal["exact", "pattern", "miss"]
    confidence: float
    entry: CatalogEntry | None

    @property
    def catalog_entry_id(self) -> str | None:
        return self.entry.entry_id if self.entry else None

    @property
    def is_hit(self) -> bool:
        return self.entry is not None


class Catalog:
    """The entries in force, with their patterns compiled once."""

    def __init__(self, entries: list[CatalogEntry]) -> None:
        self.entries = entries
        self._by_code = {e.code: e for e in entries}
        self._patterns = [(re.compile(p, re.IGNORECASE), e) for e in entries for p in e.patterns]

    @classmethod
    def from_file(cls, path: Path = CATALOG_FILE) -> Catalog:
        """The catalog of a YAML file (by default the shipped errors.yaml)."""
        import yaml  # the fallback when the database has no catalog, and the sync: not on every cold start

        data = yaml.safe_load(path.read_text())
        return cls([CatalogEntry.from_dict(e, data["version"]) for e in data["entries"]])

    def match(self, error_code: str, message: str | None) -> CatalogMatch:
        """Exact code (1.0), else the first entry whose pattern finds the message (0.8), else a miss."""
        entry = self._by_code.get(error_code)
        if entry is not None:
            return CatalogMatch("exact", EXACT_CONFIDENCE, entry)
        for pattern, candidate in self._patterns:
            if message and pattern.search(message):
                return CatalogMatch("pattern", PATTERN_CONFIDENCE, candidate)
        return CatalogMatch("miss", 0.0, None)
