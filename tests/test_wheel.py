"""The built wheel, installed outside the checkout, runs the weekly batch on its default engine."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import zipfile

import httpx
import pytest

from .conftest import DEMO_WEEK, REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The project's wheel, built as `pip wheel .` builds it (hatchling, no network)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return next(out.glob("estampille-*.whl"))


def test_the_wheel_ships_the_flows_inside_the_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "estampille/flows/weekly_batch.py",
        "estampille/flows/publish.py",
        "estampille/flows/competitor_index.py",
        "estampille/flows/__init__.py",
    } <= names
    assert not any(name.startswith("flows/") for name in names)  # no top-level `flows` package


@pytest.mark.prefect
def test_the_installed_wheel_runs_a_batch_on_the_prefect_engine(
    prefect_server, wheel, fake_llm, two_post_brand, tmp_path
):
    """A fresh virtualenv, outside the checkout, with only the wheel installed in it (its
    dependencies are the test environment's, reached by a .pth file that adds their folder, not
    the checkout's source); `estampille run` from an unrelated folder, Prefect engine by default."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    own_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    with open(os.path.join(own_site, "shared-dependencies.pth"), "w") as pth:
        pth.write("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ESTAMPILLE_FLOWS_DIR")}
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--ignore-installed", str(wheel)],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    where = subprocess.run(
        [str(python), "-c", "import estampille.cli as c; print(c.__file__)"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert where.startswith(own_site), where  # the wheel's copy, not the checkout's source

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    done = subprocess.run(
        [str(venv / "bin" / "estampille"), "run", "--brand", str(two_post_brand), "--week", DEMO_WEEK],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "render: 4 new, 0 already done" in done.stdout and "Traceback" not in done.stderr
    assert (tmp_path / "out" / "brand" / DEMO_WEEK / "review.html").is_file()
    runs = httpx.post(
        f"{prefect_server.url}/flow_runs/filter",
        timeout=30,
        json={"flows": {"name": {"any_": ["weekly-visual-batch"]}}},
    ).json()
    ours = [r for r in runs if r["parameters"].get("brand") == str(two_post_brand)]
    assert [r["state_type"] for r in ours] == ["COMPLETED"]  # it ran as a Prefect flow
