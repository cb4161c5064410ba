"""The `estampille` command. The library does the work; this file turns its errors into
one-line messages and exit statuses (0 ok, 1 failure, 2 bad input), tracebacks only with --debug."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

import typer

from .errors import ConfigError, EstampilleError, ExitStatus, SetupError
from .settings import Settings, prefect_local_mode, quiet_libraries

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Weekly AI visuals for brands, with provenance and human review.",
)
models_app = typer.Typer(no_args_is_help=True, help="Image models.")
review_app = typer.Typer(no_args_is_help=True, help="Approve or reject drafts and images (ledger events).")
ledger_app = typer.Typer(no_args_is_help=True, help="The append-only ledger.")
lookalike_app = typer.Typer(no_args_is_help=True, help="Reference images and lookalike checks.")
calendar_app = typer.Typer(no_args_is_help=True, help="The brand's calendar (YAML, CSV or XLSX).")
app.add_typer(models_app, name="models")
app.add_typer(ledger_app, name="ledger")
app.add_typer(review_app, name="review")
app.add_typer(lookalike_app, name="lookalike")
app.add_typer(calendar_app, name="calendar")

state = {"debug": False}


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show tracebacks.")) -> None:
    state["debug"] = debug
    quiet_libraries()  # before a command imports transformers or diffusers


def _flows(settings: Settings, module: str):
    """A module of the project's Prefect flows. The wheel ships them as `estampille.flows`; in a
    checkout (an editable install) they are the top-level flows/ folder, loaded by path as Prefect
    deployments load them (`prefect.yaml`); ESTAMPILLE_FLOWS_DIR names another folder. The library
    never imports Prefect: only this loader does. A folder's parent goes on sys.path, which worker
    processes inherit."""
    import importlib

    here = Path(__file__).resolve().parent
    if settings.flows_dir is None and (here / "flows" / f"{module}.py").is_file():
        return importlib.import_module(f"{__package__}.flows.{module}")
    folder = (settings.flows_dir or here.parents[1] / "flows").absolute()
    if not (folder / f"{module}.py").is_file():
        raise SetupError(
            f"the Prefect flows are not at {folder} (they ship in the wheel as estampille.flows, "
            "and live in a checkout's flows/ folder): reinstall the package, set ESTAMPILLE_FLOWS_DIR "
            "to that folder, or use --engine plain"
        )
    if str(folder.parent) not in sys.path:
        sys.path.insert(0, str(folder.parent))
    return importlib.import_module(f"{folder.name}.{module}")


@app.command()
def run(
    brand: Path = typer.Option(..., "--brand", help="Brand folder with brand.yaml and calendar.yaml."),
    week: str = typer.Option(None, "--week", help="ISO week, e.g. 2026-W48 (default: this week)."),
    out: Path = typer.Option(None, "--out", help="Output folder (default: $ESTAMPILLE_OUT or ./out)."),
    engine: str = typer.Option(
        "prefect", "--engine", help="prefect (flow in Prefect's local mode) or plain (no Prefect)."
    ),
    render_workers: int = typer.Option(
        1, "--render-workers", min=1, help="Split renders over this many worker processes (one per GPU)."
    ),
    dask: str = typer.Option(
        None,
        "--dask",
        help="Address of a Dask scheduler for the render workers (default with --render-workers: a local cluster).",
    ),
) -> None:
    """Run the weekly batch: draft, prompt, render, check lookalikes, sign, write the review page."""
    from .batch import check_inputs

    if engine not in ("prefect", "plain"):
        raise typer.BadParameter("--engine must be prefect or plain")
    settings = Settings.from_env(out=out)
    week = check_inputs(brand, week, settings).week  # bad input stops here, in one line, before Prefect
    if engine == "prefect":
        prefect_local_mode(settings)
        weekly_batch_for = _flows(settings, "weekly_batch").weekly_batch_for
        summary = weekly_batch_for(render_workers, dask)(
            str(brand), week, str(settings.out), render_workers=render_workers
        )
    elif engine == "plain":
        if render_workers > 1:
            raise typer.BadParameter("--render-workers needs --engine prefect (a Dask task runner)")
        from .stages import run_batch

        summary = run_batch(brand, week, settings)
    _print_summary(summary)
    if summary["failures"]:
        raise typer.Exit(ExitStatus.ERROR)


@app.command()
def schedule(
    brand: Path = typer.Option(..., "--brand", help="Brand folder with brand.yaml and calendar.yaml."),
    cron: str = typer.Option("0 7 * * 1", "--cron", help="When the batch runs (default: Mondays 07:00)."),
    timezone: str = typer.Option(None, "--timezone", help="Timezone of --cron (default: brand.yaml timezone)."),
    name: str = typer.Option(None, "--name", help="Deployment name (default: weekly-<brand folder>)."),
) -> None:
    """Serve the weekly batch on a schedule from this process, against the Prefect server in
    PREFECT_API_URL; each run makes the week of its scheduled time. Stop with Ctrl-C."""
    from .brand import load_brand

    bundle = load_brand(brand)  # a bad brand stops here, before Prefect
    serve_weekly = _flows(Settings.from_env(), "weekly_batch").serve_weekly
    serve_weekly(bundle, cron, timezone or bundle.brand.timezone, name or f"weekly-{bundle.slug}")


def _print_summary(summary: dict) -> None:
    for stage, count in summary["counts"].items():
        typer.echo(
            f"{stage:>7}: {count['new']} new, {count['reused']} already done"
            + (f", {count['failed']} FAILED" if count["failed"] else "")
        )
    for note in summary["notes"]:
        typer.echo(f"note: {note}")
    for sent in summary.get("notifications", []):
        if sent["ok"]:
            typer.echo(
                f"notified: {sent['channel']}"
                + (" (already sent for this run)" if sent.get("already_sent") else f" ({sent['target']})")
            )
    for failure in summary["failures"]:
        typer.echo(f"failed: {failure}", err=True)
    if summary["failures"]:
        typer.echo("Run the same command again to retry only what failed.", err=True)
    typer.echo(f"Output: {summary['run_dir']}")
    typer.echo(f"Review page: {summary['review_page']}")
    typer.echo(f"Ledger: {summary['ledger']}")


def _open_ledger(url: str | None):
    """The ledger a command works on; a missing one is an error (it is never created here)."""
    url, ledger_db = _existing_ledger(url, Settings.from_env())
    if ledger_db is None:
        raise EstampilleError(f"no ledger at {url}: run a batch first, or pass --ledger URL")
    return ledger_db


def _decide(
    items: list[str],
    decision: Literal["approved", "rejected"],
    reviewer: str,
    comment: str,
    override: str | None,
    text: str | None,
    ledger: str | None,
) -> None:
    from .review.decisions import decide

    ledger_db = _open_ledger(ledger)
    try:
        for item in items:
            event = decide(ledger_db, item, decision, reviewer, comment, override, text)
            typer.echo(f"{item}: {decision} by {reviewer} (ledger row {event.seq})")
    finally:
        ledger_db.close()


@review_app.command("approve")
def review_approve(
    items: list[str] = typer.Argument(..., help="Draft or image ids."),
    reviewer: str = typer.Option(..., "--reviewer", help="Who decides (recorded)."),
    comment: str = typer.Option("", "--comment"),
    override_lookalike: str = typer.Option(
        None, "--override-lookalike", help="Reason to approve an image flagged as a lookalike."
    ),
    text: str = typer.Option(None, "--text", help="Edited caption for a draft (before/after recorded)."),
    ledger: str = typer.Option(None, "--ledger"),
) -> None:
    """Approve drafts or images."""
    _decide(items, "approved", reviewer, comment, override_lookalike, text, ledger)


@review_app.command("reject")
def review_reject(
    items: list[str] = typer.Argument(..., help="Draft or image ids."),
    reviewer: str = typer.Option(..., "--reviewer"),
    comment: str = typer.Option("", "--comment"),
    ledger: str = typer.Option(None, "--ledger"),
) -> None:
    """Reject drafts or images: a rejected image never reaches an export."""
    _decide(items, "rejected", reviewer, comment, None, None, ledger)


@app.command()
def publish(
    brand: Path = typer.Option(..., "--brand"),
    week: str = typer.Option(..., "--week"),
    ledger: str = typer.Option(None, "--ledger"),
) -> None:
    """Export approved items whose provenance verifies; say why anything else is refused."""
    from .brand import load_brand
    from .paths import run_folder
    from .provenance.identity import from_settings as signer_identity
    from .review import export

    settings = Settings.from_env()
    bundle = load_brand(brand)
    ledger_db = _open_ledger(ledger)
    try:
        report = export.publish(
            ledger_db, bundle, week, run_folder(settings.out, bundle.slug, week), signer_identity(settings)
        )
    finally:
        ledger_db.close()
    for item in report.exported:
        typer.echo(f"exported {item['slot']} ({item['platform']}): {len(item['images'])} image(s)")
    for item in report.refused:
        typer.echo(f"refused {item['item']}: {item['reason']}")
    for path in report.files:
        typer.echo(f"scheduler file: {path}")
    for warning in report.warnings:
        typer.echo(f"warning: {warning}")
    typer.echo(f"Export: {report.folder} ({len(report.exported)} post(s) exported, {len(report.refused)} refusal(s))")


@app.command()
def audit(
    paths: list[Path] = typer.Argument(..., help="Image files or folders."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document: a list, one object per file."),
    ledger: str = typer.Option(None, "--ledger", help="Ledger URL (default: the configured one, if it exists)."),
    trust_anchors: list[Path] = typer.Option(
        [],
        "--trust-anchors",
        help="PEM bundle of anchors you trust (e.g. the C2PA trust list); repeatable; also $ESTAMPILLE_TRUST_ANCHORS.",
    ),
    allowed_certs: list[Path] = typer.Option(
        [], "--allowed-certs", help="PEM bundle of signer certificates trusted as they are."
    ),
    fetch_remote: bool = typer.Option(
        False, "--fetch-remote", help="Fetch remote manifests (network); offline by default."
    ),
    report: Path = typer.Option(
        None, "--report", help="Also write a report for people or tools: .html, .csv or .json."
    ),
) -> None:
    """What each file's Content Credentials, XMP and ledger record say, and whether they agree.
    Read-only; works without a ledger. Exit 1 if a file cannot be read or traced."""
    import json

    from .images import image_files
    from .provenance.audit import Auditor
    from .provenance.audit_report import print_report, write_report
    from .provenance.trust import audit_trust

    settings = Settings.from_env()
    if report is not None and report.suffix.lower() not in (".html", ".csv", ".json"):
        raise typer.BadParameter("--report must end in .html, .csv or .json")
    trust = audit_trust(settings, trust_anchors, allowed_certs)
    url, ledger_db = _existing_ledger(ledger, settings)
    missing = None if ledger_db else f"no ledger at {url}: nothing could be traced (pass --ledger URL to trace files)"
    files = image_files(paths)
    try:
        auditor = Auditor(ledger_db, trust, fetch_remote, settings.out)
        reports = _with_progress(files, auditor.audit)
    finally:
        if ledger_db is not None:
            ledger_db.close()
    if missing:
        for r in reports:
            r.notes.append(missing)
    if report is not None:
        write_report(reports, report)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in reports], indent=2, ensure_ascii=False))
    else:
        for r in reports:
            print_report(r, typer.echo)
        if report is not None:
            typer.echo(f"Report: {report}")
    if any(r.error or r.record is None for r in reports):
        raise typer.Exit(ExitStatus.ERROR)


def _existing_ledger(url: str | None, settings: Settings):
    """(url, the ledger or None): a missing SQLite file is never created by a command that reads."""
    from .ledger import Ledger

    url = url or settings.ledger_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return url, None
    return url, Ledger(url)


def _with_progress(items: list, work) -> list:
    """`work` on each item, with a progress bar on the terminal for more than a few items."""
    if len(items) < 5 or not sys.stderr.isatty():
        return [work(item) for item in items]
    from rich.progress import Progress

    results = []
    with Progress(transient=True) as progress:
        task = progress.add_task("auditing", total=len(items))
        for item in items:
            results.append(work(item))
            progress.advance(task)
    return results


@app.command("import-edit")
def import_edit(
    image_id: str = typer.Argument(..., help="The render the retouch starts from."),
    file: Path = typer.Argument(..., help="The retouched file (PNG, JPEG, WebP, TIFF)."),
    editor: str = typer.Option(..., "--editor", help="Who retouched it (recorded)."),
    ledger: str = typer.Option(None, "--ledger"),
) -> None:
    """Record a retouch made outside Estampille as the image's current version."""
    from .provenance.identity import from_settings as signer_identity
    from .review.edits import import_edit as record_edit

    settings = Settings.from_env()
    ledger_db = _open_ledger(ledger)
    try:
        retouch = record_edit(ledger_db, settings.out, image_id, file, editor, signer_identity(settings))
    finally:
        ledger_db.close()
    typer.echo(
        f"{image_id}: retouch by {editor} recorded as {retouch.file} "
        f"(compositeWithTrainedAlgorithmicMedia, C2PA {retouch.c2pa_state})"
    )


