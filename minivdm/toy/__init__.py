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

from minivdm.io.checkpoints import load_into, read_safetensors, read_safetensors_metadata

DATA_DIR = Path(__file__).resolve().parent.parent.parent / "data"


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a shipped safetensors file (the command that made it, configs, training figures)."""
    return read_safetensors_metadata(path)


def load_trained_layers(module, path: str | Path, expected: set[str], what: str) -> None:
    """Load the file at ``path`` into ``module`` (the rest of its weights kept) when it holds exactly the parameter
    names ``expected``, ``what`` a shipped model trains; refuse any other file by naming what is missing or extra."""
    state = read_safetensors(path)
    if set(state) != set(expected):
        raise ValueError(f"{path} does not hold exactly {what}: missing {sorted(set(expected) - set(state))[:5]}, "
                         f"unexpected {sorted(set(state) - set(expected))[:5]}")
    load_into(module, state, strict=False)
