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

# Checkpoints in the diffusers layout (safetensors), loaded into minivdm modules by explicit key maps.
from minivdm.io.checkpoints import (  # noqa: E402
    CheckpointMismatchError,
    LoadReport,
    count_parameters,
    find_weights_file,
    load_into,
    map_keys,
    read_component,
    read_model_index,
    read_state_dict,
    save_component,
)

__all__ += [
    "CheckpointMismatchError",
    "LoadReport",
    "count_parameters",
    "find_weights_file",
    "load_into",
    "map_keys",
    "read_component",
    "read_model_index",
    "read_state_dict",
    "save_component",
]
