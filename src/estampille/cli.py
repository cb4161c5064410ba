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
review_app = typer.Typer(no_args_is_help=True, help="Approve or reject drafts and images (ledger events).")
ledger_app = typer.Typer(no_args_is_help=True, help="The append-only ledger.")
lookalike_app = typer.Typer(no_args_is_help=True, help="Reference images and lookalike checks.")
app.add_typer(models_app, name="models")
app.add_typer(ledger_app, name="ledger")
app.add_typer(review_app, name="review")
app.add_typer(lookalike_app, name="lookalike")

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
                                   help="prefect (flow in Prefect's local mode) or plain (no Prefect)."),
        render_workers: int = typer.Option(1, "--render-workers", min=1,
                                           help="Split renders over this many worker processes (one per GPU)."),
        dask: str = typer.Option(None, "--dask", help="Address of a Dask scheduler for the render workers "
                                                      "(default with --render-workers: a local cluster).")) -> None:
    """Run the weekly batch: draft, prompt, render, check lookalikes, sign, write the review page."""
    week = week or iso_week(dt.date.today())
    settings = Settings.from_env(out=out)
    if engine == "prefect":
        _prefect_defaults(settings)
        from flows.weekly_batch import weekly_batch_for

        summary = weekly_batch_for(render_workers, dask)(str(brand), week, str(settings.out),
                                                         render_workers=render_workers)
    elif engine == "plain":
        if render_workers > 1:
            raise typer.BadParameter("--render-workers needs --engine prefect (a Dask task runner)")
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


def _open_ledger(url: str | None):
    from .ledger import Ledger

    settings = Settings.from_env()
    url = url or settings.ledger_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        raise EstampilleError(f"no ledger at {url}: run a batch first, or pass --ledger URL")
    return Ledger(url)


def _decide(items: list[str], decision: str, reviewer: str, comment: str, override: str | None,
            text: str | None, ledger: str | None) -> None:
    from .review.decisions import decide

    store = _open_ledger(ledger)
    try:
        for item in items:
            event = decide(store, item, decision, reviewer, comment, override, text)
            typer.echo(f"{item}: {decision} by {reviewer} (ledger row {event.seq})")
    finally:
        store.close()


@review_app.command("approve")
def review_approve(items: list[str] = typer.Argument(..., help="Draft or image ids."),
                   reviewer: str = typer.Option(..., "--reviewer", help="Who decides (recorded)."),
                   comment: str = typer.Option("", "--comment"),
                   override_lookalike: str = typer.Option(None, "--override-lookalike",
                                                          help="Reason to approve an image flagged as a lookalike."),
                   text: str = typer.Option(None, "--text", help="Edited caption for a draft (before/after recorded)."),
                   ledger: str = typer.Option(None, "--ledger")) -> None:
    """Approve drafts or images."""
    _decide(items, "approved", reviewer, comment, override_lookalike, text, ledger)


@review_app.command("reject")
def review_reject(items: list[str] = typer.Argument(..., help="Draft or image ids."),
                  reviewer: str = typer.Option(..., "--reviewer"), comment: str = typer.Option("", "--comment"),
                  ledger: str = typer.Option(None, "--ledger")) -> None:
    """Reject drafts or images: a rejected image never reaches an export."""
    _decide(items, "rejected", reviewer, comment, None, None, ledger)


@app.command()
def publish(brand: Path = typer.Option(..., "--brand"), week: str = typer.Option(..., "--week"),
            ledger: str = typer.Option(None, "--ledger")) -> None:
    """Export approved items whose provenance verifies; say why anything else is refused."""
    from .brand import load_brand
    from .review.export import publish as export
    from .stages import signer_identity

    settings = Settings.from_env()
    bundle = load_brand(brand)
    store = _open_ledger(ledger)
    try:
        report = export(store, bundle, week, settings.out / bundle.slug / week, signer_identity(settings))
    finally:
        store.close()
    for item in report.exported:
        typer.echo(f"exported {item['slot']} ({item['platform']}): {len(item['images'])} image(s)")
    for item in report.refused:
        typer.echo(f"refused {item['item']}: {item['reason']}")
    typer.echo(f"Export: {report.folder} ({len(report.exported)} post(s) exported, {len(report.refused)} refusal(s))")


