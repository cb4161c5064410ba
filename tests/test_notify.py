"""The week-ready message: a batch with webhooks and SMTP configured delivers one message to each,
with the review URL, to receivers the tests start on loopback (a real HTTP server, a real SMTP
server); with the receivers down the batch still succeeds and the failure is in the ledger and
the summary. Secrets come from the environment only and never reach the ledger or the output."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from estampille.brand import load_brand
from estampille.cli import main
from estampille.errors import ConfigError
from estampille.ledger import Ledger

from .conftest import DEMO_WEEK

SLACK_PATH = "/services/T0001/B0001/slack-SECRET-token"
TEAMS_PATH = "/workflows/teams?sig=teams-SECRET-sig"
HOOK_PATH = "/hooks/estampille-SECRET-path"
SIGNING_SECRET = "whsec-SECRET-signing"
SMTP_PASSWORD = "smtp-SECRET-password"


class Receiver:
    """A webhook receiver on 127.0.0.1: records every POST (path, headers, JSON body)."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def _localhost_certificate(folder):
    """A self-signed certificate for localhost: the SMTP server's STARTTLS, trusted by the client
    through SSL_CERT_FILE (what OpenSSL's default verify paths read), as a private relay's CA would be."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    (folder / "smtp.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "smtp.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder / "smtp.pem", folder / "smtp.key"


class Mailbox:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives, offers STARTTLS with a
    certificate for localhost, and takes a login only over TLS."""

    def __init__(self, folder):
        import ssl

        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.cert, key = _localhost_certificate(folder)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, key)

        messages = self.messages = []
        self.logins = []

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                messages.append({"from": envelope.mail_from, "to": envelope.rcpt_tos, "data": envelope.content})
                return "250 OK"

        def authenticate(server, session, envelope, mechanism, auth_data):
            self.logins.append((auth_data.login.decode(), auth_data.password.decode()))
            return AuthResult(success=auth_data.password.decode() == SMTP_PASSWORD)

        self.controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=_free_port(),
            authenticator=authenticate,
            auth_require_tls=True,
            require_starttls=True,
            tls_context=context,
            server_hostname="localhost",
        )
        self.controller.start()
        self.port = self.controller.port

    def stop(self):
        self.controller.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture
def mailbox(tmp_path, monkeypatch):
    server = Mailbox(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(server.cert))
    yield server
    server.stop()


NOTIFY = """
notify:
  review_url: https://review.maison-levain.example/
  channels:
    - {{type: webhook, url_env: TEST_HOOK_URL, secret_env: TEST_HOOK_SECRET}}
    - {{type: slack, webhook_env: TEST_SLACK_URL}}
    - {{type: teams, webhook_env: TEST_TEAMS_URL}}
    - type: email
      smtp_host: localhost
      smtp_port: {smtp_port}
      security: starttls
      sender: estampille@maison-levain.example
      to: [camille@maison-levain.example, lea@maison-levain.example]
      username_env: TEST_SMTP_USER
      password_env: TEST_SMTP_PASSWORD
"""


def _configure(brand, monkeypatch, http_base: str, smtp_port: int) -> None:
    with (brand / "brand.yaml").open("a", encoding="utf-8") as f:
        f.write(NOTIFY.format(smtp_port=smtp_port))
    for name, value in (
        ("TEST_HOOK_URL", http_base + HOOK_PATH),
        ("TEST_HOOK_SECRET", SIGNING_SECRET),
        ("TEST_SLACK_URL", http_base + SLACK_PATH),
        ("TEST_TEAMS_URL", http_base + TEAMS_PATH),
        ("TEST_SMTP_USER", "camille"),
        ("TEST_SMTP_PASSWORD", SMTP_PASSWORD),
    ):
        monkeypatch.setenv(name, value)


def _run(batch) -> int:
    return main(["run", "--brand", str(batch["brand"]), "--week", DEMO_WEEK, "--engine", "plain"])


def _ledger_events(batch, kind):
    ledger = Ledger(batch["settings"].ledger_url)
    try:
        return ledger.events(kind=kind), ledger.verify().ok
    finally:
        ledger.close()


