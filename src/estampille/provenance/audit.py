"""Audit any file as a provenance inspector would: what its Content Credentials say (every
manifest, signer, actions, ingredients), what its XMP says, which ledger record it belongs to
(by content hash, by our C2PA manifest or XMP document id when it was changed, by perceptual hash
when a platform stripped and re-encoded it), whether the layers agree, and, for our own files,
the model and its licence, the picture it started from with its lookalike verdict, the review,
the exports and retouches.

Read-only: it never creates keys, folders or ledgers; without a ledger it reports what the file
says and that nothing was traced.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .. import records
from ..images import MAX_PIXELS, UnreadableImage, open_image
from ..ledger import Event, Ledger
from ..lookalike.fingerprint import HASH_KINDS, fingerprints, hex_to_int
from ..paths import OutsideFolder, inside, run_folder
from ..records import IMAGE_RECORDS, Export, Kind, LookalikeCheck, Provenance, Render, Retouch
from . import watermark as marks
from .audit_findings import (
    RECORD_FIELDS,
    Candidate,
    Conflict,
    ExportFinding,
    Ingredient,
    IngredientMatch,
    LookalikeFinding,
    OurImage,
    RetouchFinding,
    ReviewFinding,
    Trace,
    WatermarkFound,
)
from .credentials import Credentials, read_credentials, short_source_type
from .sign import document_id
from .trust import TrustConfig
from .xmp import DMI, read_xmp

# The records whose files an audit traces by their exact bytes (each has a sha256).
TRACE_BY_CONTENT: dict[str, type[Render | Provenance | Export | Retouch]] = {
    Kind.PROVENANCE_SIGNED: Provenance,
    Kind.EXPORT_CREATED: Export,
    Kind.EDIT_IMPORTED: Retouch,
    Kind.RENDER_CREATED: Render,
}
# A stripped copy is traced to the closest render when both hashes stay this close (bits of 64).
MAX_DISTANCE = {"phash": 12, "dhash": 16}
DMI_PROHIBITED = DMI["prohibited"].rsplit("/", 1)[-1]
DMI_ALLOWED = DMI["allowed"].rsplit("/", 1)[-1]


def mime_of(image_format: str | None) -> str:
    """Pillow's MIME type for a format it decoded; a camera's MPO (a JPEG holding a second
    picture, as phones write) is read as the JPEG it is."""
    if image_format == "MPO":
        return "image/jpeg"
    return Image.MIME.get(image_format or "", "application/octet-stream")


@dataclass
class AuditReport:
    file: str
    error: str | None = None
    verdict: str = ""
    c2pa_state: str = "absent"
    c2pa_failures: list[str] = field(default_factory=list)
    credentials: dict | None = None  # the whole manifest store, readable (credentials.Credentials)
    xmp: dict[str, str] = field(default_factory=dict)
    record: Trace | None = None  # how it was found, and the ledger record
    candidates: list[Candidate] = field(default_factory=list)  # nothing traced: the nearest renders
    ours: OurImage | None = None  # for our files: model, licence, ingredients, review, exports
    conflicts: list[Conflict] = field(default_factory=list)  # layers that disagree, field by field
    metadata_gone: bool = False  # one of ours whose C2PA and XMP are both gone
    watermark: WatermarkFound | None = None  # the invisible mark read from the pixels
    foreign_watermark: str | None = None  # another tool's known mark, named (diffusers' SDXL default)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """The JSON document of `--json` and `--report x.json`: every finding, without the ledger
        records kept for the templates."""
        return asdict(self, dict_factory=lambda items: {k: v for k, v in items if k not in RECORD_FIELDS})


class LedgerIndex:
    """Everything an audit looks up, from one read of the ledger."""

    def __init__(self, ledger: Ledger | None, out_dir: Path | None = None):
        self.available = ledger is not None
        self.out_dir = out_dir
        self._features: Any = None
        self.by_sha: dict[str, tuple[Event, Render | Provenance | Export | Retouch]] = {}
        self.renders: dict[str, Event] = {}
        self.render_records: dict[str, Render] = {}
        self.decisions: dict[str, records.ReviewDecision] = {}  # item id -> its latest decision
        self.signed: dict[str, list[Provenance]] = {}  # image id -> its signatures, oldest first
        self.checks: dict[str, LookalikeCheck] = {}  # image id -> its latest lookalike check
        self.exports: dict[str, list[tuple[int, Export]]] = {}  # image id -> (ledger row, export)
        self.edits: dict[str, list[tuple[int, Retouch]]] = {}  # image id -> (ledger row, retouch)
        self.image_records: dict[str, dict[str, records.ImageRecord]] = {}  # image id -> kind -> latest (IMAGE_RECORDS)
        for event in ledger.events() if ledger else []:
            model = TRACE_BY_CONTENT.get(event.kind) or IMAGE_RECORDS.get(event.kind)
            record = model.of(event) if model else None
            if isinstance(record, Render | Provenance | Export | Retouch):
                self.by_sha.setdefault(record.sha256, (event, record))
            if record is not None and event.kind in IMAGE_RECORDS and not isinstance(record, Export):
                self.image_records.setdefault(record.image_id, {})[event.kind] = record
            if isinstance(record, Render):
                self.renders[record.image_id] = event
                self.render_records[record.image_id] = record
            elif isinstance(record, Provenance):
                self.signed.setdefault(record.image_id, []).append(record)
            elif isinstance(record, Export):
                self.exports.setdefault(record.image_id, []).append((event.seq, record))
            elif isinstance(record, Retouch):
                self.edits.setdefault(record.image_id, []).append((event.seq, record))
            elif isinstance(record, LookalikeCheck):
                self.checks[record.image_id] = record
            elif event.kind in (Kind.REVIEW_APPROVED, Kind.REVIEW_REJECTED):
                decision = records.ReviewDecision.of(event)
                self.decisions[decision.item_id] = decision  # the latest wins
        self.by_document = {document_id(image_id): image_id for image_id in self.renders}
        self.by_mark: dict[str, Event] = {}  # the watermark's short id -> render
        for image_id, event in self.renders.items():
            try:
                self.by_mark.setdefault(marks.short_id(image_id), event)
            except marks.WatermarkError:
                pass
        # every render, in ledger order: the rows of the hash arrays and of the feature shard
        self.fingerprinted = [(event, self.render_records[image_id]) for image_id, event in self.renders.items()]
        self.arrays = {
            kind: np.array([hex_to_int(r.fingerprints[kind]) for _, r in self.fingerprinted], dtype=np.uint64)
            for kind in HASH_KINDS
        }

    def render_file(self, event: Event, render: Render) -> Path | None:
        if self.out_dir is None or not render.file or not event.brand or not event.week:
            return None
        try:
            path = inside(run_folder(self.out_dir, event.brand, event.week), render.file)
        except OutsideFolder:  # a forged row: nothing of ours to compare with
            return None
        return path if path.is_file() else None

    def features(self):
        """The renders' keypoints, built once from their files in memory (audit writes nothing)."""
        if self._features is None:
            from ..lookalike.feature_index import FeatureShard
            from ..lookalike.features import extract, reference_features

            found = []
            for event, render in self.fingerprinted:
                path = self.render_file(event, render)
                try:
                    found.append(reference_features(path.read_bytes()) if path else extract(Image.new("L", (1, 1)), 0))
                except (OSError, UnreadableImage):
                    found.append(extract(Image.new("L", (1, 1)), 0))
            self._features = FeatureShard.in_memory(found)
        return self._features

    def by_features(self, image: Image.Image) -> tuple[Event, dict] | None:
        """The render a crop, mirror, reframe or screenshot of it was made from, by local features."""
        from ..lookalike.describe import summary
        from ..lookalike.engine import feature_thresholds, region_of
        from ..lookalike.features import query_features

        if not self.fingerprinted:
            return None
        hits = self.features().search([query_features(image)], feature_thresholds())
        if not hits:
            return None
        _, row, match = max(hits, key=lambda h: h[2].inliers)
        region = summary(region_of(match))
        return (self.fingerprinted[row][0], region) if region else None

    def candidates(self, distances: dict[str, np.ndarray], count: int = 3) -> list[Candidate]:
        """The renders nearest by perceptual hash (`distances`), for a report where nothing passed."""
        total = sum(distances.values())
        found = []
        for i in np.argsort(total)[:count]:
            event, render = self.fingerprinted[i]
            phash, dhash = int(distances["phash"][i]), int(distances["dhash"][i])
            found.append(Candidate(render.image_id, event.brand, event.week, phash, dhash, dict(MAX_DISTANCE)))
        return found

    def distances(self, image: Image.Image) -> dict[str, np.ndarray]:
        """pHash and dHash distances from `image` to every render."""
        query = fingerprints(image)
        return {k: np.bitwise_count(self.arrays[k] ^ np.uint64(hex_to_int(query[k]))).astype(int) for k in HASH_KINDS}

    def nearest(self, distances: dict[str, np.ndarray]) -> tuple[Event, dict[str, int]] | None:
        best = int(np.argmin(sum(distances.values())))
        found = {k: int(distances[k][best]) for k in HASH_KINDS}
        if any(found[k] > MAX_DISTANCE[k] for k in HASH_KINDS):
            return None
        return self.fingerprinted[best][0], found


