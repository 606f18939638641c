"""diffusers' video transformers -> ``minivdm.models.dit.VideoDiT``: config.json to ``DiTConfig``, and a published
transformer folder loaded name for name.

* ``CogVideoXTransformer3DModel`` (CogVideoX 2B, 5B, 1.5): text_conditioning="joint", attention="full", positions
  "rotary" where ``use_rotary_positional_embeddings`` else "sincos". Parameter names are identical.
* ``LatteTransformer3DModel`` (Latte-1): text_conditioning="cross", attention="factorised", positions="sincos".
  Parameter names are identical except the patch embedding (``pos_embed.proj`` -> ``patch_embed.proj``).

Every config key is honoured, or refused by name at a value minivdm does not implement, or listed in ``NO_EFFECT``
with the reason it cannot change what the transformer computes (minivdm computes positions from each input's token
grid, so the reference sizes diffusers uses to pre-compute position buffers change nothing). Unknown keys are refused.
"""

from __future__ import annotations

from pathlib import Path

import torch

from minivdm.models.dit import DiTConfig, VideoDiT

COGVIDEOX = "CogVideoXTransformer3DModel"
LATTE = "LatteTransformer3DModel"

# diffusers' __init__ defaults: a key a config.json lacks (it was saved before diffusers added the option, e.g.
# CogVideoX 1.0's patch_size_t) means this value, not DiTConfig's default
DIFFUSERS_DEFAULTS = {
    COGVIDEOX: {"num_attention_heads": 30, "attention_head_dim": 64, "in_channels": 16, "out_channels": 16,
                "flip_sin_to_cos": True, "freq_shift": 0, "time_embed_dim": 512, "ofs_embed_dim": None,
                "text_embed_dim": 4096, "num_layers": 30, "dropout": 0.0, "attention_bias": True, "sample_width": 90,
                "sample_height": 60, "sample_frames": 49, "patch_size": 2, "patch_size_t": None,
                "temporal_compression_ratio": 4, "max_text_seq_length": 226, "activation_fn": "gelu-approximate",
                "timestep_activation_fn": "silu", "norm_elementwise_affine": True, "norm_eps": 1e-5,
                "spatial_interpolation_scale": 1.875, "temporal_interpolation_scale": 1.0,
                "use_rotary_positional_embeddings": False, "use_learned_positional_embeddings": False,
                "patch_bias": True},
    LATTE: {"num_attention_heads": 16, "attention_head_dim": 88, "in_channels": None, "out_channels": None,
            "num_layers": 1, "dropout": 0.0, "cross_attention_dim": None, "attention_bias": False, "sample_size": 64,
            "patch_size": None, "activation_fn": "geglu", "num_embeds_ada_norm": None, "norm_type": "layer_norm",
            "norm_elementwise_affine": True, "norm_eps": 1e-5, "caption_channels": None, "video_length": 16},
}
# key -> the only value minivdm implements
_FIXED = {
    COGVIDEOX: {"flip_sin_to_cos": True, "freq_shift": 0, "ofs_embed_dim": None, "dropout": 0.0,
                "timestep_activation_fn": "silu", "use_learned_positional_embeddings": False, "patch_bias": True},
    LATTE: {"dropout": 0.0, "norm_type": "ada_norm_single"},
}
# key -> why it cannot change the transformer's function in minivdm
NO_EFFECT = {
    COGVIDEOX: {
        "sample_frames": "positions are computed for the input's frames",
        "temporal_compression_ratio": "only sizes diffusers' pre-computed position buffer (the VAE's ratio)",
        "max_text_seq_length": "only sizes diffusers' pre-computed position buffer; text tokens have no position",
    },
    LATTE: {
        "num_embeds_ada_norm": "adaLN-single embeds the timestep sinusoidally; no embedding table",
        "video_length": "the temporal sincos code is computed for the input's frames",
    },
}
# diffusers key -> DiTConfig field (same meaning)
_SAME = {
    COGVIDEOX: ("num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "time_embed_dim",
                "text_embed_dim", "num_layers", "attention_bias", "sample_width", "sample_height", "patch_size",
                "patch_size_t", "activation_fn", "norm_elementwise_affine", "norm_eps", "spatial_interpolation_scale",
                "temporal_interpolation_scale"),
    LATTE: ("num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "num_layers", "attention_bias",
            "patch_size", "activation_fn", "norm_elementwise_affine", "norm_eps"),
}