@app.command()
def audit(paths: list[Path] = typer.Argument(..., help="Image files or folders."),
          as_json: bool = typer.Option(False, "--json", help="One JSON object per file, for machines."),
          ledger: str = typer.Option(None, "--ledger")) -> None:
    """Report C2PA state, XMP and the ledger record of each file, even a stripped or re-encoded one."""
    import json

    from .provenance.audit import audit_files
    from .stages import signer_identity

    store = _open_ledger(ledger)
    try:
        reports = audit_files(paths, store, signer_identity(Settings.from_env()).trust_anchor_pem)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in reports], indent=2, ensure_ascii=False))
    for r in reports if not as_json else ():
        typer.echo(f"{r.file}")
        if r.error:
            typer.echo(f"  error: {r.error}")
            continue
        typer.echo(f"  C2PA: {r.c2pa_state}" + (f" ({', '.join(r.c2pa_failures)})" if r.c2pa_failures else ""))
        source = r.xmp.get("Iptc4xmpExt:DigitalSourceType", "")
        typer.echo(f"  XMP: {source.rsplit('/', 1)[-1] if source else 'none'}"
                   + ("  — metadata gone (stripped or re-encoded)" if r.metadata_gone else ""))
        if r.record:
            how = r.record["found_by"] + (f", distances {r.record['distances']}" if "distances" in r.record else "")
            typer.echo(f"  ledger: {r.record['kind']} row {r.record['ledger_row']}, image {r.record['image_id']}, "
                       f"{r.record['brand']} {r.record['slot']} (found by {how})")
        else:
            typer.echo("  ledger: no matching record")
    untraced = [r for r in reports if r.error or r.record is None]
    if untraced:
        raise typer.Exit(ExitStatus.ERROR)


@app.command("import-edit")
def import_edit(image_id: str = typer.Argument(..., help="The render the retouch starts from."),
                file: Path = typer.Argument(..., help="The retouched file (PNG, JPEG, WebP, TIFF)."),
                editor: str = typer.Option(..., "--editor", help="Who retouched it (recorded)."),
                ledger: str = typer.Option(None, "--ledger")) -> None:
    """Record a retouch made outside Estampille as the image's current version."""
    from .provenance.edits import import_edit as record_edit
    from .stages import signer_identity

    settings = Settings.from_env()
    store = _open_ledger(ledger)
    try:
        payload = record_edit(store, settings.out, image_id, file, editor, signer_identity(settings))
    finally:
        store.close()
    typer.echo(f"{image_id}: retouch by {editor} recorded as {payload['file']} "
               f"(compositeWithTrainedAlgorithmicMedia, C2PA {payload['c2pa_state']})")


@app.command()
def rerender(image_id: str = typer.Argument(..., help="Image id (img-…) from the review page or a sidecar."),
             out: Path = typer.Option(None, "--out", help="Where to write the re-created PNG."),
             ledger: str = typer.Option(None, "--ledger", help="SQLAlchemy URL (default: the run's SQLite).")) -> None:
    """Re-create an image from its ledger record and compare it with the recorded one."""
    from .paths import inside
    from .render.rerender import rerender as rerender_image

    settings = Settings.from_env()
    store = _open_ledger(ledger)
    event = store.get(image_id)
    store.close()
    if event is None or event.kind != "render.created":
        raise EstampilleError(f"no render {image_id} in the ledger at {store.safe_url}")
    original = inside(settings.out / event.brand / event.week, event.payload["file"])
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


@app.command()
def serve(host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: localhost only)."),
          port: int = typer.Option(8000, "--port"),
          brands: Path = typer.Option(Path("brand_assets"), "--brands",
                                      help="Folder holding the brand folders (briefs, competitor images, publish)."),
          reviewers: list[str] = typer.Option(None, "--reviewer",
                                              help="A reviewer's name (repeat); or $ESTAMPILLE_REVIEWERS=a,b."),
          proxy_header: str = typer.Option(None, "--proxy-header",
                                           help="Take the reviewer's name from this header, set by a trusted "
                                                "reverse proxy (e.g. X-Forwarded-User).")) -> None:
    """Serve the review and audit pages. Reviewers sign in with their name and the team token
    ($ESTAMPILLE_REVIEW_TOKEN; one is made and printed here when it is unset)."""
    import secrets

    import uvicorn

    from .stages import signer_identity
    from .web.app import WebConfig, create_app
    from .web.security import ReviewerPolicy, is_loopback

    settings = Settings.from_env()
    names = tuple(reviewers or [n.strip() for n in os.environ.get("ESTAMPILLE_REVIEWERS", "").split(",") if n.strip()])
    token = os.environ.get("ESTAMPILLE_REVIEW_TOKEN") or None
    if names and not token and not proxy_header:
        token = secrets.token_urlsafe(12)
        typer.echo(f"Team token for this session (set ESTAMPILLE_REVIEW_TOKEN to choose one): {token}")
    if not is_loopback(host) and not proxy_header:
        typer.echo(f"warning: serving on {host} without a reverse proxy: use HTTPS in front of it", err=True)
    config = WebConfig(settings=settings, identity=signer_identity(settings),
                       policy=ReviewerPolicy(names, token, proxy_header),
                       brands_dir=brands.absolute() if brands.is_dir() else None, bind_host=host)
    typer.echo(f"Review pages on http://{'localhost' if is_loopback(host) else host}:{port}/ "
               f"(ledger {_safe_ledger_url(settings)})")
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning")


