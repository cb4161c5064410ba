"""Build tiny pipelines of each model family with random weights, saved like any real model.

The images they make are coloured noise: they exist so the real loading path
(`from_pretrained` on a folder written by `save_pretrained`) runs for every family the
registry lists (SD 1.5, SDXL, SD 3.5, FLUX.1, PixArt) on a machine with no GPU and no model hub.
Each keeps its family's structure at toy width: SDXL's two CLIP encoders with pooled embeddings
and size conditioning, SD 3's three encoders with a T5 tokenizer, FLUX's packed 16-channel
latents, PixArt's T5-only conditioning; latents are 1/8 of the image side, as in the real ones.
Tokenizers are built in code: a byte-level CLIP vocabulary with no merges, and a T5 Unigram
vocabulary of single characters (so any prompt tokenizes, one token per character).
"""

from __future__ import annotations

import json
import shutil
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

TINY_SEED = 20261122
MAX_TOKENS = 512
T5_TOKENS = 256
FAMILIES = ("sd15", "sdxl", "sd3", "flux", "pixart")
MARKER = "estampille_model.json"  # names the registry entry of a folder built here


def tiny_folder_name(family: str) -> str:
    return "tiny-sd" if family == "sd15" else f"tiny-{family}"


def tiny_registry_id(family: str) -> str:
    return f"builtin:{tiny_folder_name(family)}"


def build_tiny_model(folder: Path, overwrite: bool = False, family: str = "sd15") -> Path:
    """Build the `family`'s tiny pipeline into `folder` (kept if already built)."""
    import torch

    if family not in BUILDERS:
        raise ValueError(f"unknown model family {family!r}; choose one of {', '.join(FAMILIES)}")
    folder = Path(folder)
    if (folder / "model_index.json").is_file() and not overwrite:
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    torch.manual_seed(TINY_SEED)
    pipeline = BUILDERS[family]()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(folder.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    pipeline.save_pretrained(staging, safe_serialization=True)
    (staging / MARKER).write_text(json.dumps({"registry_id": tiny_registry_id(family), "family": family}))
    staging.rename(folder)  # a crash mid-save never leaves a half model where loading looks
    return folder


def _clip_tokenizer() -> Any:
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {}
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    for suffix in ("", "</w>"):
        for char in alphabet:
            vocab[char + suffix] = len(vocab)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    # Byte-level with no merges means one token per character: give it room for a styled prompt.
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=MAX_TOKENS)


def _clip_encoder(tokenizer: Any, hidden: int = 32, projection: int | None = None) -> Any:
    """CLIPTextModel, or CLIPTextModelWithProjection (pooled text embeddings) with `projection`."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    vocab = tokenizer.get_vocab()
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
        projection_dim=projection or hidden,
    )
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _t5_tokenizer() -> Any:
    """A T5 tokenizer from a Unigram model of single characters (no sentencepiece file, no download)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import T5Tokenizer  # transformers 5's tokenizers-backed class (T5TokenizerFast is its alias)

    chars = sorted(set(string.printable.strip()) | set("éèêëàâäçùûüîïôöœæÉÈÊÀÂÇÙÛÎÔŒ’«»–—…"))
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + c, -3.0) for c in chars] + [(c, -4.0) for c in chars]
    model = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    model.normalizer = normalizers.NFKC()
    model.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    model.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    model.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return T5Tokenizer(
        tokenizer_object=model,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_ids=0,
        model_max_length=T5_TOKENS,
    )


def _t5_encoder(tokenizer: Any, d_model: int) -> Any:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=d_model,
            d_ff=d_model * 2,
            d_kv=8,
            num_layers=2,
            num_heads=4,
            feed_forward_proj="gated-gelu",
            relative_attention_num_buckets=8,
            # T5Config's typed signature omits the generic config keywords it stores all the same
            decoder_start_token_id=0,  # type: ignore[call-arg]
            pad_token_id=0,
            eos_token_id=1,
        )
    )


