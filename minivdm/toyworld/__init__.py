"""The toy world: seeded captioned videos with exact ground truth, an oracle that reads them back,
and raw "footage" (clips joined by cuts and fades) for data-curation chapters."""

from minivdm.toyworld.world import (
    BACKGROUND,
    MOTIONS,
    PALETTE,
    SHAPES,
    ToyBatch,
    ToyObject,
    ToyWorldConfig,
    background_frames,
    caption_for,
    generate,
    generate_images,
    object_masks,
    render,
    sample_objects,
    visible_masks,
)
from minivdm.toyworld.oracle import SeenObject, caption_video, parse_caption, read_video, score_videos
from minivdm.toyworld.footage import Footage, FootageClip, make_footage

__all__ = [
    "BACKGROUND", "MOTIONS", "PALETTE", "SHAPES", "ToyBatch", "ToyObject", "ToyWorldConfig",
    "background_frames", "caption_for", "generate", "generate_images", "object_masks", "render",
    "sample_objects", "visible_masks",
    "SeenObject", "caption_video", "parse_caption", "read_video", "score_videos",
    "Footage", "FootageClip", "make_footage",
]
