"""The review server as an attacker on loopback or on the network would probe it: one test per
finding of issue 15, through HTTP (Starlette's test client on the real app, or uvicorn on a real
socket where the order of reading matters)."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image
from starlette.testclient import TestClient

from estampille.cli import main
from estampille.errors import SetupError
from estampille.ledger import Ledger
from estampille.web.security import NetworkPolicy, ReviewerPolicy

from .conftest import DEMO_WEEK
from .web_harness import LOCAL, TOKEN, LiveServer, make_app, run_url, signed_in

SECURITY = ("content-security-policy", "x-content-type-options")


def _csrf(text: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', text).group(1)


def _behind_proxy(run, **network):
    """The app as deployed behind a proxy at 127.0.0.1 that names the reviewer in X-Forwarded-User."""
    policy = NetworkPolicy.parse(
        "127.0.0.1", ["127.0.0.1"], ["review.example.com"], "X-Forwarded-User", None, **network
    )
    return make_app(
        run["settings"], run["brand"].parent, network=policy, proxy_header="X-Forwarded-User", reviewers=("Camille",)
    )


# 1 -------------------------------------------------------------------------- trusted proxies, hosts
def test_the_proxy_header_counts_only_from_a_trusted_proxy(served_run):
    app = _behind_proxy(served_run)
    from_proxy = TestClient(app, base_url="http://review.example.com", client=("127.0.0.1", 5000))
    assert 'id="reviewer">Camille<' in from_proxy.get("/", headers={"X-Forwarded-User": "Camille"}).text
    # A local process that is not the proxy (another address on loopback) forges the header: ignored.
    forged = TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.2", 5000))
    page = forged.get("/", headers={"X-Forwarded-User": "Camille"})
    assert page.status_code == 200 and 'id="reviewer"' not in page.text


def test_an_unsafe_proxy_or_host_setting_is_refused_at_start(capsys):
    with pytest.raises(SetupError, match="--trusted-proxy"):
        NetworkPolicy.parse("127.0.0.1", [], [], "X-Forwarded-User", None)
    with pytest.raises(SetupError, match="--allowed-host"):
        NetworkPolicy.parse("0.0.0.0", [], [], None, None)
    assert main(["serve", "--proxy-header", "X-Forwarded-User"]) == 2
    assert "--trusted-proxy" in capsys.readouterr().err


def test_a_host_outside_the_allowed_list_is_refused_on_any_bind(served_run):
    policy = NetworkPolicy.parse("0.0.0.0", [], ["review.example.com"], None, None)
    app = make_app(served_run["settings"], served_run["brand"].parent, bind_host="0.0.0.0", network=policy)
    remote = ("203.0.113.9", 4000)
    assert TestClient(app, base_url="http://review.example.com", client=remote).get("/").status_code == 200
    refused = TestClient(app, base_url="http://rebound.attacker.example", client=remote).get("/")
    assert refused.status_code == 400 and all(h in refused.headers for h in SECURITY)


# 2 -------------------------------------------------------------------------- bounded bodies, CSRF first
def test_an_upload_is_refused_before_its_body_is_read(served_run):
    """A 200 MB upload announced, 1 KB sent: the 403 (no sign-in, wrong token) and the 413
    (too large) come back at once, while the server still waits for the rest of the body."""
    with LiveServer(make_app(served_run["settings"], served_run["brand"].parent)) as base:
        port = int(base.rsplit(":", 1)[1])
        for length, expected in ((200 * 2**20, b" 413 "), (10 * 2**20, b" 403 ")):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(
                    (
                        f"POST /audit?csrf=wrong HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n"
                        "Content-Type: multipart/form-data; boundary=x\r\n\r\n"
                    ).encode()
                    + b"x" * 1024
                )
                started = time.monotonic()
                head = conn.recv(200)
                assert expected in head.split(b"\r\n")[0] and time.monotonic() - started < 3


def test_a_body_without_a_length_is_counted_while_it_is_read(served_run):
    app = make_app(
        served_run["settings"], served_run["brand"].parent, network=NetworkPolicy("127.0.0.1", max_body=64 * 1024)
    )
    client, csrf = signed_in(app)

    def chunks():  # a well-formed file part that goes on past the limit, with no length given
        yield (
            b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
        )
        for _ in range(100):
            yield b"x" * 4096

    response = client.post(
        f"/audit?csrf={csrf}", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=x"}
    )
    assert response.status_code == 413, response.text


def test_with_reviewers_an_anonymous_upload_is_refused_even_with_the_pages_token(served_run):
    anonymous = TestClient(served_run["app"], base_url="http://127.0.0.1", client=LOCAL)
    csrf = re.search(r'/audit\?csrf=([^"]+)"', anonymous.get("/audit").text).group(1)
    refused = anonymous.post(f"/audit?csrf={csrf}", files={"file": ("a.png", b"not read", "image/png")})
    assert refused.status_code == 403 and "sign in" in refused.text


# 3 -------------------------------------------------------------------------- audits off the event loop
def test_a_large_upload_is_refused_and_audits_do_not_freeze_the_server(served_run, tmp_path):
    app = make_app(served_run["settings"], served_run["brand"].parent)
    client, csrf = signed_in(app)
    huge = io.BytesIO()
    Image.new("RGB", (7000, 7000), "white").save(huge, "PNG")
    refused = client.post(f"/audit?csrf={csrf}", files={"file": ("huge.png", huge.getvalue(), "image/png")})
    assert refused.status_code == 413 and "estampille audit" in refused.text
    big = io.BytesIO()
    Image.effect_noise((3000, 3000), 60).convert("RGB").save(big, "PNG")
    with LiveServer(app) as base:
        import httpx

        with httpx.Client(base_url=base) as http:
            page = http.get("/")
            login = http.post(
                "/login", data={"name": "Camille", "token": TOKEN, "csrf": _csrf(page.text)}, follow_redirects=True
            )
            token = _csrf(login.text)
            with ThreadPoolExecutor(2) as pool:
                upload = pool.submit(
                    http.post,
                    f"/audit?csrf={token}",
                    files={"file": ("big.png", big.getvalue(), "image/png")},
                    timeout=120,
                )
                time.sleep(0.5)
                latencies = []
                while not upload.done():
                    started = time.monotonic()
                    assert httpx.get(base + "/healthz", timeout=10).status_code == 200
                    latencies.append(time.monotonic() - started)
                    time.sleep(0.1)
                assert upload.result().status_code == 200
    assert latencies and max(latencies) < 1.0


# 4 -------------------------------------------------------------------------- sign-in
def test_wrong_tokens_are_throttled_and_logged_even_before_the_right_one(served_run, caplog):
    app = make_app(served_run["settings"], served_run["brand"].parent)
    client = TestClient(app, base_url="http://127.0.0.1", client=LOCAL)
    csrf = _csrf(client.get("/").text)
    with caplog.at_level(logging.WARNING, logger="estampille.web"):
        codes = [
            client.post("/login", data={"name": "Camille", "token": f"guess-{n}", "csrf": csrf}).status_code
            for n in range(8)
        ]
    assert codes[:5] == [403] * 5 and 429 in codes[5:]
    right = client.post("/login", data={"name": "Camille", "token": TOKEN, "csrf": csrf})
    assert right.status_code == 429 and int(right.headers["retry-after"]) >= 1
    assert 'id="reviewer"' not in client.get("/").text
    assert sum("sign-in refused for 'Camille'" in r.getMessage() for r in caplog.records) >= 5
    assert all(TOKEN not in r.getMessage() and "guess-" not in r.getMessage() for r in caplog.records)
    # Another name from another client is not held back by Camille's lockout.
    other = TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.9", 1))
    assert (
        other.post("/login", data={"name": "Léa", "token": TOKEN, "csrf": _csrf(other.get("/").text)}).status_code
        == 200
    )


def test_a_short_team_token_is_refused_at_start(monkeypatch, capsys):
    with pytest.raises(SetupError, match="16 characters"):
        ReviewerPolicy(("Camille",), "a")
    monkeypatch.setenv("ESTAMPILLE_REVIEW_TOKEN", "a")
    assert main(["serve", "--reviewer", "Camille"]) == 2
    assert "16 characters" in capsys.readouterr().err


# 5 -------------------------------------------------------------------------- behind a proxy
def test_behind_a_trusted_proxy_forwarded_clients_and_real_host_names_are_served(served_run):
    app = _behind_proxy(served_run)
    proxy = TestClient(app, base_url="http://review.example.com", client=("127.0.0.1", 5000))
    page = proxy.get(run_url(), headers={"X-Forwarded-For": "198.51.100.4", "X-Forwarded-User": "Camille"})
    assert page.status_code == 200 and 'id="reviewer">Camille<' in page.text


# 6 -------------------------------------------------------------------------- sessions
def test_sign_out_and_a_new_token_revoke_sessions_and_csrf_rotates(served_run):
    app = make_app(served_run["settings"], served_run["brand"].parent)
    client = TestClient(app, base_url="http://127.0.0.1", client=LOCAL)
    before = _csrf(client.get("/").text)
    client, after = signed_in(app)
    assert before != after
    cookie = client.cookies["estampille"]
    copy = TestClient(app, base_url="http://127.0.0.1", client=LOCAL, cookies={"estampille": cookie})
    assert 'id="reviewer">Camille<' in copy.get("/").text
    assert client.post("/logout", data={"csrf": after}).status_code == 200
    assert 'id="reviewer"' not in copy.get("/").text  # the copied cookie no longer signs in
    # The same server folder (same cookie secret) restarted with another team token.
    client, _ = signed_in(app)
    restarted = make_app(
        served_run["settings"],
        served_run["brand"].parent,
        reviewers=("Camille", "Léa"),
        token="another-team-token-1234",
    )
    old = TestClient(
        restarted, base_url="http://127.0.0.1", client=LOCAL, cookies={"estampille": client.cookies["estampille"]}
    )
    assert 'id="reviewer"' not in old.get("/").text


def test_cookies_are_secure_over_https_through_the_trusted_proxy(served_run):
    app = _behind_proxy(served_run)
    https = TestClient(app, base_url="http://review.example.com", client=("127.0.0.1", 5000))
    cookie = https.get("/", headers={"X-Forwarded-Proto": "https"}).headers["set-cookie"]
    assert "secure" in cookie.lower()
    forged = TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.2", 5000))
    assert "secure" not in forged.get("/", headers={"X-Forwarded-Proto": "https"}).headers["set-cookie"].lower()


# 7 -------------------------------------------------------------------------- hostile paths
def test_hostile_paths_are_404s_with_the_security_headers(served_run):
    folder = served_run["settings"].out / "brand" / DEMO_WEEK
    loop = folder / "loop.png"
    loop.symlink_to(loop)
    client = TestClient(served_run["app"], base_url="http://127.0.0.1", client=LOCAL, raise_server_exceptions=False)
    for path in (
        "files/a%00b.png",
        "files/loop.png",
        "files/" + "a" * 300 + ".png",
        "files/" + "/".join(["abcdefgh"] * 500),
        "thumbs/" + "b" * 300 + ".webp",
    ):
        response = client.get(run_url("/" + path))
        assert response.status_code in (400, 404), path
        assert all(h in response.headers for h in SECURITY), path


def test_a_long_or_odd_upload_name_is_audited_under_a_safe_name(served_run):
    client, csrf = signed_in(served_run["app"])
    data = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(data, "PNG")
    name = "é" * 150 + "\x00../../x" + "z" * 150 + ".png"
    response = client.post(f"/audit?csrf={csrf}", files={"file": (name, data.getvalue(), "image/png")})
    assert response.status_code == 200 and "No Content Credentials" in response.text
    quoted = re.search(r'"file": "([^"]*)"', response.text).group(1)
    shown = json.loads(f'"{quoted}"')
    assert len(shown) <= 120 and "\x00" not in shown and "/" not in shown


# 8 -------------------------------------------------------------------------- leaks
def test_no_absolute_path_or_timing_reaches_an_anonymous_client(served_run):
    image_id = served_run["images"][0]
    folder = served_run["settings"].out / "brand" / DEMO_WEEK
    for png in (folder / "renders").glob(f"{image_id}*.png"):
        png.unlink()
    for png in (folder / "signed").glob(f"{image_id}*.png"):
        png.unlink()
    anonymous = TestClient(served_run["app"], base_url="http://127.0.0.1", client=LOCAL)
    page = anonymous.get(run_url(f"/images/{image_id}"))
    assert page.status_code == 200 and str(served_run["settings"].out) not in page.text
    assert "server-timing" not in page.headers and "server-timing" not in anonymous.get("/").headers
    invalid = anonymous.post("/login", data={})
    assert invalid.status_code in (400, 403) and invalid.headers["content-type"].startswith("text/html")
    client, csrf = signed_in(served_run["app"])
    assert "server-timing" in client.get("/").headers
    published = client.post(run_url("/publish"), data={"csrf": csrf})
    assert str(served_run["settings"].out) not in published.text


# 9 -------------------------------------------------------------------------- decisions with a version
def test_parallel_and_repeated_decisions_on_one_state_record_one(served_run):
    app, item = served_run["app"], served_run["images"][1]
    ledger = Ledger(served_run["settings"].ledger_url)
    rows = ledger.count()
    clients = [signed_in(app, name) for name in ("Camille", "Léa") for _ in range(10)]

    def send(pair, n):
        client, csrf = pair
        return client.post(
            run_url(f"/items/{item}/decision"),
            data={"decision": "approved" if n % 2 else "rejected", "comment": f"n{n}", "csrf": csrf, "version": "0"},
        ).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(send, clients, range(20)))
    assert codes.count(200) == 1 and codes.count(409) == 19
    assert ledger.count() == rows + 1
    winner = [e for e in ledger.events(brand="brand") if e.kind.startswith("review.") and e.payload["item_id"] == item]
    assert len(winner) == 1
    # The same form sent twice: recorded once, both answered as done.
    client, csrf = clients[0]
    form = {"decision": "rejected", "comment": "encore", "csrf": csrf, "version": "1"}
    assert [client.post(run_url(f"/items/{item}/decision"), data=form).status_code for _ in range(2)] == [200, 200]
    assert ledger.count() == rows + 2
    # A form made before that decision is stale: 409, and the page says what changed.
    stale = client.post(run_url(f"/items/{item}/decision"), data={"decision": "approved", "csrf": csrf, "version": "1"})
    assert stale.status_code == 409 and "rejected" in stale.text and "not</strong> recorded" in stale.text
    ledger.close()


# 10 ------------------------------------------------------------------------- thumbnails by content
def test_thumbnails_are_cached_for_good_only_at_their_content_address(served_run, tmp_path):
    from estampille.provenance.identity import from_settings
    from estampille.review.edits import import_edit

    client, _ = signed_in(served_run["app"])
    image_id = served_run["images"][0]
    address = re.search(rf"/thumbs/{image_id}\.webp\?v=([0-9a-f]+)", client.get(run_url()).text)
    assert address
    fresh = client.get(run_url(f"/thumbs/{image_id}.webp?v={address.group(1)}"))
    assert "immutable" in fresh.headers["cache-control"]
    ledger = Ledger(served_run["settings"].ledger_url)
    retouch = tmp_path / "retouch.png"
    Image.new("RGB", (256, 256), "orange").save(retouch)
    import_edit(ledger, served_run["settings"].out, image_id, retouch, "Camille", from_settings(served_run["settings"]))
    ledger.close()
    moved = re.search(rf"/thumbs/{image_id}\.webp\?v=([0-9a-f]+)", client.get(run_url()).text).group(1)
    assert moved != address.group(1)
    stale = client.get(run_url(f"/thumbs/{image_id}.webp?v={address.group(1)}"))
    assert "immutable" not in stale.headers["cache-control"]


# 11 ------------------------------------------------------------------------- other
def test_unknown_run_folders_long_histories_and_page_caching(served_run):
    out = served_run["settings"].out
    (out / "ghost" / "2026-W01").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(out / "ghost" / "2026-W01" / "x.png")
    client, csrf = signed_in(served_run["app"])
    assert client.get("/runs/ghost/2026-W01/files/x.png").status_code == 404
    item = served_run["drafts"][0]
    too_long = client.post(
        run_url(f"/items/{item}/decision"),
        data={"decision": "rejected", "comment": "x" * 2001, "csrf": csrf, "version": "0"},
    )
    assert too_long.status_code == 400
    for n in range(60):
        assert (
            client.post(
                run_url(f"/items/{item}/decision"),
                data={"decision": "rejected", "comment": "y" * 2000, "csrf": csrf, "version": str(n)},
            ).status_code
            == 200
        )
    page = client.get(run_url())
    assert len(page.content) < 400_000 and "The newest 50 of 60 decisions" in page.text
    assert page.headers["cache-control"] == "no-store"