def test_a_batch_sends_one_message_to_each_channel_with_the_review_url(
    batch_copy, receiver, mailbox, monkeypatch, capsys
):
    version = load_brand(batch_copy["brand"]).version
    _configure(batch_copy["brand"], monkeypatch, receiver.url, mailbox.port)
    assert load_brand(batch_copy["brand"]).version == version  # a channel is no new work: nothing redone
    assert _run(batch_copy) == 0
    out = capsys.readouterr().out
    assert "render: 0 new, 14 already done" in out
    review = "https://review.maison-levain.example/runs/brand/2026-W48"

    by_path = {r["path"]: r for r in receiver.received}
    assert sorted(by_path) == sorted([HOOK_PATH, SLACK_PATH, TEAMS_PATH]) and len(receiver.received) == 3
    hook = by_path[HOOK_PATH]
    message = json.loads(hook["body"])
    assert message["review_url"] == review and message["week"] == DEMO_WEEK and message["brand"] == "Maison Levain"
    assert message["posts"] == 7 and message["images"] == 14 and message["drafts"] == 14
    assert message["lookalike_flags"] >= 2 and message["failures"] == []  # tradition-vendredi's renders
    assert message["awaiting_review"] == 28  # 14 drafts + 14 images
    expected = hmac.new(SIGNING_SECRET.encode(), hook["body"], hashlib.sha256).hexdigest()
    assert hook["headers"]["X-Estampille-Signature"] == f"sha256={expected}"
    slack = json.loads(by_path[SLACK_PATH]["body"])
    assert review in slack["text"] and "14 images" in slack["text"]
    assert slack["blocks"][1]["elements"][0]["url"] == review
    teams = json.loads(by_path[TEAMS_PATH]["body"])
    card = teams["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["actions"][0]["url"] == review

    assert len(mailbox.messages) == 1 and mailbox.logins == [("camille", SMTP_PASSWORD)]
    mail = message_from_bytes(mailbox.messages[0]["data"])
    assert mailbox.messages[0]["to"] == ["camille@maison-levain.example", "lea@maison-levain.example"]
    assert "Maison Levain 2026-W48: ready for review" == mail["Subject"]
    assert review in mail.get_payload(decode=True).decode()

    sent, intact = _ledger_events(batch_copy, "notify.sent")
    assert intact and sorted(e.payload["channel"] for e in sent) == ["email", "slack", "teams", "webhook"]
    assert {e.payload["target"] for e in sent if e.payload["type"] != "email"} == {"127.0.0.1"}
    stored = json.dumps([e.payload for e in sent]) + out
    for secret in ("SECRET", SMTP_PASSWORD, SIGNING_SECRET):
        assert secret not in stored  # no secret URL, token or password

    assert _run(batch_copy) == 0  # a rerun: the same week, not sent again
    assert len(receiver.received) == 3 and len(mailbox.messages) == 1
    assert "notified: slack (already sent for this run)" in capsys.readouterr().out


def test_with_the_receivers_down_the_batch_succeeds_and_the_failure_is_recorded(batch_copy, monkeypatch, capsys):
    _configure(batch_copy["brand"], monkeypatch, f"http://127.0.0.1:{_free_port()}", _free_port())
    started = time.monotonic()
    assert _run(batch_copy) == 0
    assert time.monotonic() - started < 60
    captured = capsys.readouterr()
    assert "note: notification webhook (webhook) FAILED: 127.0.0.1: ConnectError" in captured.out
    assert "note: notification email (email) FAILED: localhost:" in captured.out
    failed, intact = _ledger_events(batch_copy, "notify.failed")
    assert intact and sorted(e.payload["channel"] for e in failed) == ["email", "slack", "teams", "webhook"]
    assert all(e.payload["error"] for e in failed)
    assert "SECRET" not in json.dumps([e.payload for e in failed]) + captured.out + captured.err
    completed, _ = _ledger_events(batch_copy, "run.completed")
    assert completed  # the batch itself finished

    monkeypatch.delenv("TEST_SLACK_URL")  # a variable that is not set
    assert _run(batch_copy) == 0
    assert "notification slack (slack) FAILED: TEST_SLACK_URL is not set" in capsys.readouterr().out


@pytest.mark.parametrize(
    "channel, message",
    [
        (
            "{type: slack, webhook_env: 'https://hooks.slack.com/services/T/B/x'}",
            "field 'notify.channels.0.slack.webhook_env': Value error, give the NAME of the environment variable",
        ),
        (
            "{type: pigeon, url_env: X}",
            "field 'notify.channels.0': Input tag 'pigeon' found using 'type' does not match",
        ),
        (
            "{type: email, smtp_host: smtp.example, sender: nobody, to: [a@b.example]}",
            "field 'notify.channels.0.email.sender': String should match pattern",
        ),
    ],
)
def test_a_bad_channel_names_its_line(brand_copy, channel, message):
    text = (brand_copy / "brand.yaml").read_text(encoding="utf-8")
    line = len(text.splitlines()) + 4
    (brand_copy / "brand.yaml").write_text(text + f"\nnotify:\n  channels:\n    - {channel}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_brand(brand_copy)
    assert f"brand.yaml, line {line}: {message}" in str(error.value)


@pytest.mark.prefect
def test_the_prefect_flow_sends_the_same_message(prefect_server, batch_copy, receiver, monkeypatch):
    """The scheduled path: the flow's `finish` task is the library's, so it sends the message too."""
    from flows.weekly_batch import weekly_batch

    with (batch_copy["brand"] / "brand.yaml").open("a", encoding="utf-8") as f:
        f.write("\nnotify:\n  channels:\n    - {type: webhook, url_env: TEST_HOOK_URL}\n")
    monkeypatch.setenv("TEST_HOOK_URL", receiver.url + HOOK_PATH)
    state = weekly_batch(str(batch_copy["brand"]), DEMO_WEEK, str(batch_copy["out"]), return_state=True)
    assert state.is_completed()
    assert [n["ok"] for n in state.result()["notifications"]] == [True]
    assert [r["path"] for r in receiver.received] == [HOOK_PATH]
    message = json.loads(receiver.received[0]["body"])
    assert message["images"] == 14 and message["review_url"] == (batch_copy["run_dir"] / "review.html").as_uri()
