"""The tiny models shipped in ``data/``, one module each: its recipe (how it was trained), loader,
sampling and oracle evaluation.

    denoisers        chapter 1: two pixel-space denoisers of toy-world frames (eps and v)
    text_to_image    chapter 2: the toy text-to-image model (SD-layout U-Net + toy CLIP text encoder)
    vdm              chapters 3-4: the toy text-to-video VDM, inflated from the text-to-image model
    vdm_motion_word  chapter 3: who picks the toy VDM's motion direction, the prompt or the noise
    clip             chapter 5: the toy CLIP and its aesthetic head for data curation
    (chapters 6-11: text2video_zero, controlnet, controlvideo, tune_a_video, temporal_layers,
    frame_interpolation, gen1, dit)
    image_to_video   chapter 12: SVD's conditioning at toy size (first frame + speed)

Every shipped checkpoint records the exact command, the model config and the training config that
produced it (safetensors metadata, or ``_minivdm`` in a diffusers config.json), and each
``data/<model>/`` folder has a model card (``README.md``).
"""

from __future__ import annotations

from pathlib import Path

from minivdm.io.checkpoints import read_safetensors_metadata

DATA_DIR = Path(__file__).resolve().parent.parent.parent / "data"


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a shipped safetensors file (the command that made it, configs, training figures)."""
    return read_safetensors_metadata(path)
