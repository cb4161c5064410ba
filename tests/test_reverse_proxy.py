"""The review server behind a real reverse proxy (Debian's nginx, started on loopback by the
test), deployed as the README says: nginx authenticates the reviewer (HTTP basic auth here),
passes the name in X-Forwarded-User and proves it is the proxy with a shared secret header."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time

import httpx
import pytest

from estampille.ledger import Ledger
from estampille.web.security import NetworkPolicy

from .web_harness import LiveServer, free_port, make_app, run_url

SECRET = "proxy-secret-for-the-test-0123456789"


def _nginx() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if path is None:
        if os.environ.get("ESTAMPILLE_REQUIRE_NGINX"):
            pytest.fail("Debian's nginx is not installed (apt-get install nginx)")
        pytest.skip("Debian's nginx is not installed (.ci/run installs it)")
    return path


NGINX_CONF = """
{user}
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  client_max_body_size 70m;
  server {{
    listen 127.0.0.1:{port};
    server_name review.test;
    auth_basic "Estampille review";
    auth_basic_user_file {root}/htpasswd;
    location / {{
      proxy_pass http://127.0.0.1:{app_port};
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-User $remote_user;
      proxy_set_header X-Estampille-Proxy-Secret "{secret}";
    }}
  }}
}}
"""


@pytest.fixture
def behind_nginx(served_run, tmp_path):
    nginx = _nginx()
    network = NetworkPolicy.parse("127.0.0.1", ["127.0.0.1"], ["review.test"], "X-Forwarded-User", SECRET)
    app = make_app(
        served_run["settings"],
        served_run["brand"].parent,
        network=network,
        proxy_header="X-Forwarded-User",
        reviewers=("Camille", "Léa"),
    )
    root = tmp_path / "nginx"
    root.mkdir()
    (root / "htpasswd").write_text("Camille:{PLAIN}camille-password\n")
    port = free_port()
    with LiveServer(app) as base:
        app_port = int(base.rsplit(":", 1)[1])
        (root / "nginx.conf").write_text(
            NGINX_CONF.format(
                root=root,
                port=port,
                app_port=app_port,
                secret=SECRET,
                user="user root root;" if os.geteuid() == 0 else "",
            )
        )
        process = subprocess.Popen(
            [nginx, "-c", str(root / "nginx.conf"), "-p", str(root)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert process.poll() is None, process.stdout.read().decode()
                time.sleep(0.1)
        try:
            yield {"proxy": f"http://127.0.0.1:{port}", "app": base, "run": served_run}
        finally:
            process.terminate()
            process.wait(10)


def test_behind_nginx_the_proxys_user_is_taken_and_forgeries_are_refused(behind_nginx):
    proxy, direct = behind_nginx["proxy"], behind_nginx["app"]
    host = {"Host": "review.test"}
    auth = ("Camille", "camille-password")
    assert httpx.get(proxy + "/", headers=host).status_code == 401  # nginx asks who you are
    page = httpx.get(proxy + run_url(), headers=host, auth=auth)
    assert page.status_code == 200 and 'id="reviewer">Camille<' in page.text  # the proxy's user is taken
    # A decision through the proxy is recorded under the proxy's name.
    item = behind_nginx["run"]["images"][0]
    with httpx.Client(base_url=proxy, headers=host, auth=auth) as client:
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get(run_url()).text).group(1)
        done = client.post(
            run_url(f"/items/{item}/decision"), data={"decision": "approved", "csrf": csrf, "version": "0"}
        )
    assert done.status_code == 303
    ledger = Ledger(behind_nginx["run"]["settings"].ledger_url)
    assert ledger.events(kind="review.approved")[-1].payload["reviewer"] == "Camille"
    ledger.close()
    # Straight to the app's port, a local process forges the header: not signed in.
    forged = httpx.get(direct + "/", headers={"X-Forwarded-User": "Camille"})
    assert forged.status_code == 200 and 'id="reviewer"' not in forged.text
    # Through the proxy, a Host outside the allowed list is refused by the app.
    assert httpx.get(proxy + "/", headers={"Host": "rebound.attacker.example"}, auth=auth).status_code == 400
