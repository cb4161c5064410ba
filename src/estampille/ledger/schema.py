"""Ledger tables and their named, append-only migrations (never edit one that has shipped)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, Text, select

metadata = MetaData()

migrations_table = Table(
    "schema_migrations", metadata,
    Column("name", String(100), primary_key=True),
    Column("applied_at", String(40), nullable=False),
)

events_table = Table(
    "events", metadata,
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


def _m001_events(conn: Connection) -> None:
    events_table.create(conn, checkfirst=True)


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
            conn.execute(migrations_table.insert().values(
                name=name, applied_at=dt.datetime.now(dt.timezone.utc).isoformat()))
