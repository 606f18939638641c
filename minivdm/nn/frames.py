r"""How a layer that runs inside an image U-Net learns how many frames make one clip.

An inflated video U-Net runs the image model's forward on the frames of its videos laid along the
batch axis, ((B T), C, H, W): the 2D layers need nothing more. The layers it adds (temporal
convolutions, temporal attention, ...) must fold the batch axis back into (B, T) to mix the frames,
so they need T. The image model's forward does not pass it, so the video U-Net sets it on each such
layer for the duration of one call (``clip_length``) and the layer reads it (``FrameAware.frames``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


class FrameAware:
    """Mixin for a layer that mixes the frames of a clip laid on the batch axis, ``(b t) ...``."""

    num_frames: int | None = None

    def frames(self, batch_frames: int, num_frames: int | None = None) -> int:
        """T for this call (``num_frames`` when given, else the value the video U-Net set); checked against
        the batch axis, which holds B*T frames."""
        frames = self.num_frames if num_frames is None else num_frames
        if frames is None:
            raise RuntimeError(f"{type(self).__name__} mixes the frames of a clip but was not told how many make one: "
                               f"pass num_frames, or call the video U-Net it belongs to on a video (B, C, T, H, W)")
        if frames <= 0 or batch_frames % frames:
            raise ValueError(f"{type(self).__name__} takes B*T frames on the batch axis with T = {frames}, got "
                             f"{batch_frames} (not a multiple)")
        return frames


@contextmanager
def clip_length(model: nn.Module, num_frames: int) -> Iterator[None]:
    """Tell every ``FrameAware`` layer of ``model`` that a clip has ``num_frames`` frames, for this call only."""
    layers = [module for module in model.modules() if isinstance(module, FrameAware)]
    for layer in layers:
        layer.num_frames = num_frames
    try:
        yield
    finally:
        for layer in layers:
            layer.num_frames = None

