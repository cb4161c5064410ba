"""Two processes make the same unit of work at once: both must carry on with the one the ledger kept."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from estampille.ledger import Ledger

from .conftest import DEMO_BRAND, DEMO_WEEK

WORKER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from estampille.batch import open_batch
    from estampille.pipeline import Stage
    from estampille.records import Slot
    from estampille.settings import Settings

    name, barrier = sys.argv[1], Path(sys.argv[2])
    batch = open_batch(sys.argv[3], sys.argv[4], Settings.from_env())
    post = batch.bundle.calendar.posts[0]

    def make():
        # Both processes have looked the key up and found nothing; wait for the other one.
        (barrier / name).touch()
        deadline = time.monotonic() + 60
        while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        return Slot(slot_id=f"made-by-{name}", brand=batch.slug, week=batch.week, post=post)

    race = Stage(name="race", task="race", run=lambda batch: None, gives="slots", result=Slot,
                 created="race.created", failed="race.failed")
    kept = batch.record(race, "race-key", None, make)
    print(json.dumps({"kept": kept.slot_id, "counts": batch.counts["race"].__dict__}))
""")


def test_two_processes_racing_on_one_key_both_keep_the_ledger_s_result(settings, tmp_path):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, name, str(barrier), str(DEMO_BRAND), DEMO_WEEK],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    results = [json.loads(w.communicate(timeout=120)[0].strip().splitlines()[-1]) for w in workers]
    assert all(w.returncode == 0 for w in workers)
    ledger = Ledger(settings.ledger_url)
    try:
        recorded = ledger.get("race-key").payload["slot_id"]
        assert sum(e.key == "race-key" for e in ledger.events()) == 1
    finally:
        ledger.close()
    assert recorded in ("made-by-a", "made-by-b")
    assert [r["kept"] for r in results] == [recorded, recorded]  # one payload everywhere
    assert sorted((r["counts"]["new"], r["counts"]["reused"]) for r in results) == [(0, 1), (1, 0)]
