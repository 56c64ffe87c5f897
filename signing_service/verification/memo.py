"""What a verification found that depends only on the document's bytes, kept for the next
verification of the same document.

The same signed decision is verified again and again: by every citizen who scans its QR code,
by the document-management system that re-checks what it stores, by the receiving agency.
The comparison of each revision with the one before it, the cryptographic integrity of each
signature and timestamp, and the byte-level checks are pure functions of the file, so they are
kept per document (keyed by its SHA-256, computed anyway for the report) in a bounded LRU.
What depends on the moment — chains, revocation status, timestamps' trust — is judged again on
every verification.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

# Bump when the difference policy or the integrity checks change meaning.
FACTS_VERSION = 3


@dataclass
class RevisionMemo:
    """Per-document results of :class:`.modifications.RevisionAnalysis`."""

    changes: dict[Any, Any] = field(default_factory=dict)
    stray: list[tuple[int, str]] | None = None
    stray_from: int = 0
    # revision → its first repeated dictionary key (a DuplicateKey), or None
    duplicates: dict[int, Any] = field(default_factory=dict)
    xref_damage: list[tuple[int, str]] | None = None


@dataclass
class DocumentFacts:
    """Byte-determined results of one document."""

    revisions: RevisionMemo = field(default_factory=RevisionMemo)
    integrity: dict[Any, Any] = field(default_factory=dict)  # (field, revision) → result
    tokens: dict[Any, Any] = field(default_factory=dict)  # (token digest, imprint) → result


class FactsCache:
    """At most ``maxsize`` documents' facts, least recently used dropped first."""

    def __init__(self, maxsize: int = 128) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[str, DocumentFacts] = OrderedDict()
        self._lock = threading.Lock()

    def facts(self, sha256: str) -> DocumentFacts:
        """The facts kept for the document with this SHA-256 (a fresh, empty record if none)."""
        key = f"{FACTS_VERSION}:{sha256}"
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
            found = self._items[key] = DocumentFacts()
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
            return found

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


FACTS = FactsCache()
