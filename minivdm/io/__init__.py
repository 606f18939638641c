"""Reading and writing what minivdm makes: video files (.mp4, .gif)."""

from minivdm.io.video_files import (
    encode_video,
    frames_to_video,
    read_video,
    to_rgb_batch,
    video_to_frames,
    write_video,
)

__all__ = [
    "encode_video",
    "frames_to_video",
    "read_video",
    "to_rgb_batch",
    "video_to_frames",
    "write_video",
]
