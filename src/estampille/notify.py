"""A message when the week is ready: the batch's summary (posts, images, lookalike flags, failures,
the review page's URL) to the channels `brand.yaml` names under `notify:`.

Without it the Monday batch waits until someone thinks of opening the review page. It is sent from
the library's `finish`, so a manual `estampille run` (either engine) and the scheduled Prefect flow
send the same message, and the library stays Prefect-free. Channels: Slack and Microsoft Teams
incoming webhooks, e-mail over SMTP, and a generic JSON webhook (optionally HMAC-signed).

Secrets never sit in brand.yaml: a channel names the environment *variable* that holds its
webhook URL or SMTP password (a Slack or Teams webhook URL is itself a credential). They are read
as `SecretStr`, and neither they nor a webhook's path reach a log, the ledger or the summary:
only the host or the recipients do. A notification that fails is recorded (`notify.failed`, and a
note in the summary) and never fails the batch; one already delivered for the same run and the
same content is not sent again when the batch is rerun.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
import uuid
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from .notify_settings import EmailChannel, NotifySettings, SlackChannel, TeamsChannel, WebhookChannel


# ------------------------------------------------------------------ the message
def week_message(brand: str, slug: str, week: str, summary: dict, events: list, review_url: str | None) -> dict:
    """The week as the review page will show it, read from the ledger with the review pages' own
    model (review/week.py), so a rerun that reused everything reports the same week, not "0 new":
    posts, text variants, images, lookalike flags, items awaiting a decision, failures, the URL."""
    from .review.week import WeekState

    state = WeekState.from_events(events, slug, week)
    flagged = [image_id for image_id in state.renders if state.verdict(image_id) == "lookalike"]
    pending = [item for item in (*state.drafts, *state.renders) if state.state_of(item) == "pending"]
    if review_url:
        url = f"{review_url.rstrip('/')}/runs/{slug}/{week}"
    else:
        from pathlib import Path

        url = Path(summary["review_page"]).absolute().as_uri()
    return {
        "event": "week.ready",
        "brand": brand,
        "brand_folder": slug,
        "week": week,
        "posts": len(state.post_ids()),
        "drafts": len(state.drafts),
        "images": len(state.renders),
        "lookalike_flags": len(flagged),
        "awaiting_review": len(pending),
        "failures": list(summary.get("failures", [])),
        "notes": [n for n in summary.get("notes", []) if not n.startswith("notification ")],
        "review_url": url,
    }


def _text(message: dict) -> tuple[str, str]:
    """Subject and plain-text body, the same words on every channel."""
    status = f"{len(message['failures'])} failure(s)" if message["failures"] else "ready for review"
    subject = f"{message['brand']} {message['week']}: {status}"
    lines = [
        (
            f"{message['posts']} posts, {message['drafts']} text variants, {message['images']} images; "
            f"{message['awaiting_review']} awaiting a decision"
        ),
        f"{message['lookalike_flags']} image(s) flagged as lookalikes"
        if message["lookalike_flags"]
        else "no lookalike flagged",
    ]
    if message["failures"]:
        lines.append(f"{len(message['failures'])} failure(s) (rerun the batch to retry only those):")
        lines += [f"  - {f}" for f in message["failures"][:10]]
        if len(message["failures"]) > 10:
            lines.append(f"  … and {len(message['failures']) - 10} more")
    lines.append(f"Review page: {message['review_url']}")
    return subject, "\n".join(lines)


# ------------------------------------------------------------------ channels
class NotifyError(Exception):
    """A channel could not deliver; the message never holds the secret URL or password."""


def _secret(name: str | None, environ: Mapping[str, str] | None, what: str) -> SecretStr:
    """The secret a channel needs, from the variable it names; a clear error when it is not set."""
    from .settings import secret_variable

    value = secret_variable(name, environ) if name else None
    if value is None:
        raise NotifyError(f"{name} is not set: export it with the {what}")
    return value


def _post(url: SecretStr, body: bytes, headers: dict, timeout: float) -> str:
    """POST `body`; the target's host for the record. Errors name the host, never the URL."""
    import httpx

    target = url.get_secret_value()
    host = urlsplit(target).hostname or "?"
    try:
        response = httpx.post(
            target, content=body, headers={"Content-Type": "application/json", **headers}, timeout=timeout
        )
    except httpx.HTTPError as exc:
        raise NotifyError(f"{host}: {type(exc).__name__}: {str(exc).replace(target, host) or 'no answer'}") from None
    if response.status_code >= 300:
        raise NotifyError(f"{host} answered HTTP {response.status_code}: {response.text[:200]}")
    return host


def _slack(channel: SlackChannel, message: dict, environ, timeout) -> str:
    subject, body = _text(message)
    payload: dict[str, Any] = {
        "text": f"*{subject}*\n{body}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{subject}*\n{body}"}},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "url": message["review_url"],
                        "text": {"type": "plain_text", "text": "Open the review page"},
                    }
                ],
            },
        ],
    }
    if not message["review_url"].startswith("http"):
        payload["blocks"].pop()  # Slack buttons take web links only
    url = _secret(channel.webhook_env, environ, "Slack incoming-webhook URL")
    return _post(url, json.dumps(payload).encode(), {}, timeout)


