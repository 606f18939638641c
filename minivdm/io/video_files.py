"""Video files: the boundary between minivdm tensors and .mp4 / .gif files.

Inside minivdm a video is a float tensor laid out (C, T, H, W), or a batch (B, C, T, H, W), with
values in [-1, 1] and C = 3 (RGB) or C = 1 (grey). A file holds frames laid out (T, H, W, C) as uint8
in [0, 255]. The two maps between them are

    frames = round((clamp(video, -1, 1) + 1) * 127.5)        video_to_frames
    video  = frames / 127.5 - 1                              frames_to_video

and the second undoes the first exactly on every uint8 value.

What each format keeps:
- .gif (Pillow) stores at most 256 colours per frame, so a frame with few colours (the toy world)
  round-trips exactly, while photographs and noise are quantised. It plays everywhere and loops.
- .mp4 (H.264 through imageio-ffmpeg, yuv420p so that browsers play it) is lossy: colour is stored
  at half resolution, so write tiny videos with ``scale=4``. H.264 players want H and W to be
  multiples of 16, so frames are padded at the bottom and right (repeating the edge pixels), and
  ``read_video`` returns the padded size.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from einops import rearrange, repeat
from PIL import Image, ImageSequence

from minivdm.io.atomic_files import write_bytes_atomically
from minivdm.validation import check_positive_int, check_tensor

VIDEO_OR_BATCH_LAYOUT = "(C, T, H, W) or (B, C, T, H, W)"
FRAMES_LAYOUT = "(T, H, W, C)"
SUPPORTED_SUFFIXES = (".mp4", ".gif")

# H.264 encodes 16x16 macroblocks; frame sizes that are not multiples of 16 play badly in some players.
MP4_MACRO_BLOCK = 16
# x264's constant-rate factor: 0 is lossless, 23 its default, 18 is commonly called visually lossless.
MP4_CRF = 18


def _checked_batch(video, name: str) -> torch.Tensor:
    """Check a video (C, T, H, W) or batch (B, C, T, H, W) and return it as a float32 CPU batch."""
    check_tensor(video, name, ndim=(4, 5), layout=VIDEO_OR_BATCH_LAYOUT, floating=True)
    batch = video if video.ndim == 5 else rearrange(video, "c t h w -> 1 c t h w")
    channels = batch.shape[1]
    if channels not in (1, 3):
        raise ValueError(f"{name} must have C=3 (RGB) or C=1 (grey) in {VIDEO_OR_BATCH_LAYOUT}, "
                         f"got C={channels} in shape {tuple(video.shape)}")
    if batch.numel() == 0:
        raise ValueError(f"{name} must have at least one frame and pixel, got shape {tuple(video.shape)}")
    # A diverged model produces NaN; clamping would silently turn it into a black frame.
    if not torch.isfinite(batch).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return batch.detach().to(device="cpu", dtype=torch.float32)


def _only_video(batch: torch.Tensor, name: str) -> torch.Tensor:
    """The single video (C, T, H, W) of a batch of one."""
    if batch.shape[0] != 1:
        raise ValueError(f"{name} must be a single video (C, T, H, W) here, got a batch of {batch.shape[0]} "
                         f"with shape {tuple(batch.shape)}; pass {name}[i], or show the batch with minivdm.viz")
    return batch[0]


def to_rgb_batch(video, name: str = "video") -> torch.Tensor:
    """Check a video or batch of videos and return it as an RGB batch (B, 3, T, H, W) in float32.

    Accepts (C, T, H, W) or (B, C, T, H, W) with C = 3 (RGB) or C = 1 (grey, repeated to RGB).
    """
    batch = _checked_batch(video, name)
    if batch.shape[1] == 1:
        batch = repeat(batch, "b 1 t h w -> b c t h w", c=3)
    return batch


def video_to_frames(video) -> np.ndarray:
    """One video (C, T, H, W) in [-1, 1] (or a batch of one) -> uint8 frames (T, H, W, C) in [0, 255].

    Values outside [-1, 1] are clamped; C is kept (1 for grey, 3 for RGB).
    """
    video = _only_video(_checked_batch(video, "video"), "video")
    levels = torch.round((video.clamp(-1.0, 1.0) + 1.0) * 127.5)
    return rearrange(levels.to(torch.uint8), "c t h w -> t h w c").numpy()


def frames_to_video(frames) -> torch.Tensor:
    """uint8 frames (T, H, W, C) with C = 1 or 3 -> a float32 video (C, T, H, W) in [-1, 1]."""
    if not isinstance(frames, np.ndarray):
        raise TypeError(f"frames must be a numpy uint8 array {FRAMES_LAYOUT}, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise TypeError(f"frames must be a numpy uint8 array {FRAMES_LAYOUT}, got dtype {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3):
        raise ValueError(f"frames must be {FRAMES_LAYOUT} with C=3 (RGB) or C=1 (grey), got shape {frames.shape}")
    levels = torch.from_numpy(np.ascontiguousarray(frames)).to(torch.float32)
    return rearrange(levels / 127.5 - 1.0, "t h w c -> c t h w")


def _format_from_suffix(suffix: str) -> str:
    suffix = suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(f"unsupported video format {suffix or '(no suffix)'!r}; "
                         f"supported: {', '.join(SUPPORTED_SUFFIXES)}")
    return suffix


def _upscale(frames: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling: every pixel becomes a scale x scale block, so edges stay sharp."""
    return repeat(frames, "t h w c -> t (h sh) (w sw) c", sh=scale, sw=scale)


