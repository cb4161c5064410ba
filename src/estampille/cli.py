"""The `estampille` command. The library does the work; this file turns its errors into
one-line messages and exit statuses (0 ok, 1 failure, 2 bad input), tracebacks only with --debug."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import typer

from .brand import iso_week
from .errors import EstampilleError, ExitStatus
from .settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Weekly AI visuals for brands, with provenance and human review.")
models_app = typer.Typer(no_args_is_help=True, help="Image models.")
ledger_app = typer.Typer(no_args_is_help=True, help="The append-only ledger.")
app.add_typer(models_app, name="models")
app.add_typer(ledger_app, name="ledger")

state = {"debug": False}
# Library chatter (progress bars, optional-dependency notices) hides our own summary.
for _name, _value in (("TRANSFORMERS_VERBOSITY", "error"), ("DIFFUSERS_VERBOSITY", "error"),
                      ("TQDM_DISABLE", "1"), ("HF_HUB_DISABLE_TELEMETRY", "1")):
    os.environ.setdefault(_name, _value)


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show tracebacks.")) -> None:
    state["debug"] = debug


def _prefect_defaults(settings: Settings) -> None:
    """Prefect's local mode, with its state inside our data folder and no telemetry."""
    if "PREFECT_HOME" not in os.environ:
        (settings.home / "prefect").mkdir(parents=True, exist_ok=True)   # Prefect makes one level only
        os.environ["PREFECT_HOME"] = str(settings.home / "prefect")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # The first start creates Prefect's database: on 2 busy cores that exceeds the 20 s default.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


@app.command()
def run(brand: Path = typer.Option(..., "--brand", help="Brand folder with brand.yaml and calendar.yaml."),
        week: str = typer.Option(None, "--week", help="ISO week, e.g. 2026-W48 (default: this week)."),
        out: Path = typer.Option(None, "--out", help="Output folder (default: $ESTAMPILLE_OUT or ./out)."),
        engine: str = typer.Option("prefect", "--engine",
                                   help="prefect (flow in Prefect's local mode) or plain (no Prefect).")) -> None:
    """Run the weekly batch: draft, prompt, render, check lookalikes, sign, write the review page."""
    week = week or iso_week(dt.date.today())
    settings = Settings.from_env(out=out)
    if engine == "prefect":
        _prefect_defaults(settings)
        from flows.weekly_batch import weekly_batch

        summary = weekly_batch(str(brand), week, str(settings.out))
    elif engine == "plain":
        from .stages import run_batch

        summary = run_batch(brand, week, settings)
    else:
        raise typer.BadParameter("--engine must be prefect or plain")
    _print_summary(summary)
    if summary["failures"]:
        raise typer.Exit(ExitStatus.ERROR)


def _print_summary(summary: dict) -> None:
    for stage, count in summary["counts"].items():
        typer.echo(f"{stage:>7}: {count['new']} new, {count['reused']} already done"
                   + (f", {count['failed']} FAILED" if count["failed"] else ""))
    for note in summary["notes"]:
        typer.echo(f"note: {note}")
    for failure in summary["failures"]:
        typer.echo(f"failed: {failure}", err=True)
    if summary["failures"]:
        typer.echo("Run the same command again to retry only what failed.", err=True)
    typer.echo(f"Output: {summary['run_dir']}")
    typer.echo(f"Review page: {summary['review_page']}")
    typer.echo(f"Ledger: {summary['ledger']}")


@app.command()
def rerender(image_id: str = typer.Argument(..., help="Image id (img-…) from the review page or a sidecar."),
             out: Path = typer.Option(None, "--out", help="Where to write the re-created PNG."),
             ledger: str = typer.Option(None, "--ledger", help="SQLAlchemy URL (default: the run's SQLite).")) -> None:
    """Re-create an image from its ledger record and compare it with the recorded one."""
    from .ledger import Ledger
    from .render.rerender import rerender as rerender_image

    settings = Settings.from_env()
    store = Ledger(ledger or settings.ledger_url)
    event = store.get(image_id)
    store.close()
    if event is None or event.kind != "render.created":
        raise EstampilleError(f"no render {image_id} in the ledger at {store.safe_url}")
    original = settings.out / event.brand / event.week / event.payload["file"]
    result = rerender_image(event.payload, settings, original)
    target = out or Path(f"{image_id}.rerender.png")
    result.image.save(target, "PNG")
    typer.echo(f"Re-created {image_id} with {event.payload['model']['id']} (seed {event.payload['seed']}, "
               f"batch size {event.payload['batch_size']}) -> {target}")
    if result.identical:
        typer.echo("pixel-identical to the recorded render (same PNG bytes)")
        return
    detail = (f": {result.differing_pixels} pixels differ, by at most {result.max_difference}"
              if result.differing_pixels is not None else "")
    typer.echo(f"DIFFERENT from the recorded render{detail}", err=True)
    raise typer.Exit(ExitStatus.ERROR)


@models_app.command("build-tiny")
def build_tiny(out: Path = typer.Option(None, "--out", help="Folder (default: $ESTAMPILLE_HOME/models/tiny-sd)."),
               force: bool = typer.Option(False, "--force", help="Rebuild even if it exists.")) -> None:
    """Build the tiny random-weight test pipeline and save it with save_pretrained."""
    from .render.tiny import build_tiny_model

    folder = out or Settings.from_env().models_dir / "tiny-sd"
    build_tiny_model(folder, overwrite=force)
    typer.echo(f"Tiny test model (random weights, test only): {folder}")


@ledger_app.command("verify")
def ledger_verify(ledger: str = typer.Option(None, "--ledger", help="SQLAlchemy URL (default: the run's SQLite).")
                  ) -> None:
    """Recompute the hash chain; name the first row that does not fit."""
    from .ledger import Ledger

    settings = Settings.from_env()
    url = ledger or settings.ledger_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise EstampilleError(f"no ledger at {url}: run a batch first, or pass --ledger URL")
    store = Ledger(url)
    report = store.verify()
    if report.ok:
        typer.echo(f"ledger OK: {report.rows} rows, hash chain intact ({store.safe_url})")
        return
    typer.echo(f"ledger BROKEN at row {report.first_bad_seq}: {report.reason}", err=True)
    raise typer.Exit(ExitStatus.ERROR)


def main(argv: list[str] | None = None) -> int:
    """Entry point: one place maps errors to exit statuses."""
    try:
        result = app(args=argv, standalone_mode=False)
    except EstampilleError as exc:
        if state["debug"]:
            raise
        typer.echo(f"error: {exc}", err=True)
        return int(exc.exit_status)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except (typer.BadParameter, typer.Abort) as exc:
        typer.echo(f"error: {exc}", err=True)
        return int(ExitStatus.USAGE)
    except Exception as exc:   # click's usage errors arrive as click.exceptions.UsageError
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return int(ExitStatus.USAGE)
        if isinstance(exc, OSError) and exc.errno == 28:
            typer.echo(f"error: disk full while writing ({exc.filename}): free space and rerun; "
                       "finished work is kept", err=True)
            return int(ExitStatus.ERROR)
        raise
    return int(result) if isinstance(result, int) else int(ExitStatus.OK)


if __name__ == "__main__":
    sys.exit(main())
