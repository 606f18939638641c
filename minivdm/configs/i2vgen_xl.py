"""I2VGen-XL's published video U-Net (Zhang et al., 2023, arXiv:2311.04145): the unet/config.json of
``ali-vilab/i2vgen-xl`` as a dict, and ``I2VGEN_XL`` to build our ``I2VGenXLUNet`` from it.

Where the values come from: diffusers' ``I2VGenXLUNet`` was written for this checkpoint and its argument defaults
are the published U-Net: ModelScope's layout (block_out_channels (320, 640, 1280, 1280), three levels with
cross-attention and one without, layers_per_block 2, heads 64 channels wide (attention_head_dim 64),
norm_num_groups 32), cross_attention_dim 1024 (OpenCLIP ViT-H's text tokens and image embedding), in_channels 4
(the noisy latent; ``conv_in`` takes 8 with the encoded image latent), out_channels 4. The defaults' sample_size
and num_attention_heads are None: neither changes what the U-Net computes (diffusers replaces num_attention_heads
by attention_head_dim). The bookkeeping keys ``_diffusers_version`` and ``_name_or_path`` are left out.

The U-Net has 1,420,469,224 parameters (1420.47 M); a test builds diffusers' model and ours from
``I2VGEN_XL_UNET`` on the meta device and compares the count and every state-dict key and shape.
"""

from __future__ import annotations

from minivdm.models.i2vgen_xl_unet import I2VGenXLUNetConfig

I2VGEN_XL_UNET = {
    "_class_name": "I2VGenXLUNet",
    "attention_head_dim": 64,
    "block_out_channels": [320, 640, 1280, 1280],
    "cross_attention_dim": 1024,
    "down_block_types": ["CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"],
    "in_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "out_channels": 4,
    "sample_size": None,
    "up_block_types": ["UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"],
}
I2VGEN_XL = I2VGenXLUNetConfig.from_diffusers(I2VGEN_XL_UNET, name="i2vgen-xl")
I2VGEN_XL_PARAMETERS = 1_420_469_224
HF_IDS = {"i2vgen-xl": "ali-vilab/i2vgen-xl"}