def _pad_to_macro_blocks(frames: np.ndarray) -> np.ndarray:
    _, height, width, _ = frames.shape
    pad_h = -height % MP4_MACRO_BLOCK
    pad_w = -width % MP4_MACRO_BLOCK
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def encode_video(video, *, format: str = "mp4", fps: int = 8, scale: int = 1) -> bytes:
    """Encode one video (C, T, H, W) as the bytes of an .mp4 or .gif file, in memory.

    ``scale`` upscales with nearest neighbour (a 32x32 video is unreadably small on screen).
    """
    if not isinstance(format, str):
        raise TypeError(f"format must be one of {', '.join(s[1:] for s in SUPPORTED_SUFFIXES)}, got {format!r}")
    suffix = _format_from_suffix("." + format.lstrip("."))
    check_positive_int(fps, "fps")
    check_positive_int(scale, "scale")
    frames = _upscale(video_to_frames(_only_video(to_rgb_batch(video), "video")), scale)

    if suffix == ".gif":
        # GIF delays are whole centiseconds; Pillow also merges identical consecutive frames into one
        # longer frame, so the fps is recorded in the file's comment for read_video to undo that.
        return iio.imwrite("<bytes>", frames, extension=".gif", plugin="pillow",
                           duration=1000 / fps, loop=0, comment=f"minivdm fps={fps}".encode())

    # We pad to 16 ourselves so that imageio never rescales the frames (it would warn and blur them).
    frames = _pad_to_macro_blocks(frames)
    return iio.imwrite("<bytes>", frames, extension=".mp4", plugin="FFMPEG", fps=fps,
                       codec="libx264", pixelformat="yuv420p", macro_block_size=MP4_MACRO_BLOCK,
                       quality=None, ffmpeg_params=["-crf", str(MP4_CRF)])


def write_video(path, video, fps: int = 8, scale: int = 1) -> Path:
    """Write one video (C, T, H, W) in [-1, 1] to ``path`` (.mp4 or .gif, picked by the suffix).

    The file is written next to its destination under a temporary name and then renamed, so an
    interrupted write never leaves a half-written video behind. Parent folders are created.
    Returns the path written.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or pathlib.Path ending in {' or '.join(SUPPORTED_SUFFIXES)}, "
                        f"got {type(path).__name__}")
    path = Path(path)
    suffix = _format_from_suffix(path.suffix)
    data = encode_video(video, format=suffix, fps=fps, scale=scale)

    return write_bytes_atomically(path, data)


def gif_timing(image: Image.Image) -> tuple[float, list[int]]:
    """(frame period in ms, delay of every stored frame in ms) of an open GIF, without decoding pixels.

    Pillow merges identical consecutive frames into one longer frame, so a stored frame stands for
    round(delay / period) frames of the video.
    """
    delays = [frame.info.get("duration", 0) for frame in ImageSequence.Iterator(image)]
    recorded = re.fullmatch(rb"minivdm fps=(\d+)", image.info.get("comment", b""))
    if recorded:
        return 1000 / int(recorded.group(1)), delays
    # a GIF from elsewhere: its shortest delay is one frame
    return min((delay for delay in delays if delay > 0), default=100), delays


def _read_gif_frames(path: Path) -> np.ndarray:
    """GIF frames on a constant frame rate: each stored frame repeated (its delay / frame period) times."""
    with Image.open(path) as image:
        period, delays = gif_timing(image)
        frames = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)]
    counts = [max(1, round(delay / period)) for delay in delays]
    return np.repeat(np.stack(frames), counts, axis=0)


class UnreadableVideoError(ValueError):
    """A video file that exists but cannot be decoded (truncated, empty, or not a video)."""


def _decoder_reason(error: BaseException) -> str:
    """The line of ffmpeg's (or Pillow's) report that says what went wrong, without its version banner."""
    lines = [re.sub(r"^\[[^\]]*\]\s*", "", line).strip() for line in str(error).splitlines()]
    errors = [line for line in lines if re.search(r"error|invalid|not found|no such|does not contain", line, re.I)]
    return (errors or [line for line in lines if line][-1:] or [type(error).__name__])[0]


def unreadable_video(path: Path, error: BaseException, frames_read: int | None = None) -> UnreadableVideoError:
    """The error a user sees for a video that cannot be decoded: the file, the decoder's reason, what to do."""
    where = f" after {frames_read} frames" if frames_read else ""
    return UnreadableVideoError(
        f"cannot decode {path} as a {path.suffix.lower()} video{where} ({_decoder_reason(error)}): the file is "
        f"truncated, empty or not a video. Re-encode it (e.g. `ffmpeg -i {path.name} -pix_fmt yuv420p fixed.mp4`) "
        f"or leave it out")


def check_video_path(path, suffixes: tuple[str, ...]) -> Path:
    """A path to an existing video file with one of ``suffixes`` (not a folder), as a Path."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or pathlib.Path ending in {' or '.join(suffixes)}, "
                        f"got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; expected a video file ({', '.join(suffixes)})")
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"unsupported video format {path.suffix or '(no suffix)'!r} of {path}; "
                         f"supported: {', '.join(suffixes)}")
    if not path.is_file():
        raise FileNotFoundError(f"no video file at {path}")
    return path


def read_video(path) -> torch.Tensor:
    """Read an .mp4 or .gif file into a float32 video (C, T, H, W) in [-1, 1] (C = 3)."""
    path = check_video_path(path, SUPPORTED_SUFFIXES)
    try:
        frames = _read_gif_frames(path) if path.suffix.lower() == ".gif" else iio.imread(path, index=None, plugin="FFMPEG")
    except (OSError, ValueError, RuntimeError) as error:  # ffmpeg and Pillow report broken files as these
        raise unreadable_video(path, error) from None
    if len(frames) == 0:
        raise UnreadableVideoError(f"{path} holds no frames")
    return frames_to_video(frames)
