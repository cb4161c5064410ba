"""Append and verify the hash chain.

Each row stores the SHA-256 of its predecessor's hash and its own content (sequence number
included), so an edited, deleted or reordered row breaks the chain at a row `verify` can name.
Every append carries an idempotency key: appending an existing key returns the stored event
and adds nothing, which is what lets a crashed or repeated batch rerun without duplicates.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from ..errors import LedgerError
from .schema import events_table, migrate

GENESIS = "0" * 64
_append_lock = threading.Lock()


def canonical_json(value: Any) -> str:
    """One text per value: sorted keys, no spaces, UTF-8 kept (what the hash covers)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def row_hash(
    prev_hash: str,
    seq: int,
    key: str,
    kind: str,
    brand: str | None,
    week: str | None,
    subject: str | None,
    payload: str,
    created_at: str,
) -> str:
    content = canonical_json([prev_hash, seq, key, kind, brand, week, subject, payload, created_at])
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Event:
    seq: int
    key: str
    kind: str
    brand: str | None
    week: str | None
    subject: str | None
    payload: dict[str, Any]
    created_at: str
    prev_hash: str
    hash: str
    created: bool = False  # True when this append wrote the row, False when it already existed

    def place(self) -> tuple[str, str, str]:
        """(brand, week, subject) of a run's event: a draft's or an image's rows always carry all
        three; a row without them is not of a run."""
        if not (self.brand and self.week and self.subject):
            raise LedgerError(f"ledger row {self.seq} ({self.key}) names no brand, week and item")
        return self.brand, self.week, self.subject


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    rows: int
    first_bad_seq: int | None = None
    reason: str = ""


def _sqlite_engine(url: str) -> Engine:
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    # pysqlite's own transaction handling defers BEGIN; take the write lock at BEGIN instead,
    # so two writers cannot both read the same chain head (SQLAlchemy's documented recipe).
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def safe_url(url: str) -> str:
    """A database URL without its password, fit for messages and logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


class Ledger:
    """The event store behind one SQLAlchemy URL (SQLite by default, Postgres by URL)."""

    def __init__(self, url: str):
        self.url = url
        try:
            self.engine = _sqlite_engine(url) if url.startswith("sqlite") else create_engine(url)
            with self.engine.begin() as conn:
                migrate(conn)
        except (SQLAlchemyError, OSError) as exc:
            raise LedgerError(
                f"cannot open the ledger at {self.safe_url}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}"
            ) from None

    @property
    def safe_url(self) -> str:
        return safe_url(self.url)

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ writing
    def append(
        self,
        kind: str,
        key: str,
        payload: dict[str, Any],
        *,
        brand: str | None = None,
        week: str | None = None,
        subject: str | None = None,
    ) -> Event:
        """Append one event unless `key` is already recorded; return the stored event."""
        kind = str(kind)  # a records.Kind is stored as its text, by every database driver
        body = canonical_json(payload)
        try:
            with _append_lock, self.engine.begin() as conn:
                if self.engine.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(7331)"))
                existing = conn.execute(select(events_table).where(events_table.c.key == key)).first()
                if existing is not None:
                    return _to_event(existing)
                head = conn.execute(
                    select(events_table.c.seq, events_table.c.hash).order_by(events_table.c.seq.desc()).limit(1)
                ).first()
                seq, prev = (head.seq + 1, head.hash) if head else (1, GENESIS)
                created_at = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
                digest = row_hash(prev, seq, key, kind, brand, week, subject, body, created_at)
                row = dict(
                    seq=seq,
                    key=key,
                    kind=kind,
                    brand=brand,
                    week=week,
                    subject=subject,
                    payload=body,
                    created_at=created_at,
                    prev_hash=prev,
                    hash=digest,
                )
                conn.execute(events_table.insert().values(**row))
        except OperationalError as exc:
            raise LedgerError(
                f"cannot write to the ledger at {self.safe_url}: {str(exc.orig) if exc.orig else exc}"
            ) from None
        return Event(seq, key, kind, brand, week, subject, payload, created_at, prev, digest, created=True)

    # ------------------------------------------------------------------ reading
    def get(self, key: str) -> Event | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(events_table).where(events_table.c.key == key)).first()
        return _to_event(row) if row else None

    def events(self, kind: str | None = None, brand: str | None = None, week: str | None = None) -> list[Event]:
        query = select(events_table).order_by(events_table.c.seq)
        for column, value in (("kind", kind), ("brand", brand), ("week", week)):
            if value is not None:
                query = query.where(events_table.c[column] == str(value))
        with self.engine.connect() as conn:
            return [_to_event(row) for row in conn.execute(query)]

    def head(self) -> int:
        """The last row's sequence number (0 when empty): a cheap "has anything changed" mark."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.max(events_table.c.seq))).scalar_one() or 0

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(events_table)).scalar_one()

    def verify(self) -> VerifyReport:
        """Recompute the chain from the first row; name the first row that does not fit."""
        prev, expected_seq, rows = GENESIS, 1, 0
        with self.engine.connect() as conn:
            for row in conn.execute(select(events_table).order_by(events_table.c.seq)):
                rows += 1
                if row.seq != expected_seq:
                    return VerifyReport(
                        False,
                        rows,
                        row.seq,
                        f"row {row.seq} follows row {expected_seq - 1}: row(s) {expected_seq}..{row.seq - 1} deleted",
                    )
                if row.prev_hash != prev:
                    return VerifyReport(
                        False,
                        rows,
                        row.seq,
                        f"row {row.seq} does not point to the hash of row {row.seq - 1} "
                        "(a row was deleted, reordered or rewritten)",
                    )
                digest = row_hash(
                    row.prev_hash,
                    row.seq,
                    row.key,
                    row.kind,
                    row.brand,
                    row.week,
                    row.subject,
                    row.payload,
                    row.created_at,
                )
                if digest != row.hash:
                    return VerifyReport(
                        False,
                        rows,
                        row.seq,
                        f"row {row.seq} ({row.kind}) was edited: its content no longer matches its hash",
                    )
                prev, expected_seq = row.hash, expected_seq + 1
        return VerifyReport(True, rows)


def _to_event(row: Any) -> Event:
    return Event(
        seq=row.seq,
        key=row.key,
        kind=row.kind,
        brand=row.brand,
        week=row.week,
        subject=row.subject,
        payload=json.loads(row.payload),
        created_at=row.created_at,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )
