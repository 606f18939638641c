"""Masked frame interpolation (chapter 9): the widened input, identity of the widened model at init, the mask,
the pixel-blending baseline, sampling with known frames, and the toy recipe's save / load round trip."""

from dataclasses import replace

import pytest
import torch

from minivdm.configs.stable_diffusion import TINY
from minivdm.methods.frame_interpolation import (FrameInterpolator, blend_key_frames, condition_input, interpolate,
                                                 key_frame_mask, spread_key_frames, widen_for_interpolation)
from minivdm.models.make_a_video_unet import inflate_for_make_a_video
from minivdm.models.unet_2d_condition import UNet2DConditionModel
from minivdm.models.video_ldm_unet import inflate_for_video_ldm
from minivdm.toy.text_to_image import TEXT_TO_IMAGE_SCHEDULE


def test_key_frames_spread_evenly_with_both_ends():
    assert spread_key_frames(4, 16) == [0, 5, 10, 15]
    assert spread_key_frames(2, 8) == [0, 7]
    with pytest.raises(ValueError, match="evenly"):
        spread_key_frames(4, 15)
    mask = key_frame_mask(6, [0, 5])
    assert mask.flatten().tolist() == [1, 0, 0, 0, 0, 1]
    with pytest.raises(ValueError, match="distinct indices"):
        key_frame_mask(6, [0, 6])


def test_condition_input_is_noisy_clip_then_known_frames_then_mask():
    z = torch.randn(2, 3, 4, 5, 5)
    x = torch.randn(2, 3, 4, 5, 5)
    mask = key_frame_mask(4, [0, 3])
    out = condition_input(z, x, mask)
    assert out.shape == (2, 7, 4, 5, 5)
    torch.testing.assert_close(out[:, :3], z)
    torch.testing.assert_close(out[:, 3:6, :, :, :][:, :, [0, 3]], x[:, :, [0, 3]])
    assert out[:, 3:6, [1, 2]].abs().max() == 0, "frames not known are hidden from the model"
    assert out[:, 6, [0, 3]].min() == 1 and out[:, 6, [1, 2]].max() == 0
    with pytest.raises(ValueError, match="known_video must have z_t's shape"):
        condition_input(z, x[:, :, :2], mask)


@pytest.mark.parametrize("inflate", [inflate_for_make_a_video, inflate_for_video_ldm], ids=["make-a-video", "video-ldm"])
def test_widened_model_starts_as_the_video_model(inflate):
    torch.manual_seed(0)
    unet = inflate(UNet2DConditionModel(TINY).double().eval())
    widened = widen_for_interpolation(unet)
    assert widened.conv_in.in_channels == 7 and type(widened) is type(unet)
    z, x = torch.randn(2, 2, 3, 4, 32, 32, dtype=torch.float64)
    text = torch.randn(2, 5, 64, dtype=torch.float64)
    with torch.no_grad():
        expected = unet(z, 0.4, text)
        got = widened(condition_input(z, x, key_frame_mask(4, [0, 3]).double()), 0.4, text)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="widen it"):
        FrameInterpolator(unet)


def test_blending_is_linear_between_the_neighbouring_key_frames():
    keys = torch.stack([torch.full((1, 1, 2, 2), value) for value in (0.0, 1.0, -1.0)], dim=2)  # (1, 1, 3, 2, 2)
    blended = blend_key_frames(keys, [0, 2, 6], 7)
    assert blended[0, 0, :, 0, 0].tolist() == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0, -0.5, -1.0])
    with pytest.raises(ValueError, match="from 0 to 6"):
        blend_key_frames(keys, [1, 2, 6], 7)


def test_interpolate_gives_a_clip_of_the_asked_length_with_and_without_guidance():
    torch.manual_seed(0)
    model = FrameInterpolator(widen_for_interpolation(inflate_for_make_a_video(UNet2DConditionModel(TINY).eval())))
    keys = torch.rand(2, 3, 2, 32, 32) * 2 - 1
    text, null = torch.randn(2, 5, 64), torch.zeros(2, 5, 64)
    for scale in (1.0, 2.0):
        out = interpolate(model, keys, [0, 4], 5, text, null, TEXT_TO_IMAGE_SCHEDULE, num_steps=2, guidance_scale=scale,
                          generator=torch.Generator().manual_seed(0))
        assert out.shape == (2, 3, 5, 32, 32) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="2 frames for 3 known positions"):
        interpolate(model, keys, [0, 2, 4], 5, text, null, TEXT_TO_IMAGE_SCHEDULE, num_steps=2)


def test_toy_recipe_trains_the_temporal_layers_and_conv_in_and_loads_back(tmp_path):
    from minivdm.toy.frame_interpolation import (INTERPOLATION_TRAIN, load_toy_frame_interpolation,
                                                 train_toy_frame_interpolation)

    out = train_toy_frame_interpolation(tmp_path / "fi", temporal_layers=None, dataset_size=8, batch_size=1,
                                        config=replace(INTERPOLATION_TRAIN, steps=2, log_every=1), progress=False)
    model, _, metadata = load_toy_frame_interpolation(out.parent)
    assert metadata["key_frames"] == "[0, 5, 10, 15]" and metadata["steps"] == "2"
    assert model.unet.conv_in.weight[:, 3:].abs().sum() > 0, "training reached the new input channels"
    with pytest.raises(FileNotFoundError, match="train-toy-frame-interpolation"):
        load_toy_frame_interpolation(tmp_path / "nothing")
