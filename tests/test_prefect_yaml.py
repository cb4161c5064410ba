"""prefect.yaml: every deployment's entrypoint imports, its parameters fit the flow, its schedule parses."""

from __future__ import annotations

import importlib.util
import inspect
import zoneinfo

import pytest
import yaml
from prefect import Flow

from .conftest import REPO

DEPLOYMENTS = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]


def _flow(entrypoint: str) -> Flow:
    path, _, name = entrypoint.partition(":")
    spec = importlib.util.spec_from_file_location(f"deployment_{name}", REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def test_the_three_deployments_exist():
    assert {d["name"] for d in DEPLOYMENTS} == {"weekly-visual-batch", "competitor-index-refresh", "publish"}


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_entrypoint_and_parameters_resolve(deployment):
    flow = _flow(deployment["entrypoint"])
    assert isinstance(flow, Flow) and flow.name == deployment["name"]
    signature = inspect.signature(flow.fn)
    given = set(deployment.get("parameters", {}))
    assert given <= set(signature.parameters), given - set(signature.parameters)
    required = {n for n, p in signature.parameters.items() if p.default is inspect.Parameter.empty}
    assert required <= given, f"{deployment['name']} lacks {required - given}"
    for parameter in given:
        if parameter == "brand":
            assert (REPO / deployment["parameters"]["brand"] / "brand.yaml").is_file()


def test_schedules_are_valid_crons_in_a_real_timezone():
    import datetime as dt

    from cronsim import CronSim

    weekly = next(d for d in DEPLOYMENTS if d["name"] == "weekly-visual-batch")["schedules"][0]
    assert weekly["timezone"] == "Europe/Paris"
    start = dt.datetime(2026, 11, 22, 12, 0, tzinfo=zoneinfo.ZoneInfo(weekly["timezone"]))
    assert next(CronSim(weekly["cron"], start)) == dt.datetime(2026, 11, 23, 7, 0, tzinfo=start.tzinfo)  # Monday 07:00
    for deployment in DEPLOYMENTS:
        for schedule in deployment.get("schedules", []):
            zoneinfo.ZoneInfo(schedule["timezone"])
            next(CronSim(schedule["cron"], start))
