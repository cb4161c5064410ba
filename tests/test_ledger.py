"""The ledger: idempotent appends, and verify names the first edited, deleted or reordered row."""

from __future__ import annotations

import sqlite3

import pytest

from estampille.cli import main
from estampille.ledger import Ledger


@pytest.fixture
def ledger(tmp_path):
    store = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    for i in range(1, 6):
        store.append("draft.created", f"key-{i}", {"n": i, "text": f"variante {i} é"}, brand="demo",
                     week="2026-W48", subject=f"slot-{i}")
    yield store
    store.close()


def _db(tmp_path):
    return sqlite3.connect(tmp_path / "ledger.sqlite", isolation_level=None)


def test_chain_verifies_and_links_each_row_to_the_previous(ledger):
    report = ledger.verify()
    assert report.ok and report.rows == 5
    events = ledger.events()
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert all(b.prev_hash == a.hash for a, b in zip(events, events[1:]))
    assert events[0].payload == {"n": 1, "text": "variante 1 é"}


def test_appending_an_existing_key_returns_the_stored_event_and_adds_nothing(ledger):
    again = ledger.append("draft.created", "key-3", {"n": 999})
    assert again.created is False and again.payload == {"n": 3, "text": "variante 3 é"}
    assert ledger.count() == 5


def test_edited_payload_is_named(ledger, tmp_path):
    _db(tmp_path).execute("UPDATE events SET payload = '{\"n\":3,\"text\":\"-30%\"}' WHERE seq = 3")
    report = ledger.verify()
    assert not report.ok and report.first_bad_seq == 3 and "edited" in report.reason


def test_edited_row_with_recomputed_hash_breaks_the_next_link(ledger, tmp_path):
    from estampille.ledger.chain import row_hash

    db = _db(tmp_path)
    row = db.execute("SELECT prev_hash, seq, key, kind, brand, week, subject, created_at FROM events "
                     "WHERE seq = 2").fetchone()
    forged_payload = '{"n":2,"text":"forged"}'
    forged = row_hash(row[0], row[1], row[2], row[3], row[4], row[5], row[6], forged_payload, row[7])
    db.execute("UPDATE events SET payload = ?, hash = ? WHERE seq = 2", (forged_payload, forged))
    report = ledger.verify()
    assert not report.ok and report.first_bad_seq == 3


def test_deleted_row_is_named(ledger, tmp_path):
    _db(tmp_path).execute("DELETE FROM events WHERE seq = 2")
    report = ledger.verify()
    assert not report.ok and report.first_bad_seq == 3 and "deleted" in report.reason


def test_reordered_rows_are_named(ledger, tmp_path):
    db = _db(tmp_path)
    rows = {r[0]: r[1:] for r in db.execute("SELECT seq, key, payload, subject FROM events WHERE seq IN (2, 3)")}
    db.execute("UPDATE events SET key = 'tmp' WHERE seq = 2")
    for seq, other in ((3, 2), (2, 3)):
        db.execute("UPDATE events SET key = ?, payload = ?, subject = ? WHERE seq = ?", (*rows[other], seq))
    report = ledger.verify()
    assert not report.ok and report.first_bad_seq == 2


def test_cli_verify_reports_ok_then_broken(ledger, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    assert main(["ledger", "verify", "--ledger", url]) == 0
    assert "5 rows" in capsys.readouterr().out
    _db(tmp_path).execute("UPDATE events SET kind = 'render.created' WHERE seq = 4")
    assert main(["ledger", "verify", "--ledger", url]) == 1
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
