"""Build a tiny Stable Diffusion pipeline with random weights, saved like any real model.

The images it makes are coloured noise: it exists so the real loading path
(`from_pretrained` on a folder written by `save_pretrained`) runs on a machine with no GPU
and no model hub. Its tokenizer is a byte-level CLIP vocabulary with no merges.
"""

from __future__ import annotations

import shutil
from pathlib import Path

TINY_SEED = 20261122
MAX_TOKENS = 512


def build_tiny_model(folder: Path, overwrite: bool = False) -> Path:
    import torch
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from tokenizers import pre_tokenizers
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    if (folder / "model_index.json").is_file() and not overwrite:
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    vocab: dict[str, int] = {}
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    for suffix in ("", "</w>"):
        for char in alphabet:
            vocab[char + suffix] = len(vocab)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    # Byte-level with no merges means one token per character: give it room for a styled prompt.
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=MAX_TOKENS)

    torch.manual_seed(TINY_SEED)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=MAX_TOKENS, bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"]))
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=8, attention_head_dim=8)
    # Four VAE blocks: latents are 1/8 of the image side, as in Stable Diffusion, so a 256 px test
    # render denoises 32x32 latents (attention over 16x16), which keeps a batch of the suite cheap.
    vae = AutoencoderKL(
        block_out_channels=[16, 32, 32, 32], in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        norm_num_groups=8, sample_size=256)
    scheduler = DPMSolverMultistepScheduler(steps_offset=1)
    pipeline = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(folder.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    pipeline.save_pretrained(staging, safe_serialization=True)
    staging.rename(folder)   # a crash mid-save never leaves a half model where loading looks
    return folder
