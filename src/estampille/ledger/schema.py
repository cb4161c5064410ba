"""Ledger tables and their named, append-only migrations (never edit one that has shipped)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, Text, select, text

metadata = MetaData()

migrations_table = Table(
    "schema_migrations",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("applied_at", String(40), nullable=False),
)

events_table = Table(
    "events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("key", String(64), nullable=False, unique=True),
    Column("kind", String(64), nullable=False, index=True),
    Column("brand", String(200), nullable=True, index=True),
    Column("week", String(10), nullable=True),
    Column("subject", String(200), nullable=True, index=True),
    Column("payload", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)


M001_EVENTS = (
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER NOT NULL PRIMARY KEY,
        key VARCHAR(64) NOT NULL UNIQUE,
        kind VARCHAR(64) NOT NULL,
        brand VARCHAR(200),
        week VARCHAR(10),
        subject VARCHAR(200),
        payload TEXT NOT NULL,
        created_at VARCHAR(40) NOT NULL,
        prev_hash VARCHAR(64) NOT NULL,
        hash VARCHAR(64) NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS ix_events_kind ON events (kind)",
    "CREATE INDEX IF NOT EXISTS ix_events_brand ON events (brand)",
    "CREATE INDEX IF NOT EXISTS ix_events_subject ON events (subject)",
)


def _m001_events(conn: Connection) -> None:
    """The events table as first shipped, as plain DDL (SQLite and PostgreSQL): a column added to
    `events_table` later gets its own migration and never changes what this one creates."""
    for statement in M001_EVENTS:
        conn.execute(text(statement))


MIGRATIONS: list[tuple[str, Callable[[Connection], None]]] = [
    ("m001_events", _m001_events),
]


def migrate(conn: Connection) -> None:
    """Apply every migration not yet recorded; safe to call at every start."""
    migrations_table.create(conn, checkfirst=True)
    done = set(conn.execute(select(migrations_table.c.name)).scalars())
    for name, apply in MIGRATIONS:
        if name not in done:
            apply(conn)
            conn.execute(migrations_table.insert().values(name=name, applied_at=dt.datetime.now(dt.UTC).isoformat()))
