r"""An image U-Net that takes videos: the frames of each clip go through the image model's forward as a
batch, and the layers an inflation adds in between mix the frames.

    z (B, C, T, H, W) -> frames ((B T), C, H, W) -> image U-Net, with temporal layers -> (B, C, T, H, W)

Every frame reads its clip's caption and timestep. The added layers are ``FrameAware``: the forward tells
them T for the call (``minivdm.nn.frames.clip_length``). Make-A-Video's pseudo-3D U-Net and Video LDM's
alpha-merged U-Net (``minivdm.models.make_a_video_unet``, ``minivdm.models.video_ldm_unet``) are the two
inflations built on this class; both start as the image model frame by frame (``inflate``) and train only
what they add (``freeze_image_layers``).
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat

from minivdm.models.unet_2d_condition import UNet2DConditionConfig, UNet2DConditionModel
from minivdm.nn.frames import clip_length
from minivdm.validation import check_matches_weights, check_tensor, check_timesteps, check_video


class InflatedVideoUNet(UNet2DConditionModel):
    """``model(z, timestep, text)``: z (B, C, T, H, W), timestep a number or (B,), text (B, L, D), one
    caption per clip -> the prediction (B, C, T, H, W). Subclasses add their temporal layers in ``__init__``
    and name them: ``is_new(name)`` says whether a parameter is one of them, ``image_key(name)`` gives the
    image model's name of any other."""

    def __init__(self, config: UNet2DConditionConfig = UNet2DConditionConfig()):
        super().__init__(config)

    def is_new(self, name: str) -> bool:
        raise NotImplementedError

    def image_key(self, name: str) -> str:
        """The image U-Net's name of one of our parameters that is not new (the same unless a layer was wrapped)."""
        return name

    def reset_temporal_to_identity(self) -> None:
        """Every added layer as a fresh inflation has it: the model is the image model frame by frame."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_temporal_to_identity"):
                module.reset_temporal_to_identity()

    def new_parameter_names(self) -> list[str]:
        return [name for name, _ in self.named_parameters() if self.is_new(name)]

    def freeze_image_layers(self) -> list[str]:
        """Freeze every weight of the image model; return the names left trainable (the added layers)."""
        for name, parameter in self.named_parameters():
            parameter.requires_grad_(self.is_new(name))
        return self.new_parameter_names()

    @classmethod
    def inflate(cls, unet: UNet2DConditionModel, **options) -> "InflatedVideoUNet":
        """A video U-Net holding a copy of ``unet``'s weights, its new layers reset to the identity (their other
        weights drawn from torch's global generator: seed it first for a repeatable model); same device and dtype."""
        if type(unet) is not UNet2DConditionModel:
            raise TypeError(f"{cls.__name__}.inflate takes an image U-Net (minivdm UNet2DConditionModel), got "
                            f"{type(unet).__name__}")
        weight = unet.conv_in.weight
        with torch.device("meta"):  # no time spent on a random init of the image model's layers
            model = cls(unet.config, **options)
        model.to_empty(device=weight.device).to(weight.dtype)
        image_state = unet.state_dict()
        ours = {name: image_state.get(model.image_key(name)) for name in model.state_dict() if not model.is_new(name)}
        missing = sorted(name for name, value in ours.items() if value is None)
        unused = sorted(set(image_state) - {model.image_key(name) for name in ours})
        if missing or unused:
            raise ValueError(f"the image U-Net's weights do not fit {cls.__name__}: no image weight for {missing[:5]}, "
                             f"image weights unused {unused[:5]}")
        model.load_state_dict(ours, strict=False)
        model.reset_temporal_to_identity()
        return model.train(unet.training)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int | float,
                encoder_hidden_states: torch.Tensor, added_embedding: torch.Tensor | None = None,
                **unsupported) -> torch.Tensor:
        """``added_embedding`` (B, 4 * C0): one vector per clip added to the time embedding of its every frame."""
        if unsupported:
            raise TypeError(f"{type(self).__name__} takes (sample, timestep, encoder_hidden_states), got also "
                            f"{sorted(unsupported)}")
        check_video(sample, "sample")
        check_tensor(encoder_hidden_states, "encoder_hidden_states", ndim=3, layout="(B, L, cross_attention_dim)",
                     floating=True)
        batch, channels, num_frames = sample.shape[:3]
        if channels != self.config.in_channels:
            raise ValueError(f"sample must be (B, C, T, H, W) with C = {self.config.in_channels}, got {tuple(sample.shape)}")
        if encoder_hidden_states.shape[0] != batch:
            raise ValueError(f"encoder_hidden_states must hold one caption per clip, (B, L, D) with B = {batch}, "
                             f"got {tuple(encoder_hidden_states.shape)}")
        check_matches_weights(sample, "sample", self.conv_in.weight)
        timesteps = check_timesteps(timestep, batch, sample.device)
        frames = rearrange(sample, "b c t h w -> (b t) c h w")
        text = repeat(encoder_hidden_states, "b l d -> (b t) l d", t=num_frames)  # each frame reads its clip's caption
        if added_embedding is not None:
            check_tensor(added_embedding, "added_embedding", ndim=2, layout="(B, 4 * C0)", floating=True)
            if added_embedding.shape[0] != batch:
                raise ValueError(f"added_embedding must hold one vector per clip, (B, D) with B = {batch}, "
                                 f"got {tuple(added_embedding.shape)}")
            added_embedding = repeat(added_embedding, "b d -> (b t) d", t=num_frames)
        with clip_length(self, num_frames):
            out = super().forward(frames, repeat(timesteps, "b -> (b t)", t=num_frames), text,
                                  added_embedding=added_embedding)
        return rearrange(out, "(b t) c h w -> b c t h w", t=num_frames)
