"""The toy image-to-video model (chapter 12): SVD's conditioning at toy size, its sampler, its scorer and its
refusals. The shipped weights are checked in tests/test_tiny_models.py."""

from dataclasses import replace

import pytest
import torch

from minivdm.configs.stable_diffusion import TINY
from minivdm.models.unet_2d_condition import UNet2DConditionModel
from minivdm.models.video_ldm_unet import inflate_for_video_ldm
from minivdm.toy.image_to_video import (CLIP_FRAMES, MAX_NOISE_AUG, MAX_SPEED, build_model, copy_first_frame,
                                        fitted_velocity, generate_toy_image_to_video, held_out_first_frames,
                                        score_clips, summarise, trainable_names)
from minivdm.toy.rank_correlation import ranks, spearman


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = build_model(None).eval()
    with torch.no_grad():  # give the new input channels and the added-time-id MLP weights, as training does
        model.unet.conv_in.weight[:, 3:].normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
        model.add_embedding.linear_2.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(2))
    return model


def test_the_added_embedding_joins_the_time_embedding_of_every_frame():
    """Adding e to the time embedding is adding e to the bias of the time MLP's last layer: exact."""
    torch.manual_seed(0)
    image = UNet2DConditionModel(TINY).eval()
    unet = inflate_for_video_ldm(image).eval()
    temb = 4 * TINY.block_out_channels[0]
    clip, text, added = torch.randn(1, 3, 3, 16, 16), torch.randn(1, 5, TINY.cross_attention_dim), torch.randn(1, temb)
    with torch.no_grad():
        ours = unet(clip, 300.0, text, added_embedding=added)
        assert (ours - unet(clip, 300.0, text, added_embedding=torch.zeros(1, temb))).abs().max() > 1e-3
        unet.time_embedding.linear_2.bias += added[0]
        assert (ours - unet(clip, 300.0, text)).abs().max() < 1e-5
        # two clips, two vectors: each clip's frames get its own (not the other clip's)
        clips, vectors = torch.randn(2, 3, 3, 16, 16), torch.randn(2, temb)
        both = unet(clips, 300.0, text.repeat(2, 1, 1), added_embedding=vectors)
        for i in range(2):
            alone = unet(clips[i:i + 1], 300.0, text, added_embedding=vectors[i:i + 1])
            assert (both[i:i + 1] - alone).abs().max() < 1e-5
    with pytest.raises(ValueError, match=r"added_embedding must hold one vector per clip"):
        unet(clip, 300.0, text, added_embedding=torch.randn(2, temb))
    with pytest.raises(ValueError, match=rf"added_embedding must be \(B, {temb}\)"):
        image(clip[:, :, 0], 300.0, text, added_embedding=torch.randn(1, temb + 1))


def test_the_untrained_model_is_the_video_model_it_starts_from():
    """conv_in's new channels and the MLP's last layer start at zero: the first frame and the speed have no effect
    until trained, and the output is the Video LDM model's for the empty caption."""
    from minivdm.text import encode_captions
    from minivdm.toy.temporal_layers import inflate
    from minivdm.toy.text_to_image import load_text_to_image

    torch.manual_seed(0)
    model = build_model(None).eval()
    image, tokenizer = load_text_to_image()
    torch.manual_seed(0)
    video_unet = inflate(image.unet, "video-ldm").eval()
    ids, _ = encode_captions(tokenizer, ["", ""])
    z, t = torch.randn(2, 3, 4, 32, 32), torch.tensor([0.3, 0.8])
    with torch.no_grad():
        ours = model(z, t, torch.randn(2, 3, 32, 32), torch.tensor([0.0, 2.0]), torch.tensor([0.0, 0.1]))
        assert (ours - video_unet(z, t * 1000, image.text_encoder(ids)[0])).abs().max() < 1e-5
    assert all(name.startswith(("add_embedding.", "unet.conv_in.")) or model.unet.is_new(name.removeprefix("unet."))
               for name in trainable_names(model))


def test_the_first_frame_reaches_every_frame_and_the_speed_changes_the_prediction(model):
    z, t = torch.randn(1, 3, 4, 32, 32), torch.tensor([0.5])
    first, other = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        base = model(z, t, first, torch.tensor([1.0]), torch.tensor([0.0]))
        moved = (model(z, t, other, torch.tensor([1.0]), torch.tensor([0.0])) - base).abs().mean((0, 1, 3, 4))
        faster = (model(z, t, first, torch.tensor([2.0]), torch.tensor([0.0])) - base).abs().mean()
        augmented = (model(z, t, first, torch.tensor([1.0]), torch.tensor([0.1])) - base).abs().mean()
    assert (moved > 1e-3).all(), f"the first frame must be concatenated to every frame; change per frame {moved}"
    assert faster > 1e-4 and augmented > 1e-4


