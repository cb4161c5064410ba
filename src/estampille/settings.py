"""Every environment variable Estampille reads, in one place, with embedded defaults.

Nothing here needs configuring for the demo: the data folder (models, signing keys, Prefect
state) defaults to ./.estampille, output to ./out and the ledger to SQLite inside the output.
pydantic-settings reads the variables; a bad value is a `ConfigError` naming the variable.
Secrets (the review token, the proxy secret, the OpenAI key) are `SecretStr`: they print as
`**********` in logs, reprs and records.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .errors import ConfigError

_MAPPING_ONLY: ContextVar[bool] = ContextVar("settings_from_a_mapping", default=False)


def _var(name: str, default: Any = None, **constraints: Any) -> Any:
    return Field(default, validation_alias=name, **constraints)


def _split(value: Any, separator: str) -> Any:
    return tuple(p.strip() for p in value.split(separator) if p.strip()) if isinstance(value, str) else value


class Settings(BaseSettings):
    # Each field is read from its variable's name only (no `populate_by_name`: `home` must not read HOME).
    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    home: Path = _var("ESTAMPILLE_HOME", Path(".estampille"))  # built models, signer keys, Prefect's state
    out: Path = _var("ESTAMPILLE_OUT", Path("out"))  # one folder per brand and week, and the ledger
    ledger_url_set: str | None = _var("ESTAMPILLE_LEDGER_URL")  # default: SQLite inside `out` (ledger_url)
    # The text model: Estampille's variables beat the brand file, which beats the openai SDK's own.
    llm_base_url: str | None = _var("ESTAMPILLE_LLM_BASE_URL")
    llm_model: str | None = _var("ESTAMPILLE_LLM_MODEL")
    openai_base_url: str | None = _var("OPENAI_BASE_URL")
    openai_api_key: SecretStr | None = _var("OPENAI_API_KEY")
    # Prefect's waits while the LLM endpoint is down: "10,20,40"; "" or "0" turns them off.
    llm_retry_delays: Annotated[tuple[float, ...], NoDecode] = _var("ESTAMPILLE_LLM_RETRY_DELAYS", (10.0, 20.0, 40.0))
    # Signing: the brand's own chain (leaf first) and key, or a KMS/HSM callback; unset = dev CA.
    signer_cert: Path | None = _var("ESTAMPILLE_SIGNER_CERT")
    signer_key: Path | None = _var("ESTAMPILLE_SIGNER_KEY")
    signer_callback: str | None = _var("ESTAMPILLE_SIGNER_CALLBACK")  # module:function
    signer_anchor: Path | None = _var("ESTAMPILLE_SIGNER_ANCHOR")  # a private root (Trusted)
    timestamp_url: str | None = _var("ESTAMPILLE_TSA_URL")  # RFC 3161 timestamp authority
    # Audits: PEM bundles of roots to trust and end-entity certificates to allow (`:`-separated).
    trust_anchors: Annotated[tuple[Path, ...], NoDecode] = _var("ESTAMPILLE_TRUST_ANCHORS", ())
    allowed_certs: Annotated[tuple[Path, ...], NoDecode] = _var("ESTAMPILLE_ALLOWED_CERTS", ())
    # The review server: reviewers' names (comma-separated), the team token, the proxy's secret.
    reviewers: Annotated[tuple[str, ...], NoDecode] = _var("ESTAMPILLE_REVIEWERS", ())
    review_token: SecretStr | None = _var("ESTAMPILLE_REVIEW_TOKEN")
    proxy_secret: SecretStr | None = _var("ESTAMPILLE_PROXY_SECRET")
    # Lookalike feature search: threads for faiss (default: every core this process may use).
    search_threads: int | None = _var("ESTAMPILLE_SEARCH_THREADS", ge=1)
    # The project's Prefect flows (not part of the installed package): default, the checkout's flows/.
    flows_dir: Path | None = _var("ESTAMPILLE_FLOWS_DIR")
    # Where reviewers reach `estampille serve`: the week-ready message links to its run page
    # (beats brand.yaml notify.review_url).
    review_url: str | None = _var("ESTAMPILLE_REVIEW_URL", pattern=r"^https?://")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        """The process environment, or only the mapping `from_env(env=...)` was given."""
        return (init_settings,) if _MAPPING_ONLY.get() else (init_settings, env_settings)

    @property
    def ledger_url(self) -> str:
        return self.ledger_url_set or f"sqlite:///{self.out / 'ledger.sqlite'}"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def keys_dir(self) -> Path:
        return self.home / "signer"

    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, values: Any) -> Any:
        """VAR= counts as unset, but for the retry delays, where it means "no retries"."""
        if not isinstance(values, dict):
            return values
        return {k: v for k, v in values.items() if v != "" or k == "ESTAMPILLE_LLM_RETRY_DELAYS"}

    @field_validator("llm_retry_delays", mode="before")
    @classmethod
    def _delays(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            delays = tuple(float(part) for part in _split(value.replace(" ", ""), ","))
        except ValueError:
            delays = (-1.0,)
        if any(d < 0 for d in delays):
            raise ValueError("give seconds separated by commas, e.g. 10,20,40")
        return tuple(d for d in delays if d > 0)

    @field_validator("trust_anchors", "allowed_certs", mode="before")
    @classmethod
    def _paths(cls, value: Any) -> Any:
        return _split(value, os.pathsep)

    @field_validator("reviewers", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        return _split(value, ",")

    @field_validator("home", "out")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.absolute()

    @classmethod
    def from_env(cls, out: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
        """From the process environment, or from `env` alone when given (tests, worker processes);
        `out` (the --out option) beats ESTAMPILLE_OUT."""
        overrides: dict[str, Any] = {"ESTAMPILLE_OUT": str(out)} if out else {}
        try:
            if env is None:
                return cls(**overrides)
            token = _MAPPING_ONLY.set(True)
            try:
                values: dict[str, Any] = {**env, **overrides}
                return cls(**values)
            finally:
                _MAPPING_ONLY.reset(token)
        except ValidationError as exc:
            raise ConfigError(_explain(exc)) from None


def _explain(exc: ValidationError) -> str:
    fields = Settings.model_fields
    problems = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error.get("loc") else "?"
        variable = fields[name].validation_alias if name in fields else name
        problems.append(f"{variable}: {error['msg'].removeprefix('Value error, ')}")
    return "bad environment variable: " + "; ".join(problems)


# ---------------------------------------------------------------- variables read or set by name
# Besides the declared fields above, a few variables are read by a name known only at run time, or
# set for the libraries Estampille drives: they are read and written here too, and nowhere else.


def secret_variable(name: str, environ: Mapping[str, str] | None = None) -> SecretStr | None:
    """The secret held in the variable `name` (the brand file's `text.llm.api_key_env`: the name is
    configuration, the key never is), as a SecretStr; None when unset or empty."""
    value = (os.environ if environ is None else environ).get(name, "")
    return SecretStr(value) if value.strip() else None


def pinned_gpu() -> bool:
    """Whether CUDA_VISIBLE_DEVICES pins this process to its GPUs (a Dask render worker per GPU)."""
    return bool(os.environ.get("CUDA_VISIBLE_DEVICES"))


# Library chatter (progress bars, optional-dependency notices) hides our own summary.
QUIET_LIBRARIES = {
    "TRANSFORMERS_VERBOSITY": "error",
    "DIFFUSERS_VERBOSITY": "error",
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}


def quiet_libraries() -> None:
    """Turn the libraries' chatter down for a command's run, unless the user set those variables."""
    for name, value in QUIET_LIBRARIES.items():
        os.environ.setdefault(name, value)


def numba_cache_default() -> None:
    """Where numba keeps the compiled lookalike scan between processes (unless NUMBA_CACHE_DIR is
    set): must run before numba is imported, which reads it then."""
    os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "estampille-numba"))


def prefect_local_mode(settings: Settings) -> None:
    """Prefect's local mode, with its state inside our data folder and no telemetry; what the user
    set wins. Prefect reads these when it is imported: call this first."""
    if "PREFECT_HOME" not in os.environ:
        (settings.home / "prefect").mkdir(parents=True, exist_ok=True)  # Prefect makes one level only
        os.environ["PREFECT_HOME"] = str(settings.home / "prefect")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # The first start creates Prefect's database: on 2 busy cores that exceeds the 20 s default.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
