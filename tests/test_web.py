"""The review web page: its security rules through HTTP (Starlette's test client, no mocks
of our code), and a designer's session in a real browser (Playwright + Debian's Chromium)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image
from starlette.testclient import TestClient

from estampille.ledger import Ledger
from estampille.provenance.audit import Auditor
from estampille.provenance.trust import audit_trust
from estampille.settings import Settings
from estampille.stages import run_batch
from estampille.web.security import NetworkPolicy

from .conftest import DEMO_WEEK, renders_of
from .web_harness import LOCAL, SLOT, TOKEN, LiveServer, make_app, run_url, signed_in


def test_captions_briefs_and_prompts_are_escaped(served_run):
    client = TestClient(served_run["app"], base_url="http://127.0.0.1", client=LOCAL)
    page = client.get(run_url())
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "<img src=x" not in page.text and "<b onmouseover" not in page.text
    assert "&lt;script&gt;alert(&#34;caption&#34;)&lt;/script&gt;" in page.text
    assert "&lt;b onmouseover=alert(2)&gt;" in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none': no script runs
    image = client.get(run_url(f"/images/{served_run['images'][0]}"))
    assert image.status_code == 200 and "<script>alert" not in image.text


@pytest.mark.parametrize(
    "path",
    [
        "/files/../../ledger.sqlite",
        "/files/..%2F..%2Fledger.sqlite",
        "/files/%2e%2e/%2e%2e/ledger.sqlite",
        "/files/renders/../../../../etc/passwd",
        "/files//etc/passwd",
        "/files/renders/..%5c..%5cledger.sqlite",
        "/thumbs/..%2F..%2Fledger.webp",
        "/images/img-..%2F..%2Fx",
    ],
)
def test_file_routes_refuse_path_traversal(served_run, path):
    client = TestClient(served_run["app"], base_url="http://127.0.0.1", client=LOCAL)
    response = client.get(run_url(path))
    assert response.status_code == 404
    assert b"SQLite format" not in response.content and b"root:" not in response.content


def test_traversal_in_brand_or_week_and_in_a_forged_match(served_run):
    client = TestClient(served_run["app"], base_url="http://127.0.0.1", client=LOCAL)
    assert client.get("/runs/..%2F..%2Fetc/2026-W48/files/passwd").status_code == 404
    assert client.get("/runs/brand/..%2F..%2F/files/ledger.sqlite").status_code == 404
    # A ledger row whose match points outside the brands folder is never served.
    ledger = Ledger(served_run["settings"].ledger_url)
    image_id = served_run["images"][0]
    ledger.append(
        "lookalike.checked",
        "forged-check",
        {
            "image_id": image_id,
            "verdict": "lookalike",
            "thresholds": {"phash": 10},
            "index_size": 1,
            "matches": [
                {
                    "source": "x",
                    "reference": str(served_run["settings"].out / "ledger.sqlite"),
                    "distances": {"phash": 0},
                    "verdict": "lookalike",
                }
            ],
        },
        brand="brand",
        week=DEMO_WEEK,
    )
    ledger.close()
    assert client.get(run_url(f"/images/{image_id}/matches/0")).status_code == 404
    assert client.get(run_url(f"/images/{image_id}/matches/7")).status_code == 404


def test_state_changes_need_post_a_csrf_token_and_a_reviewer(served_run):
    app, item = served_run["app"], served_run["images"][0]
    ledger = Ledger(served_run["settings"].ledger_url)
    rows = ledger.count()
    anonymous = TestClient(app, base_url="http://127.0.0.1", client=LOCAL)
    csrf = re.search(r'name="csrf" value="([^"]+)"', anonymous.get("/").text).group(1)
    assert (
        anonymous.post(run_url(f"/items/{item}/decision"), data={"decision": "approved", "csrf": csrf}).status_code
        == 403
    )
    assert anonymous.post("/login", data={"name": "Camille", "token": "wrong", "csrf": csrf}).status_code == 403
    assert anonymous.post("/login", data={"name": "Mallory", "token": TOKEN, "csrf": csrf}).status_code == 403
    client, csrf = signed_in(app)
    assert client.post(run_url(f"/items/{item}/decision"), data={"decision": "approved"}).status_code == 403
    assert (
        client.post(run_url(f"/items/{item}/decision"), data={"decision": "approved", "csrf": "forged"}).status_code
        == 403
    )
    assert client.get(run_url(f"/items/{item}/decision")).status_code == 405
    other, _ = signed_in(app, "Léa")  # another session's token is not this session's
    assert (
        other.post(run_url(f"/items/{item}/decision"), data={"decision": "approved", "csrf": csrf}).status_code == 403
    )
    assert client.post(run_url("/publish")).status_code == 403
    assert ledger.count() == rows  # nothing was recorded
    done = client.post(
        run_url(f"/items/{item}/decision"),
        data={"decision": "rejected", "comment": "flou", "csrf": csrf, "version": "0"},
    )
    assert done.status_code == 200 and ledger.count() == rows + 1
    event = ledger.events(kind="review.rejected")[-1]
    assert (event.payload["reviewer"], event.payload["comment"], event.payload["item_id"]) == ("Camille", "flou", item)
    ledger.close()


def test_a_login_never_redirects_off_site(served_run):
    client = TestClient(served_run["app"], base_url="http://127.0.0.1", client=LOCAL, follow_redirects=False)
    csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/").text).group(1)
    response = client.post("/login", data={"name": "Camille", "token": TOKEN, "csrf": csrf, "back": "//evil.example/"})
    assert response.status_code == 303 and response.headers["location"] == "/"


def test_bound_to_localhost_it_answers_only_local_requests(served_run):
    app = served_run["app"]
    assert TestClient(app, base_url="http://127.0.0.1", client=("203.0.113.7", 4000)).get("/").status_code == 403
    assert TestClient(app, base_url="http://127.0.0.1", client=("10.0.0.8", 4000)).get(run_url()).status_code == 403
    # DNS rebinding: a local client, but a page on another site named the host.
    assert TestClient(app, base_url="http://evil.example", client=LOCAL).get("/").status_code == 400
    assert TestClient(app, base_url="http://localhost:8000", client=("::1", 4000)).get("/").status_code == 200
    # Bound to another address on purpose (behind a proxy), the proxy's header counts from the proxy only.
    network = NetworkPolicy.parse("0.0.0.0", ["10.0.0.2"], ["review.example"], "X-Forwarded-User", None)
    exposed = make_app(
        served_run["settings"],
        served_run["brand"].parent,
        bind_host="0.0.0.0",
        network=network,
        proxy_header="X-Forwarded-User",
        reviewers=("Camille",),
    )
    proxy = TestClient(exposed, base_url="http://review.example", client=("10.0.0.2", 4000))
    page = proxy.get("/", headers={"X-Forwarded-User": "Camille"})
    assert page.status_code == 200 and 'id="reviewer">Camille<' in page.text
    assert 'id="reviewer"' not in proxy.get("/", headers={"X-Forwarded-User": "Mallory"}).text
    direct = TestClient(exposed, base_url="http://review.example", client=("203.0.113.7", 4000))
    assert 'id="reviewer"' not in direct.get("/", headers={"X-Forwarded-User": "Camille"}).text


def test_run_page_lists_runs_and_counts(served_run):
    client, csrf = signed_in(served_run["app"])
    runs = client.get("/")
    assert "Maison Levain" in runs.text and DEMO_WEEK in runs.text
    client.post(
        run_url(f"/items/{served_run['images'][0]}/decision"),
        data={"decision": "approved", "csrf": csrf, "version": "0"},
    )
    counts = re.sub(r"\s+", " ", re.search(r'<p id="counts">(.*?)</p>', client.get(run_url()).text, re.S).group(1))
    assert "1 approved" in counts and "0 rejected" in counts


# ---------------------------------------------------------------------------- browser

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(os.environ["ESTAMPILLE_SCREENSHOTS"]) if os.environ.get("ESTAMPILLE_SCREENSHOTS") else None


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("ESTAMPILLE_REQUIRE_BROWSER"):
            pytest.fail("Debian's chromium is not installed (apt-get install chromium)")
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    return path


def shoot(page, name: str, tmp_path: Path) -> None:
    page.screenshot(path=str(tmp_path / name), full_page=name != "run-page.png")
    if SCREENSHOTS:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, SCREENSHOTS / name)


@pytest.mark.browser
def test_a_designer_reviews_publishes_and_audits_in_a_real_browser(fake_llm, settings, brand_copy, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    executable = chromium_path()
    # A render copied into a competitor's folder: the next check flags that render with evidence.
    run_batch(brand_copy, DEMO_WEEK, settings)
    ledger = Ledger(settings.ledger_url)
    events = ledger.events()
    ledger.close()
    slot = f"{DEMO_WEEK}/{SLOT}"
    drafts = [e.key for e in events if e.kind == "draft.created" and e.subject == slot]
    approved, rejected = renders_of(events, slot)[:2]
    flagged = next(e.key for e in events if e.kind == "render.created" and e.subject != slot)
    run_dir = settings.out / "brand" / DEMO_WEEK
    shutil.copy(run_dir / "renders" / f"{flagged}.png", brand_copy / "competitors" / "boulangerie-doree" / "copied.png")
    run_batch(brand_copy, DEMO_WEEK, Settings.from_env())

    app = make_app(settings, brand_copy.parent)
    with LiveServer(app) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(base + "/")
        page.select_option("select[name=name]", "Camille")
        page.fill("input[name=token]", TOKEN)
        page.click("text=Sign in")
        expect(page.locator("#reviewer")).to_have_text("Camille")
        shoot(page, "runs-page.png", tmp_path)
        page.click("text=Maison Levain")
        expect(page.locator("h1")).to_contain_text(DEMO_WEEK)
        assert page.locator(".image img").count() == len([e for e in events if e.kind == "render.created"])

        # Edit a caption, then approve it; approve one image and reject another.
        edited = "Notre croissant, 27 couches de beurre AOP.\n\nVisuel créé avec l'aide de l'IA."
        draft = page.locator(f"#{drafts[0]} .draft-text")
        draft.locator("textarea").fill(edited)
        draft.locator("button.approve").click()
        expect(page.locator(f"#{drafts[0]} .draft-text .state")).to_have_text("approved")
        page.locator(f"#{approved} button.approve").click()
        page.locator(f"#{rejected} input[name=comment]").fill("trop sombre")
        page.locator(f"#{rejected} button.reject").click()
        expect(page.locator(f"#{approved} .state")).to_have_text("approved")
        expect(page.locator(f"#{rejected} .state")).to_have_text("rejected")
        # The flagged image cannot be approved without an override reason.
        page.locator(f"#{flagged} button.approve").click()
        expect(page.locator("#error")).to_contain_text("needs --override-lookalike")
        page.goto(f"{base}{run_url()}")
        page.wait_for_load_state("networkidle")  # the lazy thumbnails in view
        shoot(page, "run-page.png", tmp_path)

        page.click("#publish")
        expect(page.locator("#exported")).to_contain_text(approved)
        expect(page.locator("#refused")).to_contain_text("rejected by Camille: trop sombre")

        # The image page shows the lookalike pair side by side, with distances and verdict.
        page.goto(f"{base}{run_url(f'/images/{flagged}')}")
        expect(page.locator("#verdict")).to_have_text("lookalike")
        pair = page.locator("#match-0")
        assert pair.locator("img").count() == 2
        assert pair.locator("img").evaluate_all("imgs => imgs.every(i => i.complete && i.naturalWidth > 0)")
        boxes = [pair.locator("img").nth(i).bounding_box() for i in range(2)]
        assert boxes[1]["x"] > boxes[0]["x"] + boxes[0]["width"] - 1 and abs(boxes[0]["y"] - boxes[1]["y"]) < 5
        expect(pair.locator("table.distances")).to_contain_text("phash")
        expect(page.locator("#commercial-use")).not_to_be_empty()
        expect(page.locator("#c2pa-state")).to_contain_text("Trusted")

        # The demo's "inspiration" post: the competitor's photo beside the render that started from it.
        inspired = next(
            e.key for e in events if e.kind == "render.created" and e.subject.endswith("tradition-vendredi")
        )
        page.goto(f"{base}{run_url(f'/images/{inspired}')}")
        expect(page.locator("#verdict")).to_have_text("lookalike")
        expect(page.locator("#match-0")).to_contain_text("image-to-image reference")
        expect(page.locator("#match-0 figcaption").nth(1)).to_contain_text("boulangerie-doree-04.jpg")
        assert page.locator("#match-0 img").evaluate_all("imgs => imgs.every(i => i.complete && i.naturalWidth > 0)")
        shoot(page, "image-page.png", tmp_path)

        # Audit: the exported file, and a stripped, resized JPEG of it.
        exported = run_dir / "export" / "instagram" / f"{SLOT}-1.png"
        stripped = tmp_path / "from-instagram.jpg"
        image = Image.open(exported).convert("RGB")
        image.resize((image.width // 2, image.height // 2)).save(stripped, "JPEG", quality=70)
        page.goto(base + "/audit")
        page.set_input_files("#file", str(exported))
        page.click("#audit")
        expect(page.locator(".audit-c2pa")).to_contain_text("Trusted")
        expect(page.locator(".audit-ledger")).to_contain_text("found by content hash")
        page.set_input_files("#file", str(stripped))
        page.click("#audit")
        # Traced by the invisible watermark when it survived the halving, else by perceptual hash.
        expect(page.locator(".audit-ledger")).to_contain_text(
            re.compile("found by (invisible watermark|perceptual hash)")
        )
        expect(page.locator(".audit-watermark")).to_be_visible()
        expect(page.locator(".audit-ledger")).to_contain_text(approved)
        shoot(page, "audit-page.png", tmp_path)
        browser.close()

    # The export holds exactly the approved image, with the edited caption.
    export = run_dir / "export" / "instagram"
    assert sorted(p.name for p in export.glob(f"{SLOT}-*.png")) == [f"{SLOT}-1.png"]
    assert (export / f"{SLOT}.txt").read_text(encoding="utf-8").strip() == edited
    listing = json.loads((run_dir / "export" / "export.json").read_text())
    assert [i["image_id"] for e in listing["exported"] for i in e["images"]] == [approved]
    ledger = Ledger(settings.ledger_url)
    decision = next(e for e in ledger.events(kind="review.approved") if e.payload["item_id"] == drafts[0])
    assert decision.payload["edit"]["after"] == edited and decision.payload["reviewer"] == "Camille"
    assert decision.payload["edit"]["before"] != edited
    # The web audit said what the library's audit says.
    web_view = Auditor(ledger, audit_trust(settings)).audit(stripped).record
    assert web_view is not None and web_view.image_id == approved
    assert ledger.verify().ok
    ledger.close()