def test_a_guidance_ramp_of_ones_is_no_guidance_and_the_ramp_weights_each_frame(model, monkeypatch):
    first = torch.rand(2, 3, 32, 32) * 2 - 1
    plain = generate_toy_image_to_video(model, first, 1.0, num_frames=4, num_steps=2, min_guidance=1.0,
                                        max_guidance=1.0)
    assert plain.shape == (2, 3, 4, 32, 32) and plain.abs().max() <= 1
    # with a ramp, frame f gets u + w_f (c - u): record what the sampler is handed at its first step
    import minivdm.diffusion as diffusion

    seen = {}

    def first_step_only(model_fn, z, schedule, times, **kwargs):
        seen["prediction"] = model_fn(z, times[0].repeat(z.shape[0]))
        seen["z"], seen["t"] = z, times[0].repeat(z.shape[0])
        return z

    monkeypatch.setattr(diffusion, "sample", first_step_only)
    generate_toy_image_to_video(model, first, 1.5, num_frames=4, num_steps=2, min_guidance=1.0, max_guidance=4.0)
    z, t = seen["z"], seen["t"]
    with torch.no_grad():
        conditional = model(z, t, first, torch.full((2,), 1.5), torch.zeros(2))
        unconditional = model(z, t, torch.zeros_like(first), torch.full((2,), 1.5), torch.zeros(2))
    w = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 4, 1, 1)
    assert (seen["prediction"] - (unconditional + w * (conditional - unconditional))).abs().max() < 1e-5


@pytest.mark.parametrize("call, message", [
    (lambda m, f: generate_toy_image_to_video(m, f[:, :, None], 1.0), r"first_frame must be .*\(B, 3, 32, 32\)"),
    (lambda m, f: generate_toy_image_to_video(m, torch.zeros(1, 3, 64, 64), 1.0), r"trained on 32x32"),
    (lambda m, f: generate_toy_image_to_video(m, f[:, :1], 1.0), r"\(B, 3, 32, 32\)"),
    (lambda m, f: generate_toy_image_to_video(m, (f + 1) * 127.5, 1.0), r"in \[-1, 1\].*2 \* x - 1"),
    (lambda m, f: generate_toy_image_to_video(m, f, -0.5), r"speed \(px/frame\) must be in \[0.0, 3.0\]"),
    (lambda m, f: generate_toy_image_to_video(m, f, MAX_SPEED + 1), r"speed \(px/frame\) must be in"),
    (lambda m, f: generate_toy_image_to_video(m, f, torch.tensor([1.0, 2.0])), r"speed .* \(B,\) = \(1,\)"),
    (lambda m, f: generate_toy_image_to_video(m, f, 1.0, noise_aug=MAX_NOISE_AUG * 2), r"noise_aug must be in"),
    (lambda m, f: generate_toy_image_to_video(m, f, 1.0, num_frames=0), r"num_frames must be a positive int"),
    (lambda m, f: generate_toy_image_to_video(m, f, 1.0, num_frames=40), r"num_frames must be <= 16"),
    (lambda m, f: generate_toy_image_to_video(m, f, 1.0, max_guidance=-1.0), r"max_guidance must be in"),
    (lambda m, f: generate_toy_image_to_video(m, f, 1.0, num_steps=0), r"num_steps must be a positive int"),
])
def test_bad_input_is_refused_by_name(model, call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call(model, torch.zeros(1, 3, 32, 32))


def test_spearman_ranks_ties_and_refuses_what_has_no_order():
    assert ranks([3.0, 1.0, 3.0, 2.0]).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)  # 1 - 6 * 2 / (4 * 15)
    assert spearman([1, 2, 3], [5, 5, 5]) != spearman([1, 2, 3], [5, 5, 5])  # nan: a constant has no order
    with pytest.raises(ValueError, match="same length"):
        spearman([1, 2], [1, 2, 3])


def test_fitted_velocity_is_the_least_squares_slope_over_the_frames_seen():
    trajectory = torch.tensor([[10.0, 4.0], [float("nan"), float("nan")], [12.0, 1.0], [13.0, -0.5]])
    vy, vx = fitted_velocity(trajectory)
    assert vy == pytest.approx(1.0) and vx == pytest.approx(-1.5)


