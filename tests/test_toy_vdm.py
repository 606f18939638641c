"""The toy text-to-video VDM recipe: it writes a folder that loads back, and its batches are VDM's
joint video-image batches (clips followed by independent captioned images)."""

import json

import pytest
import torch

from minivdm.__main__ import main
from minivdm.toy.text_to_image import TEXT_TO_IMAGE_DIR
from minivdm.toy.vdm import (TEXT_ENCODER_PARAMETERS, TOY_VDM_FRAMES, TOY_VDM_IMAGES_PER_CLIP, WORD_EMBEDDINGS,
                             load_toy_vdm, sample_toy_videos)

RELATIVE_TABLES = ("bias_b.table", "key_offsets_a.table", "value_offsets_r.table")  # TemporalAttention's b, a, r


def test_train_vdm_command_writes_a_folder_that_loads_and_samples(tmp_path):
    out = tmp_path / "vdm"
    assert main(["train-vdm", "--out", str(out), "--steps", "2", "--dataset-size", "16", "--checkpoint-dir", str(tmp_path / "ck")]) == 0
    assert (out / "vdm.safetensors").exists() and (out / "text_encoder").is_dir() and (out / "tokenizer").is_dir()
    model, tokenizer = load_toy_vdm(out)
    from minivdm.toy import read_metadata

    metadata = read_metadata(out / "vdm.safetensors")
    assert metadata["command"].startswith("python -m minivdm train-vdm")
    # the first stage is inflated from the shipped text-to-image model: its whole recipe is recorded
    image_recipe = json.loads((TEXT_TO_IMAGE_DIR / "unet" / "config.json").read_text())["_minivdm"]
    assert json.loads(metadata["init_from"]) == [*image_recipe["init_from"], image_recipe["command"]]
    videos = sample_toy_videos(model, tokenizer, ["a red circle moving left", "a blue square"], num_steps=2)
    assert videos.shape == (2, 3, TOY_VDM_FRAMES, 32, 32) and videos.abs().max() <= 1
    with pytest.raises(FileNotFoundError, match="train-vdm"):
        load_toy_vdm(tmp_path / "nothing")

    # a later stage starts from that folder; its metadata carries the whole chain and its own settings
    later = tmp_path / "later"
    assert main(["train-vdm", "--out", str(later), "--continue-from", str(out), "--steps", "1", "--seed", "3",
                 "--learning-rate", "1e-4", "--temporal-lr-factor", "10", "--text-lr-factor", "5",
                 "--word-lr-factor", "20", "--dataset-size", "16", "--temporal-text-modulation",
                 "--high-noise-fraction", "0.5", "--high-noise-band", "0.9", "1.0"]) == 0
    later_metadata = read_metadata(later / "vdm.safetensors")
    # the modulation was added to the loaded model, and the saved config says so: the folder loads back with it
    later_model, _ = load_toy_vdm(later)
    assert later_model.vdm.config.temporal_text_modulation and not model.vdm.config.temporal_text_modulation
    assert later_model.vdm.mid_block.temporal_attentions[0].modulation is not None
    assert later_metadata["high_noise"] == "0.5 of t in [0.9, 1.0]"
    assert json.loads(later_metadata["init_from"]) == [*json.loads(metadata["init_from"]), metadata["command"]]
    assert json.loads(later_metadata["train_config"])["learning_rate"] == 1e-4
    assert json.loads(later_metadata["train_config"])["seed"] == 3
    # the word embeddings come before the rest of the text encoder: the first matching name part sets the factor
    assert json.loads(later_metadata["train_config"])["lr_multipliers"] == [
        [".temporal_attentions.", 10.0], ["text_embedding.", 10.0], [WORD_EMBEDDINGS, 20.0], [TEXT_ENCODER_PARAMETERS, 5.0]]
    # the name parts pick the text encoder's parameters, all of them and nothing else, and its word table alone
    names = [name for name, _ in model.named_parameters()]
    assert [name for name in names if TEXT_ENCODER_PARAMETERS in name] == \
        ["text_encoder." + name for name, _ in model.text_encoder.named_parameters()]
    assert [name for name in names if WORD_EMBEDDINGS in name] == ["text_encoder.embeddings.token_embedding.weight"]
    # --temporal-lr-factor: the layers the image model lacks (temporal attention and the pooled-text projection)
    assert [name for name in names if "text_embedding." in name] == ["vdm.text_embedding.weight", "vdm.text_embedding.bias"]
    with pytest.raises(SystemExit):  # one starting point only
        main(["train-vdm", "--out", str(later), "--continue-from", str(out), "--anneal-from", str(out)])


