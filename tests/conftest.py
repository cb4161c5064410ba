"""Shared fixtures: every test gets its own data and output folders (never the real ones),
the tiny model is built once per session, and the LLM is a local fake server unless a test
asks for the embedded model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from estampille.render.tiny import build_tiny_model, tiny_folder_name
from estampille.settings import Settings

from .fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parents[1]
DEMO_BRAND = REPO / "brand_assets" / "demo"
DEMO_WEEK = "2026-W48"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def tiny_family_dir(tmp_path_factory):
    """One tiny build per model family per session, made on first use: family -> folder."""
    root = tmp_path_factory.mktemp("families")
    built: dict[str, Path] = {}

    def folder(family: str) -> Path:
        if family not in built:
            built[family] = build_tiny_model(root / tiny_folder_name(family), family=family)
        return built[family]

    return folder


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch, tiny_model_dir):
    """Data dir, output dir and cwd in tmp; the session's tiny model linked in; no LLM env."""
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    os.symlink(tiny_model_dir, home / "models" / "tiny-sd")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ESTAMPILLE_HOME", str(home))
    monkeypatch.setenv("ESTAMPILLE_OUT", str(tmp_path / "out"))
    for name in (
        "ESTAMPILLE_LEDGER_URL",
        "ESTAMPILLE_LLM_BASE_URL",
        "ESTAMPILLE_LLM_MODEL",
        "ESTAMPILLE_LLM_API_KEY",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ESTAMPILLE_SIGNER_CERT",
        "ESTAMPILLE_SIGNER_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def fake_llm(monkeypatch):
    server = FakeOpenAI().start()
    for name, value in fake_llm_env(server.base_url).items():
        monkeypatch.setenv(name, value)
    yield server
    server.stop()


@pytest.fixture
def settings(isolated) -> Settings:
    return Settings.from_env()


@pytest.fixture
def brand_copy(tmp_path) -> Path:
    """A writable copy of the demo brand, for tests that break or change it."""
    target = tmp_path / "brand"
    shutil.copytree(DEMO_BRAND, target)
    return target


@pytest.fixture
def two_post_brand(brand_copy) -> Path:
    """The demo brand with the first two posts of its week only (one French, one English): for
    tests of the machinery around the stages, where fourteen variants would only cost time."""
    return keep_posts(brand_copy, ["levain-lundi", "sourdough-linkedin"])


def keep_posts(brand_dir: Path, post_ids: list[str]) -> Path:
    """Cut a brand copy's calendar down to these dated posts (and no recurring ones)."""
    import yaml

    calendar = brand_dir / "calendar.yaml"
    plan = yaml.safe_load(calendar.read_text(encoding="utf-8"))
    plan["posts"] = [post for post in plan["posts"] if post["id"] in post_ids]
    plan.pop("recurring", None)
    calendar.write_text(yaml.safe_dump(plan, allow_unicode=True), encoding="utf-8")
    return brand_dir


def renders_of(events, slot_suffix: str) -> list[str]:
    """The slot's render ids, those the lookalike check cleared first. A render of the tiny model
    is noise and lands, rarely, within a threshold of a competitor's picture by chance (its seed
    follows the fake server's port, which changes per test); a test of the approval flow must not
    depend on that. The lookalike path has its own tests."""
    flagged = {
        e.payload["image_id"] for e in events if e.kind == "lookalike.checked" and e.payload["verdict"] == "lookalike"
    }
    renders = [e.key for e in events if e.kind == "render.created" and e.subject.endswith(slot_suffix)]
    return sorted(renders, key=lambda key: key in flagged)


class PrefectServer:
    """A real `prefect server start` (API, UI and services, the scheduler among them) on loopback."""

    def __init__(self, url: str, log: Path):
        self.url, self.log = url, log

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """One real Prefect server for the whole test run (it takes 10-20 s to start here): the flow
    tests run against it, and the scheduling tests deploy to it and run a process worker."""
    import socket
    import subprocess
    import sys
    import time

    import httpx
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home = tmp_path_factory.mktemp("prefect-server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    log = home / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false")
    prefect = Path(sys.executable).parent / "prefect"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 180
    while True:
        assert server.poll() is None, f"prefect server exited:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"prefect server did not start:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)
    # Prefect binds its console log handler to sys.stderr when it first sets up logging: do it now,
    # on pytest's session-long capture, not inside a test whose capsys stream closes after it.
    from prefect.logging.configuration import setup_logging

    setup_logging()
    patch = pytest.MonkeyPatch()
    patch.setenv("PREFECT_API_URL", url)  # for subprocesses: the CLI, workers, `prefect deploy`
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield PrefectServer(url, log)
    finally:
        from prefect.logging.handlers import APILogHandler

        APILogHandler().flush()  # send the last run logs before the server goes
        patch.undo()
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="session")
def finished_batch(tmp_path_factory, tiny_model_dir):
    """The demo week run once to the end (fake LLM whose captions carry markup, an API key that
    must never be recorded), for tests that only read it or work on a copy (`batch_copy`): the
    batch is the suite's most expensive step, so it is paid once. run.json keeps the summary and
    the LLM address its drafts were keyed with."""
    import json

    from estampille.stages import run_batch

    from .fake_openai import FakeOpenAI

    root = tmp_path_factory.mktemp("finished-batch")
    (root / "home" / "models").mkdir(parents=True)
    os.symlink(tiny_model_dir, root / "home" / "models" / "tiny-sd")
    brand = root / "brand"
    shutil.copytree(DEMO_BRAND, brand)
    server = FakeOpenAI().start()
    server.caption_extra = " <script>alert('x')</script>"
    try:
        settings = Settings.from_env(
            env={
                "ESTAMPILLE_HOME": str(root / "home"),
                "ESTAMPILLE_OUT": str(root / "out"),
                **fake_llm_env(server.base_url),
            }
        )
        summary = run_batch(brand, DEMO_WEEK, settings)
    finally:
        server.stop()
    assert summary["failures"] == [], summary["failures"]
    (root / "run.json").write_text(json.dumps({"llm_url": server.base_url, "summary": summary}))
    return root