def _vae(latent_channels: int = 4, flow: bool = False) -> Any:
    """Four blocks, so latents are 1/8 of the image side as in every real family; a 256 px
    test render denoises 32x32 latents, which keeps the suite cheap."""
    from diffusers import AutoencoderKL

    extra = (
        {"use_quant_conv": False, "use_post_quant_conv": False, "shift_factor": 0.1159, "scaling_factor": 0.3611}
        if flow
        else {}
    )
    return AutoencoderKL(
        block_out_channels=[16, 32, 32, 32],
        in_channels=3,
        out_channels=3,
        latent_channels=latent_channels,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        norm_num_groups=8,
        sample_size=256,
        **extra,
    )


def _sd15() -> Any:
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel

    tokenizer = _clip_tokenizer()
    text_encoder = _clip_encoder(tokenizer)  # this order of random draws is the weights' identity
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=8,
        attention_head_dim=8,
    )
    return StableDiffusionPipeline(
        vae=_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DPMSolverMultistepScheduler(steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _sdxl() -> Any:
    """Two CLIP encoders (the second with pooled projection) and the text_time size conditioning."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    tokenizer, tokenizer_2 = _clip_tokenizer(), _clip_tokenizer()
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=8 * 6 + 32,
        cross_attention_dim=64,
        norm_num_groups=8,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading"
    )
    return StableDiffusionXLPipeline(
        vae=_vae(),
        text_encoder=_clip_encoder(tokenizer),
        tokenizer=tokenizer,
        text_encoder_2=_clip_encoder(tokenizer_2, projection=32),
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    )


def _sd3() -> Any:
    """CLIP-L, CLIP-G (both pooled) and T5, joint attention over 2x2 patches of 16-channel latents."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    tokenizer, tokenizer_2, tokenizer_3 = _clip_tokenizer(), _clip_tokenizer(), _t5_tokenizer()
    transformer = SD3Transformer2DModel(
        sample_size=32,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=64,
        pooled_projection_dim=64,
        pos_embed_max_size=64,
        qk_norm="rms_norm",
    )
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(16, flow=True),
        text_encoder=_clip_encoder(tokenizer, projection=32),
        tokenizer=tokenizer,
        text_encoder_2=_clip_encoder(tokenizer_2, projection=32),
        tokenizer_2=tokenizer_2,
        text_encoder_3=_t5_encoder(tokenizer_3, 64),
        tokenizer_3=tokenizer_3,
    )


def _flux() -> Any:
    """FLUX.1-schnell's shape: CLIP pooled + T5, no guidance embedding, 2x2-packed 16-channel latents."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    tokenizer, tokenizer_2 = _clip_tokenizer(), _t5_tokenizer()
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=False,
        axes_dims_rope=(4, 6, 6),
    )
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0),
        vae=_vae(16, flow=True),
        text_encoder=_clip_encoder(tokenizer),
        tokenizer=tokenizer,
        text_encoder_2=_t5_encoder(tokenizer_2, 32),
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )


def _pixart() -> Any:
    """T5 only, adaLN-single transformer; sample_size 32 selects diffusers' 256 px aspect-ratio bins."""
    from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel

    tokenizer = _t5_tokenizer()
    transformer = PixArtTransformer2DModel(
        sample_size=32,
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=3,
        caption_channels=32,
        in_channels=4,
        out_channels=8,
        cross_attention_dim=24,
        norm_num_groups=8,
        norm_type="ada_norm_single",
        use_additional_conditions=False,
    )
    return PixArtAlphaPipeline(
        tokenizer=tokenizer,
        text_encoder=_t5_encoder(tokenizer, 32),
        vae=_vae(),
        transformer=transformer,
        scheduler=DPMSolverMultistepScheduler(),
    )


BUILDERS: dict[str, Callable[[], Any]] = {"sd15": _sd15, "sdxl": _sdxl, "sd3": _sd3, "flux": _flux, "pixart": _pixart}