@app.command()
def rerender(
    image_id: str = typer.Argument(..., help="Image id (img-…) from the review page or a sidecar."),
    out: Path = typer.Option(None, "--out", help="Where to write the re-created PNG."),
    ledger: str = typer.Option(None, "--ledger", help="SQLAlchemy URL (default: the run's SQLite)."),
) -> None:
    """Re-create an image from its ledger record and compare it with the recorded one."""
    from .paths import inside, run_folder
    from .records import Kind, Render
    from .render.rerender import rerender as rerender_image

    settings = Settings.from_env()
    ledger_db = _open_ledger(ledger)
    event = ledger_db.get(image_id)
    ledger_db.close()
    if event is None or event.kind != Kind.RENDER_CREATED:
        raise EstampilleError(f"no render {image_id} in the ledger at {ledger_db.safe_url}")
    recorded = Render.of(event)
    original = inside(run_folder(settings.out, event.brand, event.week), recorded.file)
    result = rerender_image(recorded, settings, original)
    target = out or Path(f"{image_id}.rerender.png")
    result.image.save(target, "PNG")
    typer.echo(
        f"Re-created {image_id} with {recorded.model['id']} (seed {recorded.seed}, "
        f"batch size {recorded.batch_size}) -> {target}"
    )
    if result.identical:
        typer.echo("pixel-identical to the recorded render (same PNG bytes)")
        signed = _watermarked_check(image_id, result.image, settings, event, ledger)
        if signed is not None and not signed.identical:
            typer.echo(
                f"DIFFERENT from the signed file {signed.file} once watermarked: "
                f"{signed.differing_pixels} pixels differ",
                err=True,
            )
            raise typer.Exit(ExitStatus.ERROR)
        return
    detail = (
        f": {result.differing_pixels} pixels differ, by at most {result.max_difference}"
        if result.differing_pixels is not None
        else ""
    )
    typer.echo(f"DIFFERENT from the recorded render{detail}", err=True)
    raise typer.Exit(ExitStatus.ERROR)


