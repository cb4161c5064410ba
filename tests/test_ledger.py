"""The ledger, on SQLite and on PostgreSQL (when ESTAMPILLE_TEST_POSTGRES_URL names a server, as
.ci/run does): idempotent appends, concurrent writers, and verify naming the first edited,
deleted or reordered row."""

from __future__ import annotations

import itertools
import multiprocessing
import os

import pytest
from sqlalchemy import text

from estampille.cli import main
from estampille.ledger import Ledger
from estampille.ledger.chain import row_hash
from estampille.ledger.schema import metadata
from estampille.records import Kind

POSTGRES = os.environ.get("ESTAMPILLE_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    if not POSTGRES:
        pytest.skip("set ESTAMPILLE_TEST_POSTGRES_URL (see .ci/postgres.sh) to run the ledger on PostgreSQL")
    from sqlalchemy import create_engine

    engine = create_engine(POSTGRES)
    metadata.drop_all(engine)  # a clean ledger for every test
    engine.dispose()
    return POSTGRES


@pytest.fixture
def ledger(ledger_url):
    store = Ledger(ledger_url)
    for i in range(1, 6):
        store.append(
            "draft.created",
            f"key-{i}",
            {"n": i, "text": f"variante {i} é"},
            brand="demo",
            week="2026-W48",
            subject=f"slot-{i}",
        )
    yield store
    store.close()


def _sql(ledger, statement, **params):
    with ledger.engine.begin() as conn:
        return conn.execute(text(statement), params)


def test_chain_verifies_and_links_each_row_to_the_previous(ledger):
    report = ledger.verify()
    assert report.ok and report.rows == 5
    events = ledger.events()
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    assert events[0].payload == {"n": 1, "text": "variante 1 é"}


def test_appending_an_existing_key_returns_the_stored_event_and_adds_nothing(ledger):
    again = ledger.append("draft.created", "key-3", {"n": 999})
    assert again.created is False and again.payload == {"n": 3, "text": "variante 3 é"}
    assert ledger.count() == 5


def test_edited_payload_is_named(ledger):
    _sql(ledger, "UPDATE events SET payload = :p WHERE seq = 3", p='{"n":3,"text":"-30%"}')
    report = ledger.verify()
    assert not report.ok and report.first_bad_seq == 3 and "edited" in report.reason


def test_edited_row_with_recomputed_hash_breaks_the_next_link(ledger):
    row = _sql(
        ledger, "SELECT prev_hash, seq, key, kind, brand, week, subject, created_at FROM events WHERE seq = 2"
    ).one()
    forged_payload = '{"n":2,"text":"forged"}'
    forged = row_hash(row[0], row[1], row[2], row[3], row[4], row[5], row[6], forged_payload, row[7])
    _sql(ledger, "UPDATE events SET payload = :p, hash = :h WHERE seq = 2", p=forged_payload, h=forged)
    report = ledger.verify()
    assert not report.ok and report.first_bad_seq == 3


def test_deleted_row_is_named(ledger):
    _sql(ledger, "DELETE FROM events WHERE seq = 2")
    report = ledger.verify()
    assert not report.ok and report.first_bad_seq == 3 and "deleted" in report.reason


def test_reordered_rows_are_named(ledger):
    rows = {r[0]: r[1:] for r in _sql(ledger, "SELECT seq, key, payload, subject FROM events WHERE seq IN (2, 3)")}
    _sql(ledger, "UPDATE events SET key = 'tmp' WHERE seq = 2")
    for seq, other in ((3, 2), (2, 3)):
        key, payload, subject = rows[other]
        _sql(
            ledger,
            "UPDATE events SET key = :k, payload = :p, subject = :s WHERE seq = :seq",
            k=key,
            p=payload,
            s=subject,
            seq=seq,
        )
    report = ledger.verify()
    assert not report.ok and report.first_bad_seq == 2


def _writer(url: str, brand: str, count: int) -> None:
    store = Ledger(url)
    for i in range(count):
        store.append("draft.created", f"{brand}-{i}", {"i": i}, brand=brand, week="2026-W48")
    store.close()


def test_two_batches_writing_at_once_keep_the_chain_valid(ledger):
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_writer, args=(ledger.url, brand, 40)) for brand in ("levain", "doree")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
        assert writer.exitcode == 0
    assert ledger.count() == 85 and ledger.verify().ok
    assert {e.brand for e in ledger.events()} == {"demo", "levain", "doree"}


def test_cli_verify_reports_ok_then_broken(ledger, capsys):
    assert main(["ledger", "verify", "--ledger", ledger.url]) == 0
    assert "5 rows" in capsys.readouterr().out
    _sql(ledger, "UPDATE events SET kind = 'render.created' WHERE seq = 4")
    assert main(["ledger", "verify", "--ledger", ledger.url]) == 1
    assert "row 4" in capsys.readouterr().err


def test_cli_verify_without_a_ledger_says_what_to_do(capsys):
    assert main(["ledger", "verify"]) == 1
    assert "run a batch first" in capsys.readouterr().err


def test_unopenable_ledger_is_a_clear_error(tmp_path):
    from estampille.errors import LedgerError

    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(LedgerError, match="cannot open the ledger"):
        Ledger(f"sqlite:///{tmp_path / 'dir.sqlite'}")


def test_password_never_appears_in_messages():
    store = Ledger.__new__(Ledger)
    store.url = "postgresql://estampille:hunter2@db.local/ledger"
    assert "hunter2" not in store.safe_url


def test_the_migrations_build_the_table_the_code_reads_and_writes(ledger_url):
    """m001 is fixed DDL: what the migrations create must still be the live `events_table`, or a
    column added to the code without its own migration would be missing on existing ledgers."""
    from sqlalchemy import inspect

    from estampille.ledger.schema import events_table

    store = Ledger(ledger_url)
    try:
        found = inspect(store.engine)
        columns = {c["name"]: (c["nullable"], str(c["type"]).split("(")[0]) for c in found.get_columns("events")}
        expected = {c.name: (c.nullable, str(c.type).split("(")[0]) for c in events_table.columns}
        assert {k: v[0] for k, v in columns.items()} == {k: v[0] for k, v in expected.items()}
        assert set(columns) == set(expected)
        indexed = {tuple(i["column_names"]) for i in found.get_indexes("events")}
        assert {("kind",), ("brand",), ("subject",)} <= indexed
        assert store.append(Kind.DRAFT_CREATED, "k", {}).kind == "draft.created"  # stored as its text
        assert [e.key for e in store.events(kind=Kind.DRAFT_CREATED)] == ["k"]
    finally:
        store.close()
