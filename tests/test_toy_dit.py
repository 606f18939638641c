"""The toy DiT (chapter 11): one model for every size (the same weights take 8 and 16 frames, 32x32 and 32x48), the
caption reaches the video through joint attention, adaLN-Zero starts as the identity, the recipe trains, saves,
resumes and loads, and the toy world draws non-square clips the oracle reads."""

import dataclasses
import json

import pytest
import torch

from minivdm.text import build_toy_tokenizer, encode_captions
from minivdm.toy import read_metadata
from minivdm.toy.dit import (TOY_DIT, TOY_DIT_ANNEAL, TOY_DIT_SIZES, TOY_DIT_TRAIN, build_toy_dit, held_out_prompts, load_toy_dit,
                             sample_toy_dit_videos, toy_dit_clips, train_toy_dit)
from minivdm.toyworld.oracle import read_video, score_videos


def randomised(model):
    """Every linear layer and embedding random (adaLN-Zero's zeros too), so that every path of the model matters;
    LayerNorms keep their unit scale (random ones would shrink the attention logits to nothing)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name.replace("norm1.linear", "").replace("norm2.linear", "").replace("norm_out.linear", ""):
                parameter.normal_(0.0, 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def tokenizer():
    return build_toy_tokenizer()


def ids(tokenizer, captions):
    return encode_captions(tokenizer, captions)[0]


def test_untrained_toy_dit_predicts_zero_at_every_size(tokenizer):
    """adaLN-Zero: every gate and the output layer start at zero, so the fresh model is 0 whatever the size."""
    model = build_toy_dit().eval()
    for frames, height, width in TOY_DIT_SIZES:
        z = torch.randn(2, 3, frames, height, width)
        out = model(z, torch.tensor([0.3, 0.9]), ids(tokenizer, ["a red circle moving left", "a blue square"]))
        assert out.shape == z.shape and torch.equal(out, torch.zeros_like(out))


def test_one_model_takes_every_size_and_tokens_see_across_frames(tokenizer):
    model = randomised(build_toy_dit())
    text = ids(tokenizer, ["a red circle moving left"])
    for frames, height, width in TOY_DIT_SIZES:
        z = torch.randn(1, 3, frames, height, width, generator=torch.Generator().manual_seed(frames + width))
        base = model(z, torch.tensor([0.5]), text)
        changed = z.clone()
        changed[:, :, -1] += 1.0  # only the last frame
        moved = model(changed, torch.tensor([0.5]), text)
        # full 3D attention: a change in the last frame reaches the first
        assert (moved[:, :, 0] - base[:, :, 0]).abs().max() > 1e-4


def test_the_caption_and_its_motion_word_reach_the_video_tokens(tokenizer):
    model = randomised(build_toy_dit())
    z = torch.randn(1, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1))
    left = model(z, torch.tensor([0.5]), ids(tokenizer, ["a red circle moving left"]))
    right = model(z, torch.tensor([0.5]), ids(tokenizer, ["a red circle moving right"]))
    assert (left - right).abs().max() > 1e-3


def test_padding_tokens_of_the_caption_change_nothing(tokenizer):
    """Padding is masked out of the joint attention: the same caption with its padding's embeddings altered gives the
    same prediction."""
    model = randomised(build_toy_dit())
    z = torch.randn(1, 3, 8, 32, 32, generator=torch.Generator().manual_seed(2))
    caption = ids(tokenizer, ["a red circle moving left"])
    before = model(z, torch.tensor([0.5]), caption)
    with torch.no_grad():
        pad = model.text_encoder.config.pad_token_id
        model.text_encoder.get_input_embeddings().weight[pad] += 5.0
    after = model(z, torch.tensor([0.5]), caption)
    assert torch.allclose(before, after, atol=1e-5)


def test_sizes_the_patches_do_not_divide_are_refused(tokenizer):
    model = build_toy_dit()
    with pytest.raises(ValueError, match=r"T \(frames\) = 7 is not a multiple of its patch size 2"):
        model(torch.zeros(1, 3, 7, 32, 32), torch.tensor([0.5]), ids(tokenizer, ["a red circle"]))
    with pytest.raises(ValueError, match=r"W = 30 is not a multiple of its patch size 4"):
        sample_toy_dit_videos(model, tokenizer, ["a red circle"], size=(8, 32, 30), num_steps=1)


def test_the_toy_world_draws_32x48_clips_that_the_oracle_reads():
    clips = toy_dit_clips((16, 32, 48), 30, seed=3)
    assert clips.video.shape == (30, 3, 16, 32, 48)
    assert score_videos(clips.video, clips.captions)["caption_accuracy"] == 1.0
    # objects move over the whole width: some centre lies beyond x = 32
    assert (clips.positions[..., 1].nan_to_num(0) > 33).any()
    assert held_out_prompts(5) == held_out_prompts(5) and len(set(held_out_prompts(40))) > 20


def test_recipe_trains_saves_resumes_and_loads(tmp_path, tokenizer):
    config = dataclasses.replace(TOY_DIT_TRAIN, steps=4, checkpoint_every=2, log_every=2, warmup_steps=1)
    out = train_toy_dit(tmp_path / "dit", config=config, dataset_size=12, checkpoint_dir=tmp_path / "ck",
                        command="test", progress=False)
    model, loaded_tokenizer = load_toy_dit(out)
    assert model.dit.config == dataclasses.replace(TOY_DIT)
    state = torch.load(tmp_path / "ck" / "last.pt", weights_only=True)
    assert state["step"] == 4
    # the shipped loader refuses a folder without weights by name
    with pytest.raises(FileNotFoundError, match="no toy DiT at"):
        load_toy_dit(tmp_path / "nothing")
    # after 4 steps the model is no longer the zero function, and samples at two sizes come out in [-1, 1]
    for size in ((8, 32, 32), (16, 32, 48)):
        video = sample_toy_dit_videos(model, loaded_tokenizer, ["a red circle moving left"], size=size, num_steps=2)
        assert video.shape == (1, 3, *size) and video.abs().max() <= 1
    assert len(read_video(video)) == 1
    # a second stage (the learning rate annealed) starts from the folder's weights and records its command
    anneal = dataclasses.replace(TOY_DIT_ANNEAL, steps=2, checkpoint_every=1, log_every=1, warmup_steps=1)
    second = train_toy_dit(tmp_path / "annealed", config=anneal, dataset_size=12, init_from=out, command="stage 2",
                           progress=False)
    metadata = read_metadata(second / "dit.safetensors")
    assert json.loads(metadata["init_from"]) == ["test"] and metadata["command"] == "stage 2"
    assert metadata["steps"] == "2"
