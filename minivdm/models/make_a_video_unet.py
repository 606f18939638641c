r"""Make-A-Video's spatiotemporal U-Net (Singer et al., 2022, arXiv:2209.14792, Sec. 3.2): a text-to-image
U-Net whose convolutions and attention become pseudo-3D (``minivdm.nn.pseudo3d``).

    every 3x3 conv of a ResNet block:   Conv_P3D(h) = Conv_1D(Conv_2D(h) o T) o T
    every spatial transformer:          ATTN_P3D(h) = ATTN_1D(ATTN_2D(h) o T) o T

Conv_1D starts as the identity and ATTN_1D's output projection at zero, so the inflated model *is* the
image model on every frame until it has seen video; the paper then trains the new layers on unlabeled
video (Sec. 3.3) while the image model's weights stay as they are. The strided down-samplers, the
up-samplers and conv_in / conv_out stay per frame (our choice: the temporal layers sit in the ResNet
blocks, where the paper's figure draws them).

Parameter names are the image model's, plus ``...conv1.temporal.*``, ``...conv2.temporal.*`` and
``...attentions.N.temporal.*``: an image checkpoint is a Make-A-Video checkpoint without its temporal layers.
"""

from __future__ import annotations

from minivdm.models.inflated_unet import InflatedVideoUNet
from minivdm.models.unet_2d_condition import UNet2DConditionConfig
from minivdm.nn.pseudo3d import Pseudo3DAttention, Pseudo3DConv
from minivdm.nn.resnet import ResnetBlock2D
from minivdm.nn.transformer_2d import Transformer2DModel


class MakeAVideoUNet(InflatedVideoUNet):
    def __init__(self, config: UNet2DConditionConfig = UNet2DConditionConfig()):
        super().__init__(config)
        for module in list(self.modules()):
            if isinstance(module, ResnetBlock2D):
                module.conv1, module.conv2 = Pseudo3DConv.like(module.conv1), Pseudo3DConv.like(module.conv2)
            for name, child in list(module.named_children()):  # the transformers sit in ModuleLists "attentions"
                if type(child) is Transformer2DModel:
                    setattr(module, name, Pseudo3DAttention.like(child))
        self.reset_temporal_to_identity()

    def is_new(self, name: str) -> bool:
        return ".temporal." in name


def inflate_for_make_a_video(unet) -> MakeAVideoUNet:
    """``unet`` (an image U-Net) with pseudo-3D convolutions and attention, equal to it frame by frame."""
    return MakeAVideoUNet.inflate(unet)