def _watermarked_check(image_id: str, image, settings: Settings, render_event, ledger_url: str | None):
    """The re-created render, watermarked as it was signed, against the signed file's pixels."""
    from .paths import inside, run_folder
    from .records import Kind, Provenance
    from .render.rerender import compare_signed

    ledger_db = _open_ledger(ledger_url)
    signed = [Provenance.of(e) for e in ledger_db.events(kind=Kind.PROVENANCE_SIGNED)]
    signed = [s for s in signed if s.image_id == image_id]
    ledger_db.close()
    if not signed:
        return None
    run_dir = run_folder(settings.out, render_event.brand, render_event.week)
    result = compare_signed(image, signed[-1], inside(run_dir, signed[-1].file))
    mark = signed[-1].watermark
    if result is not None and result.identical and mark:
        typer.echo(
            f"watermarked as signed ({mark['method']} v{mark['version']}, "
            f"strength {mark['strength']}): pixel-identical to the signed file {result.file}"
        )
    return result


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: localhost only)."),
    port: int = typer.Option(8000, "--port"),
    brands: Path = typer.Option(
        Path("brand_assets"), "--brands", help="Folder holding the brand folders (briefs, competitor images, publish)."
    ),
    reviewers: list[str] = typer.Option(
        None, "--reviewer", help="A reviewer's name (repeat); or $ESTAMPILLE_REVIEWERS=a,b."
    ),
    proxy_header: str = typer.Option(
        None,
        "--proxy-header",
        help="Take the reviewer's name from this header (e.g. X-Forwarded-User), "
        "only on requests from a --trusted-proxy.",
    ),
    trusted_proxies: list[str] = typer.Option(
        None,
        "--trusted-proxy",
        help="Address or network of the reverse proxy (repeat): only "
        "its X-Forwarded-* and --proxy-header are believed. With "
        "$ESTAMPILLE_PROXY_SECRET set, the proxy must also send "
        "X-Estampille-Proxy-Secret with that value.",
    ),
    allowed_hosts: list[str] = typer.Option(
        None,
        "--allowed-host",
        help="A host name clients use to reach the server (repeat); loopback names are always allowed.",
    ),
) -> None:
    """Serve the review and audit pages. Reviewers sign in with their name and the team token
    ($ESTAMPILLE_REVIEW_TOKEN, 16 characters or more; one is made and printed here when it is
    unset), or a trusted reverse proxy names them (--proxy-header with --trusted-proxy)."""
    import secrets

    import uvicorn

    from .ledger.chain import safe_url
    from .provenance.identity import from_settings as signer_identity
    from .web.app import WebConfig, create_app, uvicorn_config
    from .web.security import NetworkPolicy, ReviewerPolicy, is_loopback

    settings = Settings.from_env()
    names = tuple(reviewers or settings.reviewers)
    token = settings.review_token.get_secret_value() if settings.review_token else None
    network = NetworkPolicy.parse(
        host,
        trusted_proxies or [],
        allowed_hosts or [],
        proxy_header,
        settings.proxy_secret.get_secret_value() if settings.proxy_secret else None,
    )
    if names and not token and not proxy_header:
        token = secrets.token_urlsafe(18)
        typer.echo(f"Team token for this session (set ESTAMPILLE_REVIEW_TOKEN to choose one): {token}")
    if not is_loopback(host):
        typer.echo(
            f"warning: serving on {host}: put an HTTPS reverse proxy in front of it (see the README's "
            "security section)",
            err=True,
        )
    config = WebConfig(
        settings=settings,
        identity=signer_identity(settings),
        policy=ReviewerPolicy(names, token, proxy_header),
        brands_dir=brands.absolute() if brands.is_dir() else None,
        bind_host=host,
        network=network,
    )
    typer.echo(
        f"Review pages on http://{'localhost' if is_loopback(host) else host}:{port}/ "
        f"(ledger {safe_url(settings.ledger_url)})"
    )
    uvicorn.Server(uvicorn_config(create_app(config), host, port)).run()