def test_first_stage_starts_from_the_image_model_and_learns_only_time_at_first(monkeypatch):
    import minivdm.toy.vdm as toy_vdm
    from minivdm.toy.text_to_image import load_text_to_image

    captured = {}

    def capture(model, next_batch, loss_fn, config, checkpoint_dir, **options):
        captured["model"] = model
        raise KeyboardInterrupt

    monkeypatch.setattr(toy_vdm, "train", capture)
    with pytest.raises(KeyboardInterrupt):
        toy_vdm.train_toy_vdm("unused", dataset_size=8)
    video_model = captured["model"]
    image_model, _ = load_text_to_image()
    video_state = video_model.vdm.state_dict()
    for name, weight in image_model.unet.state_dict().items():
        assert torch.equal(video_state[name], weight), name
    text_state = video_model.text_encoder.state_dict()
    assert all(torch.equal(text_state[name], w) for name, w in image_model.text_encoder.state_dict().items())
    video_only = [name for name in video_state if name not in image_model.unet.state_dict()]
    assert video_only and all(".temporal_attentions." in name or name.startswith("text_embedding.") for name in video_only)
    assert all(not video_state[name].any() for name in video_only
               if name.endswith(RELATIVE_TABLES) or "_embedding." in name)
    with pytest.raises(KeyboardInterrupt):  # the option to start from random weights
        toy_vdm.train_toy_vdm("unused", dataset_size=8, image_model=None)
    assert not torch.equal(captured["model"].vdm.conv_in.weight, image_model.unet.conv_in.weight)


def test_a_training_batch_is_clips_then_captioned_still_images(monkeypatch):
    import minivdm.toy.vdm as toy_vdm

    captured = {}

    def capture(model, next_batch, loss_fn, config, checkpoint_dir, **options):
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

    # --high-noise-fraction: that fraction of the clips draws t in the band (here all of them)
    with pytest.raises(KeyboardInterrupt):
        toy_vdm.train_toy_vdm("unused", dataset_size=8, batch_size=64, high_noise_fraction=1.0, high_noise_band=(0.9, 0.95))
    t = captured["batch"][2]
    assert t.min() >= 0.9 and t.max() <= 0.95 and t.std() > 0.01
    with pytest.raises(ValueError, match="high_noise_band"):
        toy_vdm.train_toy_vdm("unused", dataset_size=8, high_noise_fraction=0.5, high_noise_band=(0.9, 0.8))


def test_adding_the_text_modulation_keeps_the_function():
    from minivdm.configs.vdm import TINY_VDM
    from minivdm.models.vdm_unet import VDMUNet
    from minivdm.toy.vdm import _with_temporal_text_modulation

    torch.manual_seed(0)
    model = VDMUNet(TINY_VDM).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.startswith("conv_out") or "attention.to_out" in name or name.endswith(RELATIVE_TABLES):
                parameter.normal_(0.0, 0.3)
    grown = _with_temporal_text_modulation(model).eval()
    assert grown.config.temporal_text_modulation
    z_t, context = torch.randn(1, 3, 4, 32, 32), torch.randn(1, 16, 64)
    with torch.no_grad():
        torch.testing.assert_close(grown(z_t, torch.tensor([1.0]), context), model(z_t, torch.tensor([1.0]), context))
        grown.mid_block.temporal_attentions[0].modulation.weight.normal_()
        assert (grown(z_t, torch.tensor([1.0]), context) - model(z_t, torch.tensor([1.0]), context)).abs().max() > 1e-4