class Auditor:
    """Reads the ledger once, then audits files against it and against the trust you chose."""

    def __init__(
        self, ledger: Ledger | None, trust: TrustConfig, fetch_remote: bool = False, out_dir: Path | None = None
    ):
        """`out_dir` is where the renders are (ESTAMPILLE_OUT): it lets a crop or a screenshot of
        one be traced by local features."""
        self.index = LedgerIndex(ledger, out_dir)
        self.trust, self.fetch_remote = trust, fetch_remote

    def audit(self, path: Path) -> AuditReport:
        report = AuditReport(str(path))
        try:
            data = path.read_bytes()
            if not data:
                raise UnreadableImage("empty file")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as probe:
                    image_format, pixels = probe.format, probe.width * probe.height
            if pixels > MAX_PIXELS:
                raise UnreadableImage(f"declared size of {pixels:,} pixels is too large (decompression bomb)")
        except UnreadableImage as exc:
            report.error = str(exc)
            return report
        except UnidentifiedImageError:
            report.error = "not a readable image (unknown format)"
            return report
        except OSError as exc:
            report.error = str(exc) if not isinstance(exc, FileNotFoundError) else f"{path}: no such file"
            return report
        except Exception:
            report.error = "not a readable image (unknown format)"
            return report
        credentials = read_credentials(data, mime_of(image_format), self.trust, self.fetch_remote)
        report.credentials = credentials.as_dict()
        report.c2pa_state, report.c2pa_failures = credentials.state, credentials.failures
        report.xmp = {k: v for k, v in read_xmp(data).items() if not k.startswith("_")}
        digest = hashlib.sha256(data).hexdigest()
        event, found_by, distances = self._trace(data, digest, credentials, report)
        if report.error:
            return report
        if event is not None:
            region = distances if distances and "inliers" in distances else None
            report.record = self._describe(event, found_by, None if region else distances, region)
            report.ours = self._ours(report.record.image_id, digest)
            report.metadata_gone = credentials.state == "absent" and not report.xmp
            report.conflicts = cross_check(report.xmp, credentials, report.ours, _sidecar_xmp(path, report.ours))
        elif not self.index.available:
            report.notes.append("no ledger here: nothing was traced (audited what the file says)")
        if credentials.state == "absent" and not report.xmp and event is None:
            report.notes.append("no provenance metadata: none was written, or it was stripped")
        if report.xmp and not report.xmp.get("Iptc4xmpExt:DigitalSourceType"):
            report.notes.append("XMP present but it declares no digital source type")
        report.verdict = _verdict(credentials, report)
        return report

    def _read_marks(self, image: Image.Image, report: AuditReport) -> None:
        """The invisible watermark, read from the pixels of any file; else a known foreign mark."""
        found = marks.detect(image)
        if found.image_id is not None:
            report.watermark = WatermarkFound(
                found.image_id, found.method, found.version, found.scale, found.rotation, found.mirrored
            )
        elif marks.sdxl_default_mark(image):
            report.foreign_watermark = (
                "diffusers' SDXL default watermark (invisible-watermark dwtDct, one fixed "
                "48-bit message for every image): made with an SDXL-family pipeline; it "
                "names no image"
            )

    def _trace(
        self, data: bytes, digest: str, credentials: Credentials, report: AuditReport
    ) -> tuple[Event | None, str, dict | None]:
        """The ledger row the file comes from, how it was found, and the hash distances or the
        matched region when it was found by its pixels."""
        exact = self.index.by_sha.get(digest)
        if exact is not None:
            return exact[0], "content hash", None
        try:
            image = open_image(data)
        except UnreadableImage as exc:
            report.error = str(exc)
            return None, "", None
        self._read_marks(image, report)
        image_id = _generation_image_id(credentials) or self.index.by_document.get(
            report.xmp.get("xmpMM:DocumentID", "")
        )
        if image_id in self.index.renders:
            how = "our C2PA manifest" if _generation_image_id(credentials) else "XMP DocumentID"
            return self.index.renders[image_id], f"{how} (file changed since)", None
        if report.watermark and report.watermark.image_id in self.index.by_mark:
            return self.index.by_mark[report.watermark.image_id], "invisible watermark", None
        if not self.index.fingerprinted:
            return None, "", None
        distances = self.index.distances(image)
        nearest = self.index.nearest(distances)
        if nearest:
            return nearest[0], "perceptual hash", nearest[1]
        found = self.index.by_features(image)
        if found:
            return found[0], "local features (a crop, mirror, reframe or screenshot)", found[1]
        report.candidates = self.index.candidates(distances)
        return None, "", None

    def _describe(self, event: Event, found_by: str, distances: dict | None, region: dict | None) -> Trace:
        model = TRACE_BY_CONTENT.get(event.kind, Render)
        record = model.of(event)
        render = self.index.render_records.get(record.image_id)
        return Trace(
            found_by,
            event.kind,
            event.seq,
            event.brand,
            event.week,
            event.subject,
            record.image_id,
            render.model.get("id") if render else None,
            reviewer=record.reviewer if isinstance(record, Export) else None,
            editor=record.editor if isinstance(record, Retouch) else None,
            distances=distances,
            region=region,
        )

    def _ours(self, image_id: str, digest: str) -> OurImage:
        """What the ledger knows of one of our images, whichever file of it was audited."""
        index = self.index
        event, render = index.renders[image_id], index.render_records[image_id]
        model = render.model
        signed = index.signed.get(image_id, [])
        check = index.checks.get(image_id)
        decision = index.decisions.get(image_id)
        exports, edits = index.exports.get(image_id, []), index.edits.get(image_id, [])
        known = {s.sha256 for s in signed} | {e.sha256 for _, e in exports} | {r.sha256 for _, r in edits}
        return OurImage(
            image_id=image_id,
            brand=event.brand,
            week=event.week,
            model=model.get("id"),
            model_name=model.get("name") or model.get("id"),
            revision=model.get("revision"),
            weights_sha256=model.get("weights_sha256"),
            pipeline=model.get("pipeline_class"),
            licence=model.get("licence"),
            commercial_use=model.get("commercial_use"),
            test_model=model.get("test_model"),
            mode=render.mode,
            seed=render.seed,
            signer=signed[-1].signer if signed else None,
            digital_source_type=signed[-1].digital_source_type if signed else None,
            expected_xmp=signed[-1].xmp if signed else None,
            lookalike=LookalikeFinding(check.verdict, len(check.matches)) if check else None,
            ingredients=_ingredients(render, check),
            review=(
                ReviewFinding(decision.decision, decision.reviewer, decision.decided_at, decision.lookalike_override)
                if decision
                else ReviewFinding()
            ),
            exports=[ExportFinding(e.file, e.reviewer, row) for row, e in exports],
            edits=[RetouchFinding(r.editor, r.source_name, row) for row, r in edits],
            changed_since_signing=digest not in known and digest != render.sha256,
            render_record=render,
            signed_record=signed[-1] if signed else None,
            records=index.image_records.get(image_id, {}),
        )