def test_the_scorer_reads_real_clips_as_they_were_made_and_the_copy_as_still():
    first, requested, real, objects = held_out_first_frames(12)
    assert requested.tolist()[:4] == [0.5, 1.0, 1.5, 2.0] and real.shape == (12, 3, CLIP_FRAMES, 32, 32)
    assert torch.equal(first, real[:, :, 0]) and all(o[0].motion != "still" for o in objects)
    rows = score_clips(real, first, objects)
    assert rows["frame0_error"] == [0.0] * 12 and all(rows["identity"]) and all(rows["consistent"])
    assert max(abs(speed - o[0].speed) for speed, o in zip(rows["speed"], objects)) < 0.1
    assert all(speed <= level + 0.1 for speed, level in zip(rows["speed"], requested.tolist()))  # slowed, never faster
    copied = summarise(score_clips(copy_first_frame(first), first, objects), requested)
    assert copied["motion_distribution"]["still"] == 1.0 and copied["frame0_error_median"] == 0.0
    shifted = real.roll(1, dims=2)  # the last frame shown first
    assert min(score_clips(shifted, first, objects)["frame0_error"]) > 0


def test_the_recipe_trains_the_new_layers_and_loads_back(tmp_path):
    from minivdm.toy.image_to_video import I2V_TRAIN, load_toy_image_to_video, train_toy_image_to_video

    out = train_toy_image_to_video(tmp_path / "i2v", temporal_layers=None, dataset_size=9, batch_size=1,
                                   config=replace(I2V_TRAIN, steps=2, log_every=1, warmup_steps=1), progress=False)
    model, metadata = load_toy_image_to_video(out.parent)
    assert metadata["steps"] == "2" and metadata["speed_levels"].startswith("[0.5")
    assert model.unet.conv_in.weight[:, 3:].abs().sum() > 0, "training reached the first frame's channels"
    assert model.add_embedding.linear_2.weight.abs().sum() > 0, "training reached the speed's MLP"
    with pytest.raises(FileNotFoundError, match="train-toy-image-to-video"):
        load_toy_image_to_video(tmp_path / "nothing")
    from minivdm.io.checkpoints import read_safetensors, write_safetensors

    state = read_safetensors(out)
    state.pop("add_embedding.linear_2.bias")
    write_safetensors(tmp_path / "partial" / out.name, state, metadata)
    with pytest.raises(ValueError, match=r"does not hold exactly .* missing \['add_embedding.linear_2.bias'\]"):
        load_toy_image_to_video(tmp_path / "partial")


def test_svd_noise_draws_log_sigma_from_its_normal_on_the_toy_schedule():
    """t from log sigma ~ N(0.7, 1.6^2): reading sigma_t / alpha_t back off the schedule gives that normal, and the
    draws sit at more noise than uniform t (median t 0.5, sigma 1)."""
    from minivdm.toy.image_to_video import SVD_LOG_SIGMA, times_from_log_normal_sigma
    from minivdm.toy.text_to_image import TEXT_TO_IMAGE_SCHEDULE

    u = torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    t = times_from_log_normal_sigma(u, *SVD_LOG_SIGMA)
    assert t.min() >= 0 and t.max() <= 1
    alpha, sigma = TEXT_TO_IMAGE_SCHEDULE.alpha_sigma(t)
    log_sigma = (sigma / alpha).log()
    assert abs(log_sigma.mean().item() - 0.7) < 0.02 and abs(log_sigma.std().item() - 1.6) < 0.03
    assert 0.69 < t.median().item() < 0.72, "median sigma e^0.7 = 2.01 sits at t = 2/pi arctan(2.01) ~ 0.71"
    assert torch.equal(times_from_log_normal_sigma(torch.tensor([0.0]), 0.0, 1.0), torch.tensor([0.5])), \
        "sigma = 1 is half way along the cosine schedule"


def test_the_conditioning_layers_learn_faster_and_the_temporal_layers_do_not(model):
    from minivdm.toy.image_to_video import I2V_TRAIN, with_conditioning_lr_factor

    config = with_conditioning_lr_factor(I2V_TRAIN, 5.0)
    trained = dict(model.named_parameters())
    names = set(trainable_names(model))
    groups = config.parameter_groups(model)
    rate_of = {id(p): group["lr"] for group in groups for p in group["params"]}
    rates = {name: rate_of[id(trained[name])] for name in names}
    fast = {name for name, rate in rates.items() if rate == 5.0 * I2V_TRAIN.learning_rate}
    assert fast == {name for name in names if name.startswith(("unet.conv_in.", "add_embedding."))} and len(fast) == 6
    assert all(rate == I2V_TRAIN.learning_rate for name, rate in rates.items() if name not in fast)


def test_the_training_command_refuses_a_learning_rate_factor_that_is_not_positive(tmp_path, capsys):
    from minivdm.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train-toy-image-to-video", "--out", str(tmp_path / "o"), "--conditioning-lr-factor", "0"])
    assert exit_info.value.code == 2 and "--conditioning-lr-factor must be > 0, got 0.0" in capsys.readouterr().err
