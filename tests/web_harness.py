"""What the web tests share: the app over a finished run, signing in, a real socket."""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

from starlette.testclient import TestClient

from estampille.provenance.identity import from_settings as signer_identity
from estampille.settings import Settings
from estampille.web.app import WebConfig, create_app, uvicorn_config
from estampille.web.security import NetworkPolicy, ReviewerPolicy

from .conftest import DEMO_WEEK

TOKEN = "team-token-for-tests"
LOCAL = ("127.0.0.1", 50123)
SLOT = "croissant-mercredi"


def make_app(
    settings: Settings, brands_dir: Path, bind_host: str = "127.0.0.1", network: NetworkPolicy | None = None, **policy
):
    policy = policy or {"reviewers": ("Camille", "Léa"), "token": TOKEN}
    return create_app(
        WebConfig(settings, signer_identity(settings), ReviewerPolicy(**policy), brands_dir, bind_host, network)
    )


def signed_in(app, name: str = "Camille") -> tuple[TestClient, str]:
    client = TestClient(app, base_url="http://127.0.0.1", client=LOCAL)
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text).group(1)
    page = client.post("/login", data={"name": name, "token": TOKEN, "csrf": csrf})
    assert page.status_code == 200
    return client, re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # rotated at sign-in


def run_url(path: str = "") -> str:
    return f"/runs/brand/{DEMO_WEEK}{path}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LiveServer:
    """The app on a real socket, served by uvicorn in a thread."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", self.port))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
