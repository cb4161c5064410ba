"""Where things live, from environment variables with embedded defaults.

Nothing here needs configuring for the demo: the data folder (models, signing keys, Prefect
state) defaults to ./.estampille, output to ./out and the ledger to SQLite inside the output.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError


@dataclass(frozen=True)
class Settings:
    home: Path             # built models, signer keys, Prefect's local state
    out: Path              # one folder per brand and week, plus the ledger
    ledger_url: str
    llm_base_url: str | None
    llm_model: str | None
    signer_cert: Path | None   # the brand's own chain (leaf first) ...
    signer_key: Path | None    # ... and private key; unset = project dev CA
    signer_callback: str | None = None   # or module:function signing in a KMS/HSM
    signer_anchor: Path | None = None    # a private root to validate against (Trusted)
    timestamp_url: str | None = None     # RFC 3161 timestamp authority
    llm_retry_delays: tuple[float, ...] = (10.0, 20.0, 40.0)   # Prefect's waits while the LLM is down

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def keys_dir(self) -> Path:
        return self.home / "signer"

    @classmethod
    def from_env(cls, out: str | Path | None = None, env: dict[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        home = Path(env.get("ESTAMPILLE_HOME", ".estampille")).absolute()
        out_dir = Path(out or env.get("ESTAMPILLE_OUT", "out")).absolute()
        ledger = env.get("ESTAMPILLE_LEDGER_URL") or f"sqlite:///{out_dir / 'ledger.sqlite'}"
        cert, key = env.get("ESTAMPILLE_SIGNER_CERT"), env.get("ESTAMPILLE_SIGNER_KEY")
        anchor = env.get("ESTAMPILLE_SIGNER_ANCHOR")
        return cls(home=home, out=out_dir, ledger_url=ledger,
                   llm_base_url=env.get("ESTAMPILLE_LLM_BASE_URL") or None,
                   llm_model=env.get("ESTAMPILLE_LLM_MODEL") or None,
                   signer_cert=Path(cert) if cert else None, signer_key=Path(key) if key else None,
                   signer_callback=env.get("ESTAMPILLE_SIGNER_CALLBACK") or None,
                   signer_anchor=Path(anchor) if anchor else None,
                   timestamp_url=env.get("ESTAMPILLE_TSA_URL") or None,
                   llm_retry_delays=_delays(env.get("ESTAMPILLE_LLM_RETRY_DELAYS")))


def _delays(value: str | None) -> tuple[float, ...]:
    """"10,20,40" -> (10.0, 20.0, 40.0); "" or "0" turns the stage retries off."""
    if value is None:
        return Settings.llm_retry_delays
    try:
        delays = tuple(float(part) for part in value.replace(" ", "").split(",") if part)
    except ValueError:
        delays = (-1.0,)
    if any(d < 0 for d in delays):
        raise ConfigError(f"ESTAMPILLE_LLM_RETRY_DELAYS={value!r}: give seconds separated by commas, e.g. 10,20,40")
    return tuple(d for d in delays if d > 0)