def _ingredients(render: Render, check: LookalikeCheck | None) -> list[Ingredient]:
    """The picture an image-to-image render started from, with the lookalike matches found through it."""
    if not render.reference:
        return []
    reference = render.reference
    via_reference = [m for m in check.matches if m.via == "image-to-image reference"] if check else []
    return [
        Ingredient(
            title=Path(reference.get("path", "")).name,
            relationship="inputTo",
            sha256=reference.get("sha256"),
            strength=reference.get("strength"),
            lookalike="lookalike" if via_reference else "clear" if check else "not checked",
            matches=[IngredientMatch(m.source, Path(m.reference).name, m.distances) for m in via_reference],
        )
    ]


def _lineage(credentials: Credentials):
    """The active manifest, then its parent's, and so on down the first ingredient."""
    node = credentials.active
    while node is not None:
        yield node
        node = node.children[0] if node.children else None


def _generation(credentials: Credentials, key: str) -> str | None:
    """A field of our generation assertion (org.estampille.generation), from the newest manifest having it."""
    for node in _lineage(credentials):
        generation = node.assertions.get("org.estampille.generation")
        if isinstance(generation, dict) and generation.get(key):
            return generation[key]
    return None


def _generation_image_id(credentials: Credentials) -> str | None:
    return _generation(credentials, "image_id")