def _renamed(key: str, names: dict[str, str]) -> str:
    """``key`` with its ending replaced as ``names`` says (new ending -> old ending)."""
    for new, old in names.items():
        if key.endswith("." + new):
            return key[:-len(new)] + old
    return key


def test_weights_with_the_earlier_names_of_the_relative_tables_load_as_the_same_function():
    from minivdm.configs.vdm import TINY_VDM
    from minivdm.models.vdm_unet import VDMUNet
    from minivdm.toy.vdm import _upgrade_older_weights

    torch.manual_seed(0)
    model = VDMUNet(TINY_VDM).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if (name.startswith(("conv_out", "text_embedding.")) or name.endswith(RELATIVE_TABLES)
                    or "attention.to_out" in name):
                parameter.normal_(0.0, 0.3)
    # before the tables were named after the equation's b, a and r (the shipped toy VDM until then)
    earlier_names = {"bias_b.table": "relative_position.relative_attention_bias",
                     "key_offsets_a.table": "relative_keys.embedding",
                     "value_offsets_r.table": "relative_values.embedding"}
    older = {_renamed(key, earlier_names): value for key, value in model.state_dict().items()}
    assert sum(key.endswith(tuple(earlier_names.values())) for key in older) == 3 * 7  # 7 temporal attentions
    loaded = VDMUNet(TINY_VDM).eval()
    with pytest.raises(RuntimeError, match="relative_attention_bias"):  # the new model does not take the old names
        loaded.load_state_dict(older)
    loaded.load_state_dict(_upgrade_older_weights(older, loaded), strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    z_t, context = torch.randn(1, 3, 4, 32, 32), torch.randn(1, 16, 64)
    with torch.no_grad():
        assert torch.equal(loaded(z_t, torch.tensor([0.7]), context), model(z_t, torch.tensor([0.7]), context))


def test_the_shipped_toy_vdm_uses_the_names_of_the_equation():
    from safetensors import safe_open

    from minivdm.toy.vdm import TOY_VDM_DIR

    with safe_open(TOY_VDM_DIR / "vdm.safetensors", "pt") as weights:
        keys = list(weights.keys())
    assert not [key for key in keys if "relative_" in key]
    assert sum(key.endswith(RELATIVE_TABLES) for key in keys) == 3 * 7


def test_weights_from_before_the_key_embeddings_and_pooled_text_load_as_the_same_function():
    from minivdm.configs.vdm import TINY_VDM
    from minivdm.models.vdm_unet import VDMUNet
    from minivdm.toy.vdm import _upgrade_older_weights

    torch.manual_seed(0)
    model = VDMUNet(TINY_VDM).eval()
    with torch.no_grad():
        model.conv_out.weight.normal_(0.0, 0.3)
        for name, parameter in model.named_parameters():
            if "value_offsets_r." in name or "bias_b." in name or "attention.to_out" in name:
                parameter.normal_(0.0, 0.3)
    # the layout of the toy VDM's stages 1-3: b and r under their first names; no key offsets a or W_c
    first_names = {"bias_b.table": "relative_position.relative_attention_bias",
                   "value_offsets_r.table": "relative_values.relative_value_embedding"}
    older = {_renamed(key, first_names): value for key, value in model.state_dict().items()
             if "key_offsets_a." not in key and not key.startswith("text_embedding.")}
    assert sum("relative_value_embedding" in key for key in older) == 7
    loaded = VDMUNet(TINY_VDM).eval()
    loaded.load_state_dict(_upgrade_older_weights(older, loaded), strict=True)
    z_t, context = torch.randn(1, 3, 4, 32, 32), torch.randn(1, 16, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(z_t, torch.tensor([1.0]), context), model(z_t, torch.tensor([1.0]), context))
    with pytest.raises(RuntimeError, match="Missing key"):  # anything else missing is still an error
        loaded.load_state_dict(_upgrade_older_weights({k: v for k, v in older.items() if "conv_in" not in k}, loaded))
