"""What `brand.yaml`'s `notify:` says: the channels the week-ready message goes to (notify.py sends
it). Kept apart so that the brand file's model does not import the sender and what the sender needs."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _variable_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError(
            "give the NAME of the environment variable that holds the URL or password "
            "(e.g. SLACK_WEBHOOK_URL), not the value: a secret never goes in brand.yaml"
        )
    return value


EnvName = Annotated[str, AfterValidator(_variable_name)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlackChannel(_Strict):
    """A Slack incoming webhook (https://hooks.slack.com/services/…), its URL in `webhook_env`."""

    type: Literal["slack"]
    name: str = "slack"
    webhook_env: EnvName


class TeamsChannel(_Strict):
    """A Microsoft Teams incoming webhook (a Workflows "post to a channel when a webhook request is
    received" URL, or a classic connector): an Adaptive Card is posted."""

    type: Literal["teams"]
    name: str = "teams"
    webhook_env: EnvName


class WebhookChannel(_Strict):
    """Any HTTP endpoint: the summary as JSON; with `secret_env`, an `X-Estampille-Signature:
    sha256=<hex>` HMAC of the body, so the receiver can tell the message is ours."""

    type: Literal["webhook"]
    name: str = "webhook"
    url_env: EnvName
    secret_env: EnvName | None = None


class EmailChannel(_Strict):
    """E-mail over SMTP: STARTTLS on 587 by default, `ssl` for 465, `none` only for a relay on the
    local network; the login and password are read from the variables named."""

    type: Literal["email"]
    name: str = "email"
    smtp_host: str
    smtp_port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username_env: EnvName | None = None
    password_env: EnvName | None = None
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    to: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(min_length=1)


Channel = Annotated[SlackChannel | TeamsChannel | WebhookChannel | EmailChannel, Field(discriminator="type")]


class NotifySettings(_Strict):
    """`notify:` in brand.yaml. `review_url` is where reviewers reach `estampille serve` (or set
    ESTAMPILLE_REVIEW_URL); without either the message gives the review page's file."""

    review_url: str | None = Field(default=None, pattern=r"^https?://")
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    channels: list[Channel] = []