def _index_folder(index: Path | None, brand: Path | None) -> Path:
    """--index, or the brand's own index under the output folder, or $ESTAMPILLE_OUT/lookalike-index."""
    from .paths import brand_slug, lookalike_index_folder

    settings = Settings.from_env()
    if index:
        return index
    if brand:
        return lookalike_index_folder(settings.out, brand_slug(brand))
    return settings.out / "lookalike-index"


@lookalike_app.command("index")
def lookalike_index(
    paths: list[Path] = typer.Argument(None, help="Image files or folders (walked)."),
    competitor: str = typer.Option(None, "--competitor", help="Whose images these are."),
    captured: str = typer.Option(None, "--captured", help="When they were captured (e.g. 2026-11-20)."),
    rights: str = typer.Option(None, "--rights", help="A rights note (where from, what use)."),
    index: Path = typer.Option(None, "--index", help="Index folder."),
    brand: Path = typer.Option(None, "--brand", help="Use this brand's index (out/<brand>/lookalike-index)."),
    workers: int = typer.Option(None, "--workers", min=1, help="Processes (default: one per core)."),
    upgrade: bool = typer.Option(
        False,
        "--upgrade",
        help="Add the feature tier to shards indexed before it (reads their files again; hashes are kept), "
        "and file every shard's keypoints on the index's shared vocabulary (reads no file).",
    ),
) -> None:
    """Add images to a reference index: only new or changed files are hashed; bad files are skipped."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from .lookalike.ingest import ingest, refile
    from .lookalike.ingest import upgrade as add_feature_tier
    from .lookalike.store import ReferenceStore

    if upgrade:
        store = ReferenceStore(_index_folder(index, brand))
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
            disable=not sys.stderr.isatty(),
        ) as bar:
            task = bar.add_task("feature tier", total=None)
            done = add_feature_tier(store, workers, lambda d, t: bar.update(task, completed=d, total=t))
            bar.update(task, description="filing keypoints on the vocabulary", total=None)
            filed = refile(store)
        store.close()
        typer.echo(f"feature tier added for {done} images in {store.folder}")
        if filed:
            typer.echo(f"{filed} keypoints filed on the index's vocabulary")
        if not paths:
            return
    if not paths or not competitor:
        raise typer.BadParameter("give the images to add and --competitor (or only --upgrade)")
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise typer.BadParameter(f"not found: {', '.join(missing)}")
    store = ReferenceStore(_index_folder(index, brand))
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
        disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task("hashing", total=None)
        report = ingest(
            store,
            paths,
            competitor,
            captured=captured,
            rights=rights,
            workers=workers,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    total = store.count()
    outgrown = store.vocabulary_outgrown()
    store.close()
    for source, reason in report.skipped:
        typer.echo(f"skipped {source}: {reason}", err=True)
    if report.merge_error:
        typer.echo(report.merge_error, err=True)
    typer.echo(
        f"{competitor}: {report.added} added ({report.replaced} changed), {report.unchanged} unchanged, "
        f"{len(report.skipped)} skipped; {total} images in {store.folder}"
    )
    if outgrown:
        typer.echo(
            "the index has grown past the vocabulary its first large shard trained: searches slow down as it "
            "grows. `estampille lookalike index --upgrade` trains a larger one and files every shard on it "
            "(reads no image; about 18 min per 100,000 references on 2 cores).",
            err=True,
        )


@lookalike_app.command("check")
def lookalike_check(
    files: list[Path] = typer.Argument(..., help="Images to check (renders, drafts, downloads)."),
    as_json: bool = typer.Option(False, "--json", help="A JSON array: one object per file."),
    index: Path = typer.Option(None, "--index", help="Index folder."),
    brand: Path = typer.Option(None, "--brand", help="Use this brand's index."),
    rotations: bool = typer.Option(False, "--rotations", help="Also search quarter-turned copies."),
    dask: str = typer.Option(None, "--dask", help="Scan the shards on this Dask scheduler."),
) -> None:
    """Matches per file, verified on their pixels and graded: copy, derived part (both block), similar
    composition (information). Exit 0: nothing blocking, 1: at least one copy or derived part, 2: error."""
    import json

    from .lookalike import describe
    from .lookalike.describe import summary
    from .lookalike.engine import calibrated, find_lookalikes
    from .lookalike.feature_index import set_search_threads
    from .lookalike.store import ReferenceStore

    folder = _index_folder(index, brand)
    if not (folder / "catalog.sqlite").is_file():
        raise typer.BadParameter(f"no index at {folder}: build one with `estampille lookalike index`")
    set_search_threads(Settings.from_env().search_threads)
    store = ReferenceStore(folder)
    sources: list[Path | bytes] = list(files)
    try:
        if dask:
            from dask.distributed import Client

            from .lookalike.distributed import search_on_dask

            with Client(dask) as client:
                found, errors = find_lookalikes(
                    store,
                    sources,
                    rotations=rotations,
                    search=lambda queries: search_on_dask(client, folder, queries, rotations=rotations).hits,
                )
        else:
            found, errors = find_lookalikes(store, sources, rotations=rotations)
    finally:
        store.close()
    results: list[dict[str, Any]] = [
        {"file": str(f), "matches": [], "error": e} for f, e in zip(files, errors, strict=True)
    ]
    described: list[list[str]] = [[] for _ in files]  # each file's match lines for people
    limits = {k: v for k, v in calibrated().as_dict().items() if k != "window"}  # the rule: pHash and PDQ
    for match in found:
        described[match.source] += describe.lines(describe.as_record(match), limits)
        hit, reference, region = match.hit, match.reference, summary(match.hit.region)
        results[match.source]["matches"].append(
            {
                "competitor": reference["competitor"],
                "source": reference["source"],
                "distances": hit.distances,
                "verdict": "lookalike" if match.blocking else "similar",
                "grade": match.verification.grade,
                "blocking": match.blocking,
                "verification": match.verification.as_dict(),
                "captured": reference["captured"],
                "rights": reference["rights"],
                "tier": hit.tier,
                "reasons": list(hit.reasons),
                "region": region,
                "inliers": region["inliers"] if region else None,
            }
        )
    if as_json:
        typer.echo(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        for result, lines in zip(results, described, strict=True):
            blocking = any(m["blocking"] for m in result["matches"])
            status = (
                "error"
                if result["error"]
                else ("LOOKALIKE" if blocking else "clear (similar composition)" if result["matches"] else "clear")
            )
            typer.echo(f"{result['file']}: {status}" + (f" ({result['error']})" if result["error"] else ""))
            for line in lines:
                typer.echo(f"  {line}")
    if any(r["error"] for r in results):
        raise typer.Exit(ExitStatus.USAGE)
    if any(m["blocking"] for r in results for m in r["matches"]):
        raise typer.Exit(ExitStatus.ERROR)


@models_app.command("build-tiny")
def build_tiny(
    out: Path = typer.Option(None, "--out", help="Folder (default: $ESTAMPILLE_HOME/models/tiny-<family>)."),
    family: str = typer.Option("sd15", "--family", help="sd15, sdxl, sd3, flux or pixart."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if it exists."),
) -> None:
    """Build a tiny random-weight pipeline of a model family and save it with save_pretrained.

    Its folder loads like a real model: set render.model to the folder, or to builtin:tiny-<family>."""
    from .render.tiny import FAMILIES, build_tiny_model, tiny_folder_name, tiny_registry_id

    if family not in FAMILIES:
        raise ConfigError(f"--family {family!r} is not a family Estampille builds; choose one of {', '.join(FAMILIES)}")
    folder = out or Settings.from_env().models_dir / tiny_folder_name(family)
    build_tiny_model(folder, overwrite=force, family=family)
    typer.echo(
        f"Tiny {family} test model (random weights, test only): {folder}  "
        f"[render.model: {tiny_registry_id(family)} or {folder}]"
    )


@ledger_app.command("verify")
def ledger_verify(
    ledger: str = typer.Option(None, "--ledger", help="SQLAlchemy URL (default: the run's SQLite)."),
) -> None:
    """Recompute the hash chain; name the first row that does not fit."""
    ledger_db = _open_ledger(ledger)
    report = ledger_db.verify()
    if report.ok:
        typer.echo(f"ledger OK: {report.rows} rows, hash chain intact ({ledger_db.safe_url})")
        return
    typer.echo(f"ledger BROKEN at row {report.first_bad_seq}: {report.reason}", err=True)
    raise typer.Exit(ExitStatus.ERROR)


def _click_class(name: str) -> type[Exception]:
    """click's exception class `name` as the installed typer raises it: recent typer vendors click
    as `typer._click`, whose classes are not `click.*`; `typer.BadParameter` is one of them either way."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


