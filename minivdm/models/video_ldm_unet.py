r"""Video LDM's video U-Net (Blattmann et al., 2023, arXiv:2304.08818, Sec. 3.1): the image LDM's U-Net,
frozen, with a temporal layer after each spatial one, blended in by a learned alpha
(``minivdm.nn.temporal_merge``).

    every ResNet block:           z' = alpha z + (1 - alpha) TemporalResBlock(z),   z = ResNet(x) per frame
    every spatial transformer:    after each of its blocks, h' = alpha h + (1 - alpha) TemporalBlock(h + PE(frame))

Only the temporal layers and the alphas are trained (``freeze_image_layers``). We start each temporal
branch at the identity (``reset_temporal_to_identity``) so the inflated model is the image model frame by
frame, as Make-A-Video's; the paper leaves that choice open and SVD starts its temporal layers at random.

Parameter names are Stable Video Diffusion's (diffusers' ``UNetSpatioTemporalConditionModel``): the image
ResNet's weights under ``resnets.N.spatial_res_block.*``, the temporal ones under ``temporal_res_block.*``,
``time_mixer.mix_factor``, ``temporal_transformer_blocks.*`` and ``time_pos_embed.*``.
"""

from __future__ import annotations

from minivdm.models.inflated_unet import InflatedVideoUNet
from minivdm.models.unet_2d_condition import UNet2DConditionConfig
from minivdm.nn.resnet import ResnetBlock2D
from minivdm.nn.temporal_merge import SpatioTemporalResBlock, SpatioTemporalTransformer
from minivdm.nn.transformer_2d import Transformer2DModel

TEMPORAL_PARTS = (".temporal_res_block.", ".time_mixer.", ".temporal_transformer_blocks.", ".time_pos_embed.")
SPATIAL_RESNET = ".spatial_res_block."


class VideoLDMUNet(InflatedVideoUNet):
    def __init__(self, config: UNet2DConditionConfig = UNet2DConditionConfig(), *, merge_factor: float = 0.5):
        super().__init__(config)
        self.merge_factor = merge_factor
        for module in list(self.modules()):
            for name, child in list(module.named_children()):  # resnets and attentions sit in ModuleLists
                if type(child) is ResnetBlock2D:
                    block = SpatioTemporalResBlock(child.norm1.num_channels, child.conv1.out_channels,
                                                   child.time_emb_proj.in_features, child.norm1.num_groups,
                                                   eps=child.norm1.eps, merge_factor=merge_factor)
                    setattr(module, name, block)
                elif type(child) is Transformer2DModel:
                    block = child.transformer_blocks[0]
                    heads, inner = block.attn1.heads, block.attn1.to_q.out_features
                    transformer = SpatioTemporalTransformer(
                        heads, inner // heads, child.norm.num_channels, len(child.transformer_blocks),
                        block.attn2.to_k.in_features, child.norm.num_groups, child.use_linear_projection,
                        block.attn1.upcast)
                    setattr(module, name, transformer)
        self.reset_temporal_to_identity()

    def reset_temporal_to_identity(self) -> None:
        for module in self.modules():
            if isinstance(module, (SpatioTemporalResBlock, SpatioTemporalTransformer)):
                module.reset_temporal_to_identity(self.merge_factor)

    def is_new(self, name: str) -> bool:
        return any(part in name for part in TEMPORAL_PARTS)

    def image_key(self, name: str) -> str:
        return name.replace(SPATIAL_RESNET, ".")

    def alphas(self) -> dict[str, float]:
        """alpha = sigmoid(mix_factor) of every merge, by the name of its layer: how much of each layer is spatial."""
        return {name.removesuffix(".time_mixer.mix_factor"): float(parameter.detach().float().sigmoid())
                for name, parameter in self.named_parameters() if name.endswith("time_mixer.mix_factor")}


def inflate_for_video_ldm(unet, *, merge_factor: float = 0.5) -> VideoLDMUNet:
    """``unet`` (an image U-Net) with alpha-merged temporal layers, equal to it frame by frame."""
    return VideoLDMUNet.inflate(unet, merge_factor=merge_factor)
