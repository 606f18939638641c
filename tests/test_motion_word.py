"""The motion-word measurements of tutorial 3, section 8 (minivdm/toy/vdm_motion_word.py)."""

import pytest
import torch
import torch.nn.functional as F

from minivdm.toy.vdm_motion_word import (MOVING, motion_accuracy, motion_word_cosines, one_way_draws, prompted_motions,
                                 red_circle_prompt)
from minivdm.text import encode_captions
from minivdm.toy.vdm import load_toy_vdm
from minivdm.toyworld import MOTIONS


@pytest.fixture(scope="module")
def toy_vdm():
    return load_toy_vdm()


def test_prompts_use_the_toy_world_wording_and_reject_unknown_motions():
    assert red_circle_prompt("left") == "a red circle moving left"
    assert red_circle_prompt("still") == "a red circle standing still"
    with pytest.raises(ValueError, match="motion must be one of"):
        red_circle_prompt("sideways")


def test_accuracy_and_one_way_draws_count_what_the_readings_say():
    noise_decides = {"left": ["right", "up"], "right": ["right", "up"], "up": ["right", "up"],
                     "down": ["right", "up"], "still": ["still", "still"]}
    assert one_way_draws(noise_decides) == 2
    assert motion_accuracy(noise_decides) == pytest.approx(4 / 10)  # right, up (draw 1) and still twice
    word_decides = {motion: [motion, motion] for motion in MOTIONS}
    assert one_way_draws(word_decides) == 0
    assert motion_accuracy(word_decides) == 1.0


def test_every_prompt_gets_the_same_noise_draws(toy_vdm):
    # Guidance 0 samples the unconditional model: with the same noise every prompt must give the same videos.
    model, tokenizer = toy_vdm
    videos, read = prompted_motions(model, tokenizer, 2, guidance_scale=0.0, num_steps=2, seed=3)
    assert list(videos) == list(MOTIONS)
    for motion in MOTIONS:
        assert videos[motion].shape == (2, 3, 8, 32, 32)
        torch.testing.assert_close(videos[motion], videos["left"])
        assert read[motion] == read["left"]
    assert one_way_draws(read) == 2


def test_cosines_are_taken_at_the_motion_word(toy_vdm):
    model, tokenizer = toy_vdm
    cosines = motion_word_cosines(model, tokenizer)
    word_ids = [encode_captions(tokenizer, [motion])[0][0, 1].item() for motion in MOVING]  # after the start token
    table = F.normalize(model.text_encoder.get_input_embeddings().weight[word_ids].detach(), dim=-1)
    torch.testing.assert_close(cosines["input embedding"], table @ table.T)
    for cosine in cosines.values():
        assert cosine.shape == (len(MOVING), len(MOVING))
        torch.testing.assert_close(torch.diagonal(cosine), torch.ones(len(MOVING)))
