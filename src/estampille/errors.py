"""Errors a user can act on. The CLI maps each class to one exit status (see cli.py)."""

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1  # something failed while working (a model, the disk, a check)
    USAGE = 2  # the user's input is wrong: config file, arguments, missing model


class EstampilleError(Exception):
    """Base class: the message is shown to the user as is, without a traceback."""

    exit_status = ExitStatus.ERROR


class ConfigError(EstampilleError):
    """A brand or calendar file is malformed; the message names file, field and line."""

    exit_status = ExitStatus.USAGE


class SetupError(EstampilleError):
    """Something the command needs around it is missing (a server, a variable); the message
    names the fix."""

    exit_status = ExitStatus.USAGE


class ModelNotFoundError(EstampilleError):
    """A configured model folder or file does not exist; the message names the fix."""

    exit_status = ExitStatus.USAGE


class LicenceError(EstampilleError):
    """The brand's licence policy forbids the configured model."""

    exit_status = ExitStatus.USAGE


class LookalikeError(EstampilleError):
    """One render could not be checked (its file is unreadable): that render stays unchecked."""


class LLMError(EstampilleError):
    """The text model failed for one slot (timeout, junk, refusal) after bounded retries."""

    def __init__(self, message: str, calls: list | None = None):
        super().__init__(message)
        self.calls = calls or []  # the calls made before giving up, for the ledger


class LLMUnavailableError(LLMError):
    """The text endpoint does not answer at all (connection refused or dropped, DNS, HTTP 429 or
    502-504 after the client's own retries): every item would fail the same way. Under Prefect
    it stops the stage, which is retried later (finished items are in the ledger); without a
    retrying orchestrator, or once the retries are spent, it costs only the item, as any LLMError."""


class LedgerError(EstampilleError):
    """The ledger cannot be opened or written."""
