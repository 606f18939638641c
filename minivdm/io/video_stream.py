"""Reading a video file frame by frame, for jobs over long files (data curation).

``read_video`` (``minivdm.io.video_files``) loads a whole clip; a raw video of an hour does not fit in
memory as float frames. ``VideoStream`` yields one frame at a time, as (3, H, W) float32 in [-1, 1],
and knows the file's frame rate before the first frame is read. Iterating it again reopens the file,
so a job can pass over a video twice while holding one frame.

.mp4 and .webm are decoded by ffmpeg (imageio-ffmpeg); .gif by Pillow, each stored frame repeated
for its delay the way ``read_video`` does (so both readers give the same frames).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from einops import rearrange
from PIL import Image, ImageSequence

from minivdm.io.video_files import check_video_path, gif_timing, unreadable_video

STREAM_SUFFIXES = (".mp4", ".webm", ".gif")


def _frame_to_tensor(frame: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [-1, 1]; the inverse of the file writers' map."""
    return rearrange(torch.from_numpy(np.array(frame[..., :3])), "h w c -> c h w").float() / 127.5 - 1.0


class VideoStream:
    """Frames of a video file, one at a time: ``for frame in VideoStream(path)`` gives (3, H, W) in [-1, 1].

    ``fps`` is read when the stream is made; a file that cannot even be opened raises there. A file that
    breaks part-way (truncated, corrupt) raises from the iteration, after the frames that could be read.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = check_video_path(path, STREAM_SUFFIXES)
        try:
            if self.path.suffix.lower() == ".gif":
                with Image.open(self.path) as image:
                    period, _ = gif_timing(image)
                self.fps = 1000 / period
            else:
                self.fps = float(iio.immeta(self.path, plugin="FFMPEG")["fps"])
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise unreadable_video(self.path, error) from None
        if not self.fps > 0:
            raise ValueError(f"{self.path} reports a frame rate of {self.fps}; cannot place its frames in time")

    def __iter__(self) -> Iterator[torch.Tensor]:
        frames = self._gif_frames() if self.path.suffix.lower() == ".gif" else (
            _frame_to_tensor(frame) for frame in iio.imiter(self.path, plugin="FFMPEG"))
        count = 0
        try:
            for frame in frames:
                count += 1
                yield frame
        except (OSError, ValueError, RuntimeError) as error:
            raise unreadable_video(self.path, error, count) from None

    def _gif_frames(self) -> Iterator[torch.Tensor]:
        with Image.open(self.path) as image:
            period, delays = gif_timing(image)
            for frame, delay in zip(ImageSequence.Iterator(image), delays):
                tensor = _frame_to_tensor(np.asarray(frame.convert("RGB")))
                for _ in range(max(1, round(delay / period))):
                    yield tensor