def _safe_ledger_url(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.ledger_url).render_as_string(hide_password=True)


def _index_folder(index: Path | None, brand: Path | None) -> Path:
    """--index, or the brand's own index under the output folder, or $ESTAMPILLE_OUT/lookalike-index."""
    settings = Settings.from_env()
    if index:
        return index
    if brand:
        return settings.out / brand.absolute().name / "lookalike-index"
    return settings.out / "lookalike-index"


@lookalike_app.command("index")
def lookalike_index(paths: list[Path] = typer.Argument(..., help="Image files or folders (walked)."),
                    competitor: str = typer.Option(..., "--competitor", help="Whose images these are."),
                    captured: str = typer.Option(None, "--captured", help="When they were captured (e.g. 2026-11-20)."),
                    rights: str = typer.Option(None, "--rights", help="A rights note (where from, what use)."),
                    index: Path = typer.Option(None, "--index", help="Index folder."),
                    brand: Path = typer.Option(None, "--brand", help="Use this brand's index (out/<brand>/lookalike-index)."),
                    workers: int = typer.Option(None, "--workers", min=1, help="Processes (default: one per core).")
                    ) -> None:
    """Add images to a reference index: only new or changed files are hashed; bad files are skipped."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from .lookalike.ingest import ingest
    from .lookalike.store import ReferenceStore

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise typer.BadParameter(f"not found: {', '.join(missing)}")
    store = ReferenceStore(_index_folder(index, brand))
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("hashing", total=None)
        report = ingest(store, paths, competitor, captured=captured, rights=rights, workers=workers,
                        progress=lambda done, total: bar.update(task, completed=done, total=total))
    total = store.count()
    store.close()
    for source, reason in report.skipped:
        typer.echo(f"skipped {source}: {reason}", err=True)
    typer.echo(f"{competitor}: {report.added} added ({report.replaced} changed), {report.unchanged} unchanged, "
               f"{len(report.skipped)} skipped; {total} images in {store.folder}")


@lookalike_app.command("check")
def lookalike_check(files: list[Path] = typer.Argument(..., help="Images to check (renders, drafts, downloads)."),
                    as_json: bool = typer.Option(False, "--json", help="A JSON array: one object per file."),
                    index: Path = typer.Option(None, "--index", help="Index folder."),
                    brand: Path = typer.Option(None, "--brand", help="Use this brand's index."),
                    rotations: bool = typer.Option(False, "--rotations", help="Also search quarter-turned copies."),
                    dask: str = typer.Option(None, "--dask", help="Scan the shards on this Dask scheduler.")) -> None:
    """Matches above threshold per file. Exit 0: no lookalike, 1: at least one, 2: error."""
    import json

    from .lookalike.engine import calibrated, hash_queries, search_store
    from .lookalike.store import ReferenceStore

    folder = _index_folder(index, brand)
    if not (folder / "catalog.sqlite").is_file():
        raise typer.BadParameter(f"no index at {folder}: build one with `estampille lookalike index`")
    store = ReferenceStore(folder)
    queries, errors = hash_queries(files)
    readable = [n for n, q in enumerate(queries) if q is not None]
    if dask:
        from dask.distributed import Client

        from .lookalike.distributed import search_on_dask

        with Client(dask) as client:
            hits = search_on_dask(client, folder, [queries[n] for n in readable], rotations=rotations).hits
    else:
        hits = search_store(store, [queries[n] for n in readable], rotations=rotations)
    described = store.describe({h.reference_id for h in hits})
    store.close()
    results = [{"file": str(f), "matches": [], "error": e} for f, e in zip(files, errors)]
    for hit in hits:
        reference = described[hit.reference_id]
        results[readable[hit.query]]["matches"].append({
            "competitor": reference["competitor"], "source": reference["source"], "distances": hit.distances,
            "verdict": "lookalike", "captured": reference["captured"], "rights": reference["rights"]})
    if as_json:
        typer.echo(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        limits = calibrated()
        for result in results:
            status = "error" if result["error"] else ("LOOKALIKE" if result["matches"] else "clear")
            typer.echo(f"{result['file']}: {status}" + (f" ({result['error']})" if result["error"] else ""))
            for m in result["matches"]:
                typer.echo(f"  {m['competitor']}: {m['source']}  " + " ".join(
                    f"{k}={v}" for k, v in m["distances"].items())
                    + f"  (thresholds phash<={limits.phash} window<={limits.window} pdq<={limits.pdq})")
    if any(r["error"] for r in results):
        raise typer.Exit(ExitStatus.USAGE)
    if any(r["matches"] for r in results):
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
    store = _open_ledger(ledger)
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
