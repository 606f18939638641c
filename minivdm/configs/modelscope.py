"""ModelScope text-to-video 3D U-Net configurations: the published one (exact architecture) and the toy world's.

``MODELSCOPE_T2V`` reproduces the unet/config.json of the Hugging Face repository named in ``HF_IDS``
(diffusers' defaults for ``UNet3DConditionModel`` are this model); tests check the parameter count
(1411.23 M) and every state-dict key and shape against diffusers' model built from the same config.
"""

from __future__ import annotations

from minivdm.models.unet_3d_condition import (
    ATTENTION_DOWN_3D,
    ATTENTION_UP_3D,
    PLAIN_DOWN_3D,
    PLAIN_UP_3D,
    UNet3DConditionConfig,
)

MODELSCOPE_T2V = UNet3DConditionConfig(
    name="modelscope-t2v", sample_size=32, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=(ATTENTION_DOWN_3D, ATTENTION_DOWN_3D, ATTENTION_DOWN_3D, PLAIN_DOWN_3D),
    up_block_types=(PLAIN_UP_3D, ATTENTION_UP_3D, ATTENTION_UP_3D, ATTENTION_UP_3D),
    layers_per_block=2, attention_head_dim=64, cross_attention_dim=1024, norm_num_groups=32, norm_eps=1e-5,
)
# the same layout in miniature: RGB toy-world clips at 32x32, heads of width 8 (4 heads at 32 channels)
TINY_3D = UNet3DConditionConfig(
    name="tiny-3d", sample_size=32, in_channels=3, out_channels=3, block_out_channels=(32, 64),
    down_block_types=(ATTENTION_DOWN_3D, PLAIN_DOWN_3D), up_block_types=(PLAIN_UP_3D, ATTENTION_UP_3D),
    layers_per_block=2, attention_head_dim=8, cross_attention_dim=32, norm_num_groups=8,
)

CONFIGS = {config.name: config for config in (MODELSCOPE_T2V, TINY_3D)}
HF_IDS = {"modelscope-t2v": "ali-vilab/text-to-video-ms-1.7b"}
