"""Every environment variable is read in one place (settings.py); bad values are named, secrets
never print, and the Prefect flows are found by path, not installed as a package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from estampille.errors import ConfigError
from estampille.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def test_each_variable_reaches_its_setting_and_home_is_not_the_users_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", "/somewhere/else")
    monkeypatch.delenv("ESTAMPILLE_HOME", raising=False)
    monkeypatch.setenv("ESTAMPILLE_REVIEWERS", " Camille , Noé ,")
    monkeypatch.setenv("ESTAMPILLE_TRUST_ANCHORS", os.pathsep.join(["/a/root.pem", "/b/roots.pem"]))
    monkeypatch.setenv("ESTAMPILLE_LLM_RETRY_DELAYS", "5, 10")
    monkeypatch.setenv("ESTAMPILLE_SEARCH_THREADS", "3")
    monkeypatch.setenv("ESTAMPILLE_LLM_MODEL", "")  # set but empty: unset
    monkeypatch.setenv("ESTAMPILLE_OUT", str(tmp_path / "out"))
    settings = Settings.from_env()
    assert settings.home == Path(".estampille").absolute()
    assert settings.reviewers == ("Camille", "Noé")
    assert settings.trust_anchors == (Path("/a/root.pem"), Path("/b/roots.pem"))
    assert settings.llm_retry_delays == (5.0, 10.0) and settings.search_threads == 3 and settings.llm_model is None
    assert settings.ledger_url == f"sqlite:///{tmp_path / 'out' / 'ledger.sqlite'}"
    assert Settings.from_env(out=tmp_path / "elsewhere").out == tmp_path / "elsewhere"  # --out wins
    monkeypatch.setenv("ESTAMPILLE_LLM_RETRY_DELAYS", "")
    assert Settings.from_env().llm_retry_delays == ()  # "" turns the stage retries off


def test_a_bad_variable_is_named_with_the_fix():
    with pytest.raises(ConfigError, match=r"ESTAMPILLE_LLM_RETRY_DELAYS: give seconds separated by commas"):
        Settings.from_env(env={"ESTAMPILLE_LLM_RETRY_DELAYS": "ten"})
    with pytest.raises(ConfigError, match=r"ESTAMPILLE_SEARCH_THREADS: .*greater than or equal to 1"):
        Settings.from_env(env={"ESTAMPILLE_SEARCH_THREADS": "0"})


def test_secrets_never_print():
    settings = Settings.from_env(
        env={
            "ESTAMPILLE_REVIEW_TOKEN": "review-token-SECRET-1234",
            "ESTAMPILLE_PROXY_SECRET": "proxy-SECRET-abcdefgh",
            "OPENAI_API_KEY": "sk-SECRET",
        }
    )
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert "SECRET" not in shown
    assert settings.review_token.get_secret_value() == "review-token-SECRET-1234"


def test_the_flows_are_not_an_installed_package_and_the_cli_says_where_it_looks(tmp_path):
    """Outside the checkout no top-level `flows` package is importable (the wheel ships only
    `estampille`); the Prefect engine loads the checkout's flows/ by path, and a wrong
    ESTAMPILLE_FLOWS_DIR is a one-line error naming the folder and the way out."""
    probe = subprocess.run(
        [sys.executable, "-c", "import importlib.util; print(importlib.util.find_spec('flows'))"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "None"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESTAMPILLE_", "PREFECT_"))}
    env.update(
        ESTAMPILLE_FLOWS_DIR=str(tmp_path / "no-flows"),
        ESTAMPILLE_HOME=str(tmp_path / "home"),
        ESTAMPILLE_OUT=str(tmp_path / "out"),
    )
    cli = Path(sys.executable).with_name("estampille")
    result = subprocess.run(
        [str(cli), "run", "--brand", str(REPO / "brand_assets/demo"), "--week", "2026-W48"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert f"the Prefect flows are not at {tmp_path / 'no-flows'}" in result.stderr
    assert "--engine plain" in result.stderr and "Traceback" not in result.stderr