def _teams(channel: TeamsChannel, message: dict, environ, timeout) -> str:
    subject, body = _text(message)
    card = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "text": subject, "wrap": True},
            {"type": "TextBlock", "text": body.replace("\n", "\n\n"), "wrap": True},
        ],
    }
    if message["review_url"].startswith("http"):
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open the review page", "url": message["review_url"]}]
    payload = {
        "type": "message",
        "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}],
    }
    url = _secret(channel.webhook_env, environ, "Teams incoming-webhook URL")
    return _post(url, json.dumps(payload).encode(), {}, timeout)


def _webhook(channel: WebhookChannel, message: dict, environ, timeout) -> str:
    body = json.dumps(message, ensure_ascii=False).encode()
    headers = {"User-Agent": "estampille"}
    secret = _secret(channel.secret_env, environ, "webhook signing secret") if channel.secret_env else None
    if secret is not None:
        digest = hmac.new(secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
        headers["X-Estampille-Signature"] = f"sha256={digest}"
    url = _secret(channel.url_env, environ, "webhook URL")
    return _post(url, body, headers, timeout)


def _email(channel: EmailChannel, message: dict, environ, timeout) -> str:
    subject, body = _text(message)
    mail = EmailMessage()
    mail["Subject"], mail["From"], mail["To"] = subject, channel.sender, ", ".join(channel.to)
    mail.set_content(body)
    user = _secret(channel.username_env, environ, "SMTP login") if channel.username_env else None
    password = _secret(channel.password_env, environ, "SMTP password") if channel.password_env else None
    target = f"{channel.smtp_host}:{channel.smtp_port}"
    try:
        smtp: smtplib.SMTP
        if channel.security == "ssl":
            smtp = smtplib.SMTP_SSL(
                channel.smtp_host, channel.smtp_port, timeout=timeout, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(channel.smtp_host, channel.smtp_port, timeout=timeout)
        with smtp:
            if channel.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if password is not None:
                smtp.login(user.get_secret_value() if user else channel.sender, password.get_secret_value())
            smtp.send_message(mail)
    except (OSError, smtplib.SMTPException) as exc:
        text = str(exc)
        if password is not None:
            text = text.replace(password.get_secret_value(), "**********")
        raise NotifyError(f"{target}: {type(exc).__name__}: {text or 'no answer'}") from None
    return f"{', '.join(channel.to)} via {target}"


SENDERS: dict[str, Callable[..., str]] = {"slack": _slack, "teams": _teams, "webhook": _webhook, "email": _email}


# ------------------------------------------------------------------ the batch's end
def send_week_ready(batch, summary: dict, environ: Mapping[str, str] | None = None) -> list[dict]:
    """Send the week's message to every channel of the brand; record each outcome in the ledger.
    Never raises: a channel that fails costs only its own message. `environ` stands in for the
    process environment (None: the variables are read in settings.py, like every other)."""
    from .keys import content_key
    from .records import Kind

    settings: NotifySettings | None = batch.brand.notify
    if settings is None or not settings.channels:
        return []
    review_url = batch.settings.review_url or settings.review_url
    events = batch.ledger.events(brand=batch.slug, week=batch.week)
    message = week_message(batch.brand.name, batch.slug, batch.week, summary, events, review_url)
    digest = hashlib.sha256(json.dumps(message, sort_keys=True).encode()).hexdigest()
    results = []
    for channel in settings.channels:
        key = content_key("notify", batch.run_key, channel.type, channel.name, digest)
        record = {
            "channel": channel.name,
            "type": channel.type,
            "review_url": message["review_url"],
            "message_sha256": digest,
        }
        if batch.ledger.get(key) is not None:
            results.append({**record, "ok": True, "already_sent": True})
            continue
        try:
            target = SENDERS[channel.type](channel, message, environ, settings.timeout_s)
        except Exception as exc:  # noqa: BLE001 - whatever a channel does, the batch has finished
            error = str(exc) if isinstance(exc, NotifyError) else f"{type(exc).__name__}: {exc}"
            batch.append(Kind.NOTIFY_FAILED, f"{key}:failed:{uuid.uuid4().hex[:12]}", None, {**record, "error": error})
            results.append({**record, "ok": False, "error": error})
            continue
        batch.append(Kind.NOTIFY_SENT, key, None, {**record, "target": target})
        results.append({**record, "ok": True, "target": target})
    return results


def describe(results: list[dict]) -> list[str]:
    """Summary notes: one line per channel that failed (what the CLI and the Prefect report show)."""
    return [
        f"notification {r['channel']} ({r['type']}) FAILED: {r['error']}; it is recorded in the ledger, "
        "the batch itself is done"
        for r in results
        if not r["ok"]
    ]
