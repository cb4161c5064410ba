"""The ledger signature of a plain batch: every row's kind, key, subject and payload field names, and
the run summaries, as JSON. Run it on two commits and compare the files: a refactoring that changes
none of them is, for the ledger, no behaviour change (issue 27).

    PYTHONPATH=src .venv/bin/python tools/ledger_signature.py > before.json   # on the old commit
    PYTHONPATH=src .venv/bin/python tools/ledger_signature.py > after.json    # on the new one
    cmp before.json after.json

The batch is the demo brand's first two posts of 2026-W48 against the tests' fake OpenAI server on a
fixed port (keys depend on the endpoint's address), run twice (the second run must reuse everything).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from estampille.ledger import Ledger  # noqa: E402
from estampille.render.tiny import build_tiny_model  # noqa: E402
from estampille.settings import Settings  # noqa: E402
from estampille.stages import run_batch  # noqa: E402
from tests.conftest import DEMO_BRAND, fake_llm_env, keep_posts  # noqa: E402
from tests.fake_openai import FakeOpenAI  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=47311, help="the fake LLM server's port (part of the keys)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ledger-signature-"))
    try:
        (root / "home" / "models").mkdir(parents=True)
        build_tiny_model(root / "home" / "models" / "tiny-sd")
        brand = root / "brand"
        shutil.copytree(DEMO_BRAND, brand)
        keep_posts(brand, ["levain-lundi", "sourdough-linkedin"])
        server = FakeOpenAI(port=args.port).start()
        try:
            settings = Settings.from_env(
                env={
                    "ESTAMPILLE_HOME": str(root / "home"),
                    "ESTAMPILLE_OUT": str(root / "out"),
                    **fake_llm_env(server.base_url),
                }
            )
            summaries = [run_batch(brand, "2026-W48", settings) for _ in range(2)]
        finally:
            server.stop()
        ledger = Ledger(settings.ledger_url)
        rows = [(e.kind, e.key, e.subject, sorted(e.payload)) for e in ledger.events()]
        ledger.close()
        for summary in summaries:
            for where in ("run_dir", "review_page", "ledger"):
                summary.pop(where)
        print(json.dumps({"rows": rows, "summaries": summaries}, indent=1, default=str))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