def dit_config_from_diffusers(config: dict, *, name: str) -> DiTConfig:
    """A ``DiTConfig`` from a CogVideoX or Latte transformer config.json dict; every key accounted for."""
    if not isinstance(config, dict):
        raise TypeError(f"a transformer config must be a dict (config.json), got {type(config).__name__}")
    class_name = config.get("_class_name")
    if class_name not in (COGVIDEOX, LATTE):
        raise ValueError(f"minivdm's DiT loads {COGVIDEOX} and {LATTE} configs, got _class_name={class_name!r}")
    values = ({"text_conditioning": "joint", "attention": "full", "positions": "sincos"} if class_name == COGVIDEOX
              else {"text_conditioning": "cross", "attention": "factorised", "positions": "sincos", "patch_size_t": None})
    fixed, no_effect, same = _FIXED[class_name], NO_EFFECT[class_name], _SAME[class_name]
    config = {**DIFFUSERS_DEFAULTS[class_name], **config}
    for key, value in config.items():
        if key.startswith("_") or key in no_effect:
            continue
        if class_name == COGVIDEOX and key == "patch_bias" and config.get("patch_size_t") is not None:
            continue  # CogVideoX 1.5's patch embedding is a Linear that diffusers builds with a bias whatever this says
        if key in fixed:
            if value != fixed[key] or isinstance(value, bool) != isinstance(fixed[key], bool):
                raise ValueError(f"config has {key}={value!r}; minivdm's {class_name} supports only {fixed[key]!r}")
        elif key in same:
            values[key] = value
        elif class_name == COGVIDEOX and key == "use_rotary_positional_embeddings":
            values["positions"] = "rotary" if value else "sincos"
        elif class_name == LATTE and key == "caption_channels":
            values["text_embed_dim"] = value
        elif class_name == LATTE and key == "sample_size":
            values["sample_height"] = values["sample_width"] = value
        elif class_name == LATTE and key == "cross_attention_dim":
            inner = config.get("num_attention_heads", 16) * config.get("attention_head_dim", 88)
            if value != inner:
                raise ValueError(f"config has cross_attention_dim={value!r}; Latte projects the caption to the "
                                 f"transformer's width, so minivdm supports only num_attention_heads * "
                                 f"attention_head_dim = {inner}")
        else:
            known = sorted([*same, *fixed, *no_effect])
            raise ValueError(f"config has {key}={value!r}, an option minivdm's {class_name} does not know: refused "
                             f"rather than ignored (known options: {known})")
    if class_name == LATTE:
        for key, field, meaning in (("in_channels", "in_channels", "the latents' channels"),
                                    ("patch_size", "patch_size", "the patch's side"),
                                    ("caption_channels", "text_embed_dim", "the text encoder's width")):
            if values[field] is None:
                raise ValueError(f"config of {LATTE} needs {key} ({meaning})")
        if values["out_channels"] is None:  # diffusers: out_channels None means in_channels
            values["out_channels"] = values["in_channels"]
    return DiTConfig(name=name, **values)


def diffusers_key(key: str, class_name: str) -> str:
    """Our parameter name for a key of a published ``class_name`` checkpoint."""
    if class_name == LATTE and key.startswith("pos_embed."):
        return "patch_embed." + key[len("pos_embed."):]
    return key


def load_dit(path: str | Path, subfolder: str | None = "transformer", *, dtype: torch.dtype | None = None,
             device: str | torch.device | None = None, allow_pickle: bool = False) -> VideoDiT:
    """A published CogVideoX or Latte transformer folder (config.json + safetensors, sharded too), or a pipeline folder
    with a ``transformer/`` subfolder, as our ``VideoDiT``: built on the meta device, every name and shape checked."""
    from minivdm.io.checkpoints import load_into, read_component

    path = Path(path)
    if subfolder is not None and not (path / subfolder).is_dir():
        subfolder = None  # ``path`` is the component folder itself
    config_dict, state_dict = read_component(path, subfolder, allow_pickle=allow_pickle)
    config = dit_config_from_diffusers(config_dict, name=str(path))
    with torch.device("meta"):
        model = VideoDiT(config)
    class_name = config_dict["_class_name"]
    load_into(model, state_dict, key_map=lambda key: diffusers_key(key, class_name), strict=True, dtype=dtype,
              device=device)
    return model.eval()
