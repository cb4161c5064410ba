"""Shared fixtures: every test gets its own data and output folders (never the real ones),
the tiny model is built once per session, and the LLM is a local fake server unless a test
asks for the embedded model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from estampille.render.tiny import build_tiny_model
from estampille.settings import Settings

from .fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parents[1]
DEMO_BRAND = REPO / "brand_assets" / "demo"
DEMO_WEEK = "2026-W48"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch, tiny_model_dir):
    """Data dir, output dir and cwd in tmp; the session's tiny model linked in; no LLM env."""
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    os.symlink(tiny_model_dir, home / "models" / "tiny-sd")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ESTAMPILLE_HOME", str(home))
    monkeypatch.setenv("ESTAMPILLE_OUT", str(tmp_path / "out"))
    for name in ("ESTAMPILLE_LEDGER_URL", "ESTAMPILLE_LLM_BASE_URL", "ESTAMPILLE_LLM_MODEL",
                 "ESTAMPILLE_LLM_API_KEY", "OPENAI_API_KEY", "ESTAMPILLE_SIGNER_CERT", "ESTAMPILLE_SIGNER_KEY"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def fake_llm(monkeypatch):
    server = FakeOpenAI().start()
    monkeypatch.setenv("ESTAMPILLE_LLM_BASE_URL", server.base_url)
    monkeypatch.setenv("ESTAMPILLE_LLM_MODEL", "fake-chat")
    monkeypatch.setenv("ESTAMPILLE_LLM_API_KEY", "sk-test-SECRET-never-logged")
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


def renders_of(events, slot_suffix: str) -> list[str]:
    """The slot's render ids, those the lookalike check cleared first. A render of the tiny model
    is noise and lands, rarely, within a threshold of a competitor's picture by chance (its seed
    follows the fake server's port, which changes per test); a test of the approval flow must not
    depend on that. The lookalike path has its own tests."""
    flagged = {e.payload["image_id"] for e in events if e.kind == "lookalike.checked" and e.payload["verdict"] == "lookalike"}
    renders = [e.key for e in events if e.kind == "render.created" and e.subject.endswith(slot_suffix)]
    return sorted(renders, key=lambda key: key in flagged)
