"""Stable Video Diffusion's published U-Nets (Blattmann et al., 2023, arXiv:2311.15127): the unet/config.json of
``stabilityai/stable-video-diffusion-img2vid`` (SVD, 14 frames) and ``-img2vid-xt`` (SVD-XT, 25 frames), as dicts,
and ``svd_unet_config`` to read one as our ``SVDUNetConfig``.

Where the values come from: diffusers' ``UNetSpatioTemporalConditionModel`` was written for these checkpoints and
its argument defaults are the SVD-XT U-Net (block_out_channels (320, 640, 1280, 1280), layers_per_block 2,
num_attention_heads (5, 10, 20, 20), i.e. heads of 64 channels, cross_attention_dim 1024 (OpenCLIP ViT-H's image
embedding), transformer_layers_per_block 1, addition_time_embed_dim 256 and projection_class_embeddings_input_dim
768 = 3 x 256 for the three added time ids, in_channels 8 = 4 noisy + 4 image latent channels, out_channels 4,
num_frames 25). SVD differs only in num_frames (14). The published files also set sample_size 96 (the SD 2.1-768
value, 768 / 8), which changes nothing the U-Net computes; diffusers' default is None. The bookkeeping keys
``_diffusers_version`` and ``_name_or_path`` are left out.

Both have 1,524,623,082 parameters (1524.62 M); a test builds diffusers' model and ours from ``SVD_XT_UNET`` on the
meta device and compares the count and every state-dict key and shape.
"""

from __future__ import annotations

from minivdm.models.svd_unet import SVDUNetConfig

SVD_XT_UNET = {
    "_class_name": "UNetSpatioTemporalConditionModel",
    "addition_time_embed_dim": 256,
    "block_out_channels": [320, 640, 1280, 1280],
    "cross_attention_dim": 1024,
    "down_block_types": ["CrossAttnDownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal",
                         "CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"],
    "in_channels": 8,
    "layers_per_block": 2,
    "num_attention_heads": [5, 10, 20, 20],
    "num_frames": 25,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 768,
    "sample_size": 96,
    "transformer_layers_per_block": 1,
    "up_block_types": ["UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal",
                       "CrossAttnUpBlockSpatioTemporal"],
}
SVD_UNET = {**SVD_XT_UNET, "num_frames": 14}

SVD_CONFIGS = {"svd": SVD_UNET, "svd-xt": SVD_XT_UNET}
HF_IDS = {"svd": "stabilityai/stable-video-diffusion-img2vid",
          "svd-xt": "stabilityai/stable-video-diffusion-img2vid-xt"}


def svd_unet_config(name: str = "svd-xt") -> SVDUNetConfig:
    """The ``SVDUNetConfig`` of a published SVD U-Net, read from its config.json dict."""
    if name not in SVD_CONFIGS:
        raise ValueError(f"no published SVD U-Net named {name!r}; known: {sorted(SVD_CONFIGS)}")
    return SVDUNetConfig.from_diffusers(SVD_CONFIGS[name], name=name)
