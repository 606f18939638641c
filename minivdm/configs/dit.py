"""The published video Diffusion Transformers: each one's transformer/config.json, as the dict the Hugging Face
repository named in ``HF_IDS`` holds, and ``full_scale_dit_config`` to read it as our ``DiTConfig``.

Tests build diffusers' model from each dict and ours from ``full_scale_dit_config`` (both on the meta device) and check
the parameter count (CogVideoX-2b: 1693.78 M) and every state-dict key and shape.

Where the values come from (public code read with the course's search tools; the repositories' bookkeeping keys
``_diffusers_version`` and ``_name_or_path`` are left out: they change nothing the model computes):

* CogVideoX-2b and -5b: diffusers' ``scripts/convert_cogvideox_to_diffusers.py`` (the script that made the published
  folders) builds ``CogVideoXTransformer3DModel`` with its defaults and only ``num_layers`` (2B: 30, 5B: 42),
  ``num_attention_heads`` (2B: 30, 5B: 48) and ``use_rotary_positional_embeddings`` (2B: False, 5B: True) set; the
  config.json text of both repositories, key for key, is reproduced in public loaders (e.g. the MZ ComfyUI CogVideoX
  nodes' ``cogVideoXTransformerConfig`` and ``cogVideoXTransformerConfig5B``).
* Latte-1: the ``LatteTransformer3DModel`` arguments of the full-size pipeline test the Latte authors first
  contributed with ``LattePipeline`` (diffusers' ``tests/pipelines/latte/test_latte.py``: 28 layers, 16 heads of 72,
  sample_size 64, T5-XXL captions of width 4096, 8 output channels = epsilon and the learned variance) and
  Vchitect/Latte's ``configs/t2x/t2v_sample.yaml`` (``maxin-cn/Latte-1``, 16 frames at 512 x 512: 64 x 64 latents);
  ``dropout`` and ``video_length`` are the values ``save_pretrained`` writes for those arguments.
"""

from __future__ import annotations

from minivdm.models.dit import DiTConfig
from minivdm.models.dit_checkpoints import dit_config_from_diffusers

COGVIDEOX_2B = {
    "_class_name": "CogVideoXTransformer3DModel",
    "activation_fn": "gelu-approximate",
    "attention_bias": True,
    "attention_head_dim": 64,
    "dropout": 0.0,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 16,
    "max_text_seq_length": 226,
    "norm_elementwise_affine": True,
    "norm_eps": 1e-05,
    "num_attention_heads": 30,
    "num_layers": 30,
    "out_channels": 16,
    "patch_size": 2,
    "sample_frames": 49,
    "sample_height": 60,
    "sample_width": 90,
    "spatial_interpolation_scale": 1.875,
    "temporal_compression_ratio": 4,
    "temporal_interpolation_scale": 1.0,
    "text_embed_dim": 4096,
    "time_embed_dim": 512,
    "timestep_activation_fn": "silu",
    "use_rotary_positional_embeddings": False,
}
# the 5B: wider (48 heads) and deeper (42 layers), and 3D rotary positions instead of the 2B's 3D sincos code;
# every other key of its config.json is the 2B's
COGVIDEOX_5B = {**COGVIDEOX_2B, "num_attention_heads": 48, "num_layers": 42, "use_rotary_positional_embeddings": True}
LATTE_1 = {
    "_class_name": "LatteTransformer3DModel",
    "activation_fn": "gelu-approximate",
    "attention_bias": True,
    "attention_head_dim": 72,
    "caption_channels": 4096,
    "cross_attention_dim": 1152,
    "dropout": 0.0,
    "in_channels": 4,
    "norm_elementwise_affine": False,
    "norm_eps": 1e-06,
    "norm_type": "ada_norm_single",
    "num_attention_heads": 16,
    "num_embeds_ada_norm": 1000,
    "num_layers": 28,
    "out_channels": 8,
    "patch_size": 2,
    "sample_size": 64,
    "video_length": 16,
}

DIT_CONFIGS = {"cogvideox-2b": COGVIDEOX_2B, "cogvideox-5b": COGVIDEOX_5B, "latte-1": LATTE_1}
HF_IDS = {"cogvideox-2b": "THUDM/CogVideoX-2b", "cogvideox-5b": "THUDM/CogVideoX-5b", "latte-1": "maxin-cn/Latte-1"}


def full_scale_dit_config(name: str) -> DiTConfig:
    """The ``DiTConfig`` of a published transformer, read from its config.json through ``dit_config_from_diffusers``."""
    if name not in DIT_CONFIGS:
        raise ValueError(f"no published DiT named {name!r}; known: {sorted(DIT_CONFIGS)}")
    return dit_config_from_diffusers(DIT_CONFIGS[name], name=name)