# Every error click reports about the command line (unknown command or option, bad or missing value).
_USAGE_ERRORS = (_click_class("ClickException"),)


def _show_usage_error(exc) -> None:
    """The usage line of the command that was typed, then the problem: no traceback."""
    ctx = getattr(exc, "ctx", None)
    if exc.__class__.__name__ == "NoArgsIsHelpError":  # a group typed alone: its help is the message
        typer.echo(exc.format_message(), err=True)
        return
    if ctx is not None:
        typer.echo(ctx.get_usage(), err=True)
        typer.echo(f"Try '{ctx.command_path} --help' for help.", err=True)
    typer.echo(f"error: {exc.format_message()}", err=True)


@app.command()
def init(
    folder: Path = typer.Argument(..., help="The new brand folder (created; an existing brand is never overwritten)."),
    name: str = typer.Option(None, "--name", help="The brand's name (default: the folder's)."),
    languages: list[str] = typer.Option(None, "--language", help="ISO code, repeat or comma-separate: fr,en."),
    platforms: list[str] = typer.Option(
        None, "--platform", help="instagram, facebook, linkedin, x, tiktok; repeat or comma-separate."
    ),
    timezone: str = typer.Option(None, "--timezone", help="IANA time zone (default Europe/Paris)."),
    licence_policy: str = typer.Option(None, "--licence-policy", help="commercial or non-commercial."),
    website: str = typer.Option(None, "--website", help="https://… (rights statements point there)."),
    ask: bool = typer.Option(
        None, "--ask/--no-ask", help="Ask what the options leave out (default: when run on a terminal)."
    ),
) -> None:
    """Write a new brand folder: a commented brand.yaml, a calendar template (calendar.csv) and the
    competitor folder. The result passes validation and runs with `estampille run` as it is."""
    from .init import BrandAnswers, split_list, write_brand

    ask = sys.stdin.isatty() if ask is None else ask

    def answer(given, question: str, default: str) -> str:
        return given or (typer.prompt(question, default=default) if ask else default)

    answers = BrandAnswers(
        name=answer(name, "Brand name", folder.absolute().name.replace("-", " ").replace("_", " ").title()),
        languages=split_list(languages) or split_list([answer(None, "Languages (ISO codes, e.g. fr,en)", "en")]),
        platforms=split_list(platforms)
        or split_list([answer(None, "Platforms (instagram, facebook, linkedin, x, tiktok)", "instagram")]),
        timezone=answer(timezone, "Time zone", "Europe/Paris"),
        licence_policy=answer(licence_policy, "Licence policy (commercial or non-commercial)", "commercial"),
        website=website
        or (typer.prompt("Website (optional)", default="", show_default=False) or None if ask else None),
    )
    bundle = write_brand(folder, answers)
    for path in ("brand.yaml", "calendar.csv", "competitors/"):
        typer.echo(f"wrote {folder / path}")
    typer.echo(
        f"{bundle.brand.name}: {', '.join(bundle.brand.languages)} on {', '.join(bundle.brand.platforms)}, "
        f"{bundle.brand.timezone}, {bundle.brand.licence_policy}; "
        f"{len(bundle.calendar.recurring)} weekly posts in calendar.csv"
    )
    typer.echo(
        f"Next: edit the voice in {folder / 'brand.yaml'}, plan in {folder / 'calendar.csv'} "
        f"(`estampille calendar check {folder / 'calendar.csv'}`), then `estampille run --brand {folder}`"
    )