def _sidecar_xmp(path: Path, ours: OurImage | None) -> dict | None:
    """The JSON sidecar beside a signed file (images/<id>.json), when it is there."""
    import json

    if not ours:
        return None
    sidecar = path.with_name(f"{ours.image_id}.json")
    try:
        return json.loads(sidecar.read_text())["xmp"] if sidecar.is_file() else None
    except (OSError, ValueError, KeyError):
        return None


def _dmi_of_c2pa(credentials: Credentials) -> str | None:
    """The PLUS data-mining value the manifest's training-and-mining assertion amounts to."""
    for node in _lineage(credentials):
        for label, entries in node.assertions.items():
            if label.endswith("training-mining") and isinstance(entries, dict) and entries:
                uses = set(entries.values())
                return DMI_PROHIBITED if uses == {"notAllowed"} else DMI_ALLOWED if uses == {"allowed"} else "mixed"
    return None


def cross_check(
    xmp: dict[str, str], credentials: Credentials, ours: OurImage | None, sidecar: dict | None
) -> list[Conflict]:
    """Each field on which the file's XMP, its C2PA manifest, the ledger and the sidecar disagree."""
    expected = (ours.expected_xmp if ours else None) or {}
    layers: dict[str, dict[str, str | None]] = {
        "source type": {
            "XMP": short_source_type(xmp.get("Iptc4xmpExt:DigitalSourceType")),
            "C2PA": short_source_type(credentials.source_type),
            "ledger": short_source_type(ours.digital_source_type if ours else None),
            "sidecar": short_source_type((sidecar or {}).get("digital_source_type")),
        },
        "creator": {
            "XMP": xmp.get("dc:creator"),
            "ledger": expected.get("creator"),
            "sidecar": (sidecar or {}).get("creator"),
        },
        "rights": {
            "XMP": xmp.get("dc:rights"),
            "ledger": expected.get("copyright_notice"),
            "sidecar": (sidecar or {}).get("copyright_notice"),
        },
        "training and mining": {
            "XMP": (xmp.get("plus:DataMining") or "").rsplit("/", 1)[-1] or None,
            "C2PA": _dmi_of_c2pa(credentials),
            "ledger": DMI[expected["data_mining"]].rsplit("/", 1)[-1] if expected.get("data_mining") in DMI else None,
        },
        "model": {
            "XMP": xmp.get("Iptc4xmpExt:AISystemUsed"),
            "C2PA": _generation(credentials, "model"),
            "ledger": ours.model_name if ours else None,
        },
    }
    if layers["model"]["C2PA"] and ours and layers["model"]["C2PA"] == ours.model:
        layers["model"]["C2PA"] = ours.model_name  # the same model, by id
    conflicts = []
    for name, values in layers.items():
        present = {layer: value for layer, value in values.items() if value}
        if len(set(present.values())) > 1:
            conflicts.append(Conflict(name, present))
    # A file whose metadata is gone has nothing to disagree with; a half-stripped one does.
    return conflicts if xmp or credentials.state != "absent" else []


def _verdict(credentials: Credentials, report: AuditReport) -> str:
    line = credentials.verdict()
    ours, record = report.ours, report.record
    if ours and record:
        where = f"Estampille image {ours.image_id} ({ours.brand} {ours.week})"
        if ours.changed_since_signing and record.found_by not in ("perceptual hash", "invisible watermark"):
            line = f"Signed by {where}, CHANGED since signing. " + line
        elif report.metadata_gone:
            line = (
                f"{where}, found by {record.found_by}: its Content Credentials and XMP are gone "
                "(stripped or re-encoded). " + line
            )
        else:
            line = f"{where}. " + line
    elif report.watermark:
        line = (
            f"AI-generated by Estampille (invisible watermark), image ID {report.watermark.image_id}: the "
            "brand that published it can resolve its Content Credentials. " + line
        )
    if report.foreign_watermark:
        line += f" Carries {report.foreign_watermark}."
    if report.conflicts:
        line += " Layers disagree on: " + ", ".join(c.field for c in report.conflicts) + "."
    return line
