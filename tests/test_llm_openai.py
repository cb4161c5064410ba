"""The real `openai` client against a local OpenAI-compatible server."""

from __future__ import annotations

import pytest

from estampille.errors import LLMError
from estampille.text.llm import OpenAICompatibleModel

MESSAGES = [{"role": "system", "content": "You write posts."}, {"role": "user", "content": "Brief: bread"}]


def _model(server, **kw):
    return OpenAICompatibleModel(server.base_url, "fake-chat", "sk-test-SECRET", **kw)


def test_completion_records_host_model_tokens_latency_but_never_the_key(fake_llm):
    completion = _model(fake_llm).complete(MESSAGES, max_tokens=50, seed=7)
    assert "A story of starter and patience: bread" in completion.text  # seed 7 picks the 4th opener
    record = completion.record
    assert record["host"].startswith("127.0.0.1:") and record["model"] == "fake-chat"
    assert record["prompt_tokens"] == 42 and record["completion_tokens"] == 17 and record["latency_s"] >= 0
    assert "SECRET" not in repr(record)
    assert fake_llm.headers[0]["authorization"] == "Bearer sk-test-SECRET"
    assert fake_llm.requests[0]["seed"] == 7 and fake_llm.requests[0]["max_tokens"] == 50


@pytest.mark.parametrize(
    "behaviour,message", [("http500", "HTTP 500"), ("http429", "HTTP 429"), ("empty", "empty answer")]
)
def test_failures_become_clear_llm_errors(fake_llm, behaviour, message):
    fake_llm.rules.append(("bread", behaviour))
    with pytest.raises(LLMError, match=message):
        _model(fake_llm, max_retries=1).complete(MESSAGES, max_tokens=50, seed=1)
    if behaviour != "empty":
        assert len(fake_llm.requests) == 2  # the client retried once before giving up


def test_timeout_is_a_clear_error(fake_llm):
    fake_llm.rules.append(("bread", "timeout"))
    with pytest.raises(LLMError, match="timed out"):
        _model(fake_llm, timeout_s=0.5, max_retries=0).complete(MESSAGES, max_tokens=50, seed=1)


def test_unreachable_endpoint_is_a_clear_error():
    model = OpenAICompatibleModel("http://127.0.0.1:9/v1", "m", None, max_retries=0, timeout_s=2)
    with pytest.raises(LLMError, match="cannot reach"):
        model.complete(MESSAGES, max_tokens=5, seed=1)


def test_the_openai_sdk_variables_work_when_estampille_s_are_unset(fake_llm, monkeypatch):
    from estampille.brand import LLMSettings
    from estampille.settings import Settings
    from estampille.text.llm import EmbeddedModel, chat_model_for

    env = {"OPENAI_BASE_URL": fake_llm.base_url, "OPENAI_API_KEY": "sk-openai-SECRET"}
    chat = chat_model_for(LLMSettings(model="fake-chat"), Settings.from_env(env=env), env)
    chat.complete(MESSAGES, max_tokens=20, seed=1)
    assert fake_llm.headers[-1]["authorization"] == "Bearer sk-openai-SECRET"
    assert chat.describe()["host"] == fake_llm.base_url.split("/")[2]
    ours = chat_model_for(
        LLMSettings(model="fake-chat"),
        Settings.from_env(env={**env, "ESTAMPILLE_LLM_BASE_URL": "http://127.0.0.1:9/v1"}),
        env,
    )
    assert ours.describe()["host"] == "127.0.0.1:9"  # ESTAMPILLE_LLM_BASE_URL wins
    brand = chat_model_for(LLMSettings(model="m", base_url="http://127.0.0.1:8/v1"), Settings.from_env(env=env), env)
    assert brand.describe()["host"] == "127.0.0.1:8"  # and so does the brand file
    assert isinstance(
        chat_model_for(LLMSettings(), Settings.from_env(env={"OPENAI_API_KEY": "sk-x"}), {}), EmbeddedModel
    )
    assert "sk-openai-SECRET" not in repr(Settings.from_env(env=env))  # secrets never print