@calendar_app.command("check")
def calendar_check(
    file: Path = typer.Argument(..., help="calendar.yaml, .csv or .xlsx (Sheets, Excel, Notion, Airtable exports)."),
    brand: Path = typer.Option(None, "--brand", help="Brand folder (default: the file's folder)."),
    week: str = typer.Option(None, "--week", help="ISO week (default: this week, brand clock)."),
) -> None:
    """Read a calendar file as the batch will and print the week's posts; a bad cell names its row
    and column. Writes nothing."""
    from .calendar_check import week_plan

    for line in week_plan(file, brand, week):
        typer.echo(line)


def main(argv: list[str] | None = None) -> int:
    """Entry point: one place maps errors to exit statuses."""
    try:
        result = app(args=argv, prog_name="estampille", standalone_mode=False)
    except EstampilleError as exc:
        if state["debug"]:
            raise
        typer.echo(f"error: {exc}", err=True)
        return int(exc.exit_status)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort as exc:
        typer.echo(f"error: {exc or 'aborted'}", err=True)
        return int(ExitStatus.USAGE)
    except _USAGE_ERRORS as exc:
        _show_usage_error(exc)
        return int(ExitStatus.USAGE)
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno == 28:
            typer.echo(
                f"error: disk full while writing ({exc.filename}): free space and rerun; finished work is kept",
                err=True,
            )
            return int(ExitStatus.ERROR)
        raise
    return int(result) if isinstance(result, int) else int(ExitStatus.OK)


if __name__ == "__main__":
    sys.exit(main())
