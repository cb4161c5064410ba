"""A weekly batch run as a Prefect deployment through a real process worker, against the same
batch run by `estampille run`, on the same machine, one after the other (issue: the worker
path used to cost ~4x).

Needs a Prefect server (PREFECT_API_URL) with the deployments of prefect.yaml and the
`estampille` process work pool (README, "Scheduling"). Each side gets a fresh output and data
folder, so both do all the work: drafts with the embedded model unless ESTAMPILLE_LLM_* is set.

    PREFECT_API_URL=http://127.0.0.1:4200/api .venv/bin/python bench/deployment_vs_cli.py --at 2026-12-07T07:00

The deployment run is scheduled for --at (Paris time) and, if that is still to come, started now,
as "run now" on a scheduled run does: it keeps its expected start time, so it makes that week.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def fresh_env(root: Path) -> dict[str, str]:
    home = root / "home"
    (home / "models").mkdir(parents=True)
    tiny = REPO / ".estampille" / "models" / "tiny-sd"
    if tiny.is_dir():
        os.symlink(tiny, home / "models" / "tiny-sd")
    return {**os.environ, "ESTAMPILLE_HOME": str(home), "ESTAMPILLE_OUT": str(root / "out")}


async def scheduled_run(when: dt.datetime) -> str:
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    async with get_client() as client:
        deployment = await client.read_deployment_by_name("weekly-visual-batch/weekly-visual-batch")
        run = await client.create_flow_run_from_deployment(deployment.id, state=Scheduled(scheduled_time=when))
        now = dt.datetime.now(dt.UTC)
        if when > now:
            await client.set_flow_run_state(run.id, Scheduled(scheduled_time=now), force=True)
        return str(run.id)


async def final_state(run_id: str):
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        return run.state, run.start_time, run.end_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--at", default="2026-12-07T07:00", help="the run's scheduled time, Paris time")
    args = parser.parse_args()
    from estampille.brand import week_at

    monday = dt.datetime.fromisoformat(args.at).replace(tzinfo=ZoneInfo("Europe/Paris"))
    args.week = week_at(monday, "Europe/Paris")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = fresh_env(Path(tmp) / "worker")
        run_id = asyncio.run(scheduled_run(monday))
        started = time.perf_counter()
        subprocess.run(
            [str(BIN / "prefect"), "worker", "start", "--pool", "estampille", "--run-once"],
            env=env,
            cwd=tmp,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        worker_s = time.perf_counter() - started
        state, start, end = asyncio.run(final_state(run_id))
        assert state.is_completed(), state
        rows.append(("deployment run, process worker", worker_s, (end - start).total_seconds()))
        assert (Path(tmp) / "worker" / "out" / "demo" / args.week / "review.html").is_file()

        env = fresh_env(Path(tmp) / "cli")
        env.pop("PREFECT_API_URL", None)  # the CLI's default: Prefect's local mode
        started = time.perf_counter()
        subprocess.run(
            [str(BIN / "estampille"), "run", "--brand", str(REPO / "brand_assets" / "demo"), "--week", args.week],
            env=env,
            cwd=tmp,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        cli_s = time.perf_counter() - started
        rows.append(("estampille run (local mode)", cli_s, None))
    print(f"\nweek {args.week}, scheduled {monday.isoformat()}, {os.cpu_count()} cores")
    print(f"{'path':<34} {'wall s':>8} {'flow run s':>11} {'ratio':>6}")
    for name, wall, flow_s in rows:
        print(f"{name:<34} {wall:>8.1f} {flow_s if flow_s is not None else float('nan'):>11.1f} {wall / cli_s:>6.2f}")


if __name__ == "__main__":
    main()
