"""The curation pipeline of Stable Video Diffusion: one video in, scored clips with keep/drop decisions out.

Blattmann et al. 2023, "Stable Video Diffusion: Scaling Latent Video Diffusion Models to Large Datasets",
arXiv:2311.15127, Sec. 3.1 and App. C. Long raw videos become training clips in three steps:

    1. cut detection (a cascade over frame rates: hard cuts and fades) splits the video into clips;
    2. on frames sampled at 2 fps, the mean optical-flow magnitude scores motion: near-static clips go;
    3. on the first, middle and last frame: the area covered by rendered text (text-heavy clips go), the
       CLIP aesthetic score (ugly clips go), a caption from a pluggable captioner and the CLIP similarity
       between the frames and that caption (clips their caption does not describe go).

A clip is kept when it passes every filter that ran; its record lists the filters it failed, in that order.

The video is streamed twice: the first pass keeps only each frame's small cut-detection features, the
second only the sampled frames of the clip being read, which are scored and freed when the clip ends.
Memory is bounded by one clip's 2-fps frames, however long the file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from minivdm.curation.clip_scores import ClipScorer
from minivdm.curation.cuts import CutDetector, clips_between
from minivdm.curation.motion import MOTION_SAMPLE_FPS, STATIC_MOTION_THRESHOLD, motion_score, sample_frame_indices
from minivdm.curation.text_area import TEXT_AREA_THRESHOLD, clip_text_area
from minivdm.validation import check_tensor

# Frames are analysed at most this many pixels on their longer side: the filters look at layout, motion
# and colour, which survive the downscaling, and the cost stops growing with the file's resolution.
ANALYSIS_MAX_SIDE = 128
FILTER_ORDER = ("motion", "text", "aesthetic", "caption")


@dataclass(frozen=True)
class CurationConfig:
    """Thresholds of the filters; a threshold of None switches that filter off."""

    min_clip_frames: int = 4
    min_motion: float | None = STATIC_MOTION_THRESHOLD
    max_text_area: float | None = TEXT_AREA_THRESHOLD
    min_aesthetic: float | None = None          # needs a ClipScorer
    min_text_similarity: float | None = None    # needs a ClipScorer and a captioner
    analysis_max_side: int = ANALYSIS_MAX_SIDE


def toy_world_config() -> CurationConfig:
    """Thresholds tuned on the toy world's footage, with the shipped toy CLIP's aesthetic and caption filters."""
    from minivdm.toy.clip import AESTHETIC_THRESHOLD, TEXT_SIMILARITY_THRESHOLD

    return CurationConfig(min_aesthetic=AESTHETIC_THRESHOLD, min_text_similarity=TEXT_SIMILARITY_THRESHOLD)


@dataclass
class ClipRecord:
    """One clip of a source video: where it is, every score, and the decision."""

    source: str
    start: int                        # first frame
    end: int                          # one past the last frame
    fps: float
    motion: float | None = None       # mean flow magnitude at 2 fps (units of minivdm.curation.motion)
    text_area: float | None = None    # fraction of the frame covered by text, largest of the key frames
    aesthetic: float | None = None
    caption: str | None = None
    text_similarity: float | None = None
    keep: bool = True
    failed: list[str] = field(default_factory=list)   # names from FILTER_ORDER

    @property
    def start_seconds(self) -> float:
        return self.start / self.fps

    @property
    def end_seconds(self) -> float:
        return self.end / self.fps

    def as_json(self) -> dict:
        """A JSON-ready dict; floats rounded to 6 digits so that reruns write identical lines."""
        record = asdict(self)
        record["start_seconds"], record["end_seconds"] = self.start_seconds, self.end_seconds
        return {key: round(value, 6) if isinstance(value, float) else value for key, value in record.items()}


def analysis_frame(frame: Tensor, max_side: int = ANALYSIS_MAX_SIDE) -> Tensor:
    """(3, H, W) in [-1, 1], area-downscaled so that its longer side is at most ``max_side`` (never upscaled)."""
    frame = check_tensor(frame, "frame", ndim=3, layout="(3, H, W)")
    if frame.shape[0] != 3:
        raise ValueError(f"frame must be (3, H, W) RGB, got {tuple(frame.shape)}")
    height, width = frame.shape[-2:]
    scale = max_side / max(height, width)
    if scale >= 1:
        return frame.float()
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return F.interpolate(frame[None].float(), size=size, mode="area")[0]


def decide(record: ClipRecord, config: CurationConfig) -> ClipRecord:
    """``record`` with keep / failed set by the thresholds of ``config`` (scores are not recomputed, so the
    tutorial's sliders can re-decide every clip at once)."""
    failed = []
    if config.min_motion is not None and record.motion is not None and record.motion < config.min_motion:
        failed.append("motion")
    if config.max_text_area is not None and record.text_area is not None and record.text_area > config.max_text_area:
        failed.append("text")
    if config.min_aesthetic is not None and record.aesthetic is not None and record.aesthetic < config.min_aesthetic:
        failed.append("aesthetic")
    if (config.min_text_similarity is not None and record.text_similarity is not None
            and record.text_similarity < config.min_text_similarity):
        failed.append("caption")
    return replace(record, failed=failed, keep=not failed)


def score_clip(record: ClipRecord, motion_frames: Tensor, key_frames: Tensor, *, scorer: ClipScorer | None,
               captioner: Callable[[Tensor], str] | None, config: CurationConfig) -> ClipRecord:
    """Fill in the scores of ``record`` from its 2-fps frames (C, T, H, W) and key frames (C, 3, H, W)."""
    if motion_frames.shape[1] >= 2:
        record.motion = motion_score(motion_frames, MOTION_SAMPLE_FPS)
    record.text_area = clip_text_area(key_frames)
    frames = key_frames.permute(1, 0, 2, 3)  # (3 key frames, C, H, W)
    if scorer is not None:
        record.aesthetic = scorer.aesthetic(frames)
    if captioner is not None:
        record.caption = captioner(key_frames)
        if scorer is not None:
            record.text_similarity = scorer.text_similarity(frames, record.caption)
    return decide(record, config)


def _check_fps(fps) -> float:
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number of frames per second, got {fps!r}")
    return float(fps)


def curate_stream(open_frames: Callable[[], Iterable[Tensor]], fps: float, *, source: str = "",
                  scorer: ClipScorer | None = None, captioner: Callable[[Tensor], str] | None = None,
                  config: CurationConfig = CurationConfig()) -> list[ClipRecord]:
    """Curate a video given as a way to stream its frames: ``open_frames()`` returns a fresh iterable of
    (3, H, W) frames in [-1, 1] each time it is called (it is called twice). Returns one record per clip."""
    fps = _check_fps(fps)
    if (config.min_aesthetic is not None or config.min_text_similarity is not None) and scorer is None:
        raise ValueError("the aesthetic and caption filters need a ClipScorer: pass scorer=... "
                         "or set min_aesthetic=None and min_text_similarity=None in the config")

    # Pass 1: cut detection on small per-frame features.
    detector = CutDetector(fps)
    num_frames = 0
    for frame in open_frames():
        detector.push(analysis_frame(frame, config.analysis_max_side))
        num_frames += 1
    spans = clips_between(num_frames, detector.finish(), config.min_clip_frames)

    # Pass 2: per clip, keep only the frames its filters read; score it when its last frame has gone by.
    records = []
    clip_index = 0
    wanted: dict[int, Tensor] = {}
    motion_indices: list[int] = []
    key_indices: list[int] = []

    def begin(span):
        nonlocal motion_indices, key_indices
        start, end = span
        motion_indices = sample_frame_indices(start, end, fps, MOTION_SAMPLE_FPS)
        key_indices = [start, (start + end - 1) // 2, end - 1]

    if spans:
        begin(spans[0])
    for index, frame in enumerate(open_frames()):
        if clip_index >= len(spans):
            break
        start, end = spans[clip_index]
        if index in motion_indices or index in key_indices:
            wanted[index] = analysis_frame(frame, config.analysis_max_side)
        if index == end - 1:
            record = ClipRecord(source=source, start=start, end=end, fps=fps)
            motion_frames = torch.stack([wanted[i] for i in motion_indices], dim=1)
            key_frames = torch.stack([wanted[i] for i in key_indices], dim=1)
            records.append(score_clip(record, motion_frames, key_frames, scorer=scorer, captioner=captioner,
                                      config=config))
            wanted.clear()
            clip_index += 1
            if clip_index < len(spans):
                begin(spans[clip_index])
    if clip_index < len(spans):
        raise RuntimeError(f"the second pass over {source or 'the video'} ended at clip {clip_index} of {len(spans)}: "
                           "the stream gave fewer frames than the first time")
    return records


def curate_video(video: Tensor, fps: float, **options) -> list[ClipRecord]:
    """Curate a video held in memory, (C, T, H, W) in [-1, 1]; options as for ``curate_stream``."""
    video = check_tensor(video, "video", ndim=4, layout="(C, T, H, W)")
    if video.shape[0] != 3:
        raise ValueError(f"video must be (C, T, H, W) with C = 3, got {tuple(video.shape)}")
    return curate_stream(lambda: video.unbind(dim=1), fps, **options)