def fake_llm_env(base_url: str) -> dict[str, str]:
    return {
        "ESTAMPILLE_LLM_BASE_URL": base_url,
        "ESTAMPILLE_LLM_MODEL": "fake-chat",
        "ESTAMPILLE_LLM_API_KEY": "sk-test-SECRET-never-logged",
    }


@pytest.fixture
def batch_copy(finished_batch, isolated, monkeypatch):
    """A private copy of `finished_batch` (brand, data folder, output, ledger) as this test's
    ESTAMPILLE_HOME and ESTAMPILLE_OUT: the CLI and the library see it as their own. The LLM
    variables name the batch's (stopped) fake server, so a rerun finds every draft and prompt
    done; a test that needs new text starts `fake_llm` after this fixture."""
    import json

    for name in ("brand", "out"):
        shutil.copytree(finished_batch / name, isolated / name, symlinks=True)
    home = isolated / "home"
    shutil.rmtree(home)
    shutil.copytree(finished_batch / "home", home, symlinks=True)
    recorded = json.loads((finished_batch / "run.json").read_text())
    for name, value in fake_llm_env(recorded["llm_url"]).items():
        monkeypatch.setenv(name, value)
    run_dir = isolated / "out" / "brand" / DEMO_WEEK
    return {
        "brand": isolated / "brand",
        "out": isolated / "out",
        "home": home,
        "run_dir": run_dir,
        "settings": Settings.from_env(),
        "summary": {**recorded["summary"], "review_page": str(run_dir / "review.html")},
    }


# ---------------------------------------------------------------- the review server's tests
@pytest.fixture(scope="session")
def prepared_run(tmp_path_factory, tiny_model_dir):
    """One finished batch (captions and a brief carrying markup), made once; tests get copies."""
    from estampille.stages import run_batch

    root = tmp_path_factory.mktemp("web")
    (root / "home" / "models").mkdir(parents=True)
    os.symlink(tiny_model_dir, root / "home" / "models" / "tiny-sd")
    brand = root / "brand"
    shutil.copytree(DEMO_BRAND, brand)
    calendar = brand / "calendar.yaml"
    calendar.write_text(
        calendar.read_text(encoding="utf-8").replace(
            "feuilletage en 27 couches.", "feuilletage en 27 couches <b onmouseover=alert(2)>bold</b>."
        ),
        encoding="utf-8",
    )
    server = FakeOpenAI().start()
    server.caption_extra = ' <script>alert("caption")</script><img src=x onerror="alert(1)">'
    try:
        settings = Settings.from_env(
            env={
                "ESTAMPILLE_HOME": str(root / "home"),
                "ESTAMPILLE_OUT": str(root / "out"),
                "ESTAMPILLE_LLM_BASE_URL": server.base_url,
                "ESTAMPILLE_LLM_MODEL": "fake",
            }
        )
        run_batch(brand, DEMO_WEEK, settings)
    finally:
        server.stop()
    return root


@pytest.fixture
def served_run(prepared_run, tmp_path):
    """A private copy of the prepared run's output (tests record decisions) and the app over it."""
    from estampille.ledger import Ledger

    from .web_harness import SLOT, make_app

    shutil.copytree(prepared_run / "out", tmp_path / "web-out")
    settings = Settings.from_env(
        env={"ESTAMPILLE_HOME": str(prepared_run / "home"), "ESTAMPILLE_OUT": str(tmp_path / "web-out")}
    )
    ledger = Ledger(settings.ledger_url)
    events = ledger.events()
    ledger.close()
    slot = f"{DEMO_WEEK}/{SLOT}"
    return {
        "app": make_app(settings, prepared_run),
        "settings": settings,
        "brand": prepared_run / "brand",
        "drafts": [e.key for e in events if e.kind == "draft.created" and e.subject == slot],
        "images": renders_of(events, slot),
    }
