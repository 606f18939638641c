"""The toy text-to-video VDM recipe: it writes a folder that loads back, and its batches are VDM's
joint video-image batches (clips followed by independent captioned images)."""

import pytest
import torch

from minivdm.__main__ import main
from minivdm.toy_vdm import TOY_VDM_FRAMES, TOY_VDM_IMAGES_PER_CLIP, load_toy_vdm, sample_toy_videos


def test_train_vdm_command_writes_a_folder_that_loads_and_samples(tmp_path):
    out = tmp_path / "vdm"
    assert main(["train-vdm", "--out", str(out), "--steps", "2", "--dataset-size", "16", "--checkpoint-dir", str(tmp_path / "ck")]) == 0
    assert (out / "vdm.safetensors").exists() and (out / "text_encoder").is_dir() and (out / "tokenizer").is_dir()
    model, tokenizer = load_toy_vdm(out)
    from minivdm.tiny_models import read_metadata

    assert read_metadata(out / "vdm.safetensors")["command"].startswith("python -m minivdm train-vdm")
    videos = sample_toy_videos(model, tokenizer, ["a red circle moving left", "a blue square"], num_steps=2)
    assert videos.shape == (2, 3, TOY_VDM_FRAMES, 32, 32) and videos.abs().max() <= 1
    with pytest.raises(FileNotFoundError, match="train-vdm"):
        load_toy_vdm(tmp_path / "nothing")


def test_a_training_batch_is_clips_then_captioned_still_images(monkeypatch):
    import minivdm.toy_vdm as toy_vdm

    captured = {}

    def capture(model, next_batch, loss_fn, config, checkpoint_dir):
        batch = next_batch(0, torch.Generator().manual_seed(0))
        captured["batch"] = batch
        captured["loss"] = loss_fn(model, batch, None)
        raise KeyboardInterrupt

    monkeypatch.setattr(toy_vdm, "train", capture)
    with pytest.raises(KeyboardInterrupt):
        toy_vdm.train_toy_vdm("unused", dataset_size=8, batch_size=4)
    x, ids, t, noise = captured["batch"]
    frames, extra = TOY_VDM_FRAMES, TOY_VDM_IMAGES_PER_CLIP
    assert x.shape == noise.shape == (4, 3, frames + extra, 32, 32) and t.shape == (4,)
    clip_part, image_part = x[:, :, :frames], x[:, :, frames:]
    # the clip moves or not, but the appended images are unrelated stills: no image repeats a clip frame
    for b in range(4):
        for i in range(extra):
            assert not any(torch.equal(image_part[b, :, i], clip_part[b, :, f]) for f in range(frames))
    # one caption for all the frames of a clip, one caption per appended image
    assert all(torch.equal(ids[b, 0], ids[b, f]) for b in range(4) for f in range(frames))
    assert torch.isfinite(captured["loss"]) and captured["loss"] > 0
