"""The oracle reads toy-world videos back exactly, survives noise and blur, and rejects wrong videos."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from minivdm.toyworld import PALETTE, ToyWorldConfig, caption_for, generate, generate_images
from minivdm.toyworld.oracle import parse_caption, read_video, score_videos


@pytest.fixture(scope="module")
def batch():
    return generate(200, seed=11)


@pytest.fixture(scope="module")
def clean_scores(batch):
    return score_videos(batch.video, batch.objects)


def objects_by_colour(seen):
    return [{obj.colour: obj for obj in objects} for objects in seen]


def blur3x3(video):
    kernel = torch.tensor([1.0, 2.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :] / 16)[None, None]
    frames = rearrange(video, "b c t h w -> (b c t) 1 h w")
    frames = F.conv2d(F.pad(frames, (1, 1, 1, 1), mode="replicate"), kernel)
    return rearrange(frames, "(b c t) 1 h w -> b c t h w", b=video.shape[0], c=video.shape[1])


def test_reads_1000_ground_truth_videos():
    truth = generate(1000, seed=0)
    scores = score_videos(truth.video, truth.captions)
    print("\noracle on 1000 ground-truth videos:", {k: round(v, 4) for k, v in scores.items()})
    for key in ("colour_accuracy", "shape_accuracy", "motion_accuracy"):
        assert scores[key] >= 0.99, key
    assert scores["caption_accuracy"] >= 0.98
    assert scores["temporal_consistency"] >= 0.99
    assert scores["background_flicker"] == 0
    assert scores["colour_error"] < 1e-3 and scores["background_error"] < 1e-3


def test_trajectories_and_areas_match_the_ground_truth(batch):
    seen = objects_by_colour(read_video(batch.video))
    for b in range(len(batch)):
        for n, obj in enumerate(batch.objects[b]):
            found = seen[b][obj.colour]
            # Up to a couple of pixels: slivers one pixel wide left by occlusion are dropped as speckle.
            assert (found.area - batch.masks[b, n].sum((-1, -2))).abs().max() <= 2
            # The centroid moves exactly like the true centre when the object is never occluded.
            if n == 0:
                travel = found.trajectory - found.trajectory[0]
                expected = batch.positions[b, n] - batch.positions[b, n, 0]
                assert torch.allclose(travel, expected, atol=0.75)


def test_reads_noisy_and_blurred_videos(batch):
    generator = torch.Generator().manual_seed(0)
    noisy = (batch.video + 0.1 * torch.randn(batch.video.shape, generator=generator)).clamp(-1, 1)
    blurred_noisy = (blur3x3(batch.video) + 0.1 * torch.randn(batch.video.shape, generator=generator)).clamp(-1, 1)
    for name, video in (("noise 0.1", noisy), ("blur + noise 0.1", blurred_noisy)):
        scores = score_videos(video, batch.objects)
        print(f"\noracle with {name}:", {k: round(v, 4) for k, v in scores.items()})
        for key in ("caption_accuracy", "colour_accuracy", "shape_accuracy", "motion_accuracy", "temporal_consistency"):
            assert scores[key] >= 0.95, (name, key)
        assert scores["background_flicker"] > 0.02, "noise is visible as flicker"


def test_rejects_shuffled_frames(batch, clean_scores):
    generator = torch.Generator().manual_seed(1)
    shuffled = torch.stack([video[:, torch.randperm(video.shape[1], generator=generator)] for video in batch.video])
    clean, scores = clean_scores, score_videos(shuffled, batch.objects)
    print("\nshuffled frames:", {k: round(v, 4) for k, v in scores.items()})
    assert scores["colour_accuracy"] >= 0.99 and scores["shape_accuracy"] >= 0.99, "each frame is still a fine image"
    assert scores["temporal_consistency"] < 0.5 < clean["temporal_consistency"]
    assert scores["motion_accuracy"] < 0.6 < clean["motion_accuracy"]
    # Only objects that stand still can stay consistent once frames are shuffled.
    seen = objects_by_colour(read_video(shuffled))
    moving = [seen[b][o.colour].consistent for b in range(len(batch)) for o in batch.objects[b] if o.motion != "still"]
    assert np.mean(moving) < 0.1


def test_rejects_swapped_colours(batch):
    # Repaint the first object of every video in a palette colour that is not in the video.
    rgb = (batch.video + 1) / 2
    swapped, targets = rgb.clone(), []
    for b, objects in enumerate(batch.objects):
        present = {o.colour for o in objects}
        new = next(c for c in PALETTE if c not in present)
        mask = batch.masks[b, 0]
        swapped[b][:, mask] = torch.tensor(PALETTE[new])[:, None]
        targets.append(new)
    swapped = swapped * 2 - 1
    seen = objects_by_colour(read_video(swapped))
    repainted = [objects[0].colour in seen[b] for b, objects in enumerate(batch.objects)]
    assert np.mean(repainted) == 0, "the prompted colour is gone"
    assert all(targets[b] in seen[b] for b in range(len(batch)))
    scores = score_videos(swapped, batch.objects)
    print("\nswapped colours:", {k: round(v, 4) for k, v in scores.items()})
    untouched = 1 - len(batch) / sum(len(objects) for objects in batch.objects)
    assert math.isclose(scores["colour_accuracy"], untouched, abs_tol=0.01)
    assert scores["caption_accuracy"] == 0
    assert scores["shape_accuracy"] >= 0.99 and scores["motion_accuracy"] >= 0.99, "only the colour is wrong"


def test_rejects_reversed_motion(batch):
    seen = objects_by_colour(read_video(batch.video.flip(2)))
    moving = [seen[b][o.colour].motion == o.motion for b in range(len(batch)) for o in batch.objects[b] if o.motion != "still"]
    still = [seen[b][o.colour].motion == "still" for b in range(len(batch)) for o in batch.objects[b] if o.motion == "still"]
    print(f"\nreversed: motion accuracy {np.mean(moving):.3f} on moving objects, {np.mean(still):.3f} on still ones")
    assert np.mean(moving) == 0 and np.mean(still) == 1
    assert score_videos(batch.video.flip(2), batch.objects)["temporal_consistency"] >= 0.99, "reversal is smooth"


def test_wrong_captions_score_low(batch):
    rolled = batch.captions[1:] + batch.captions[:1]
    assert score_videos(batch.video, rolled)["caption_accuracy"] < 0.05


def test_single_frames_skip_motion():
    images = generate_images(100, seed=2)
    seen = read_video(images.video)
    assert all(obj.motion == "unknown" for objects in seen for obj in objects)
    scores = score_videos(images.video, images.captions)
    assert scores["caption_accuracy"] >= 0.99 and scores["shape_accuracy"] >= 0.99
    assert math.isnan(scores["motion_accuracy"]) and math.isnan(scores["temporal_consistency"])
    assert math.isnan(scores["background_flicker"])


def test_other_configs_are_read_too():
    for config in (ToyWorldConfig(frames=16), ToyWorldConfig(size=64, frames=12), ToyWorldConfig(camera_pan=True)):
        truth = generate(40, seed=4, config=config)
        scores = score_videos(truth.video, truth)
        assert scores["caption_accuracy"] >= 0.98, config
    assert scores["background_flicker"] > 0, "a panned textured background changes from frame to frame"


def test_one_video_without_batch_axis(batch):
    assert [o.colour for o in read_video(batch.video[0])[0]] == sorted(
        (o.colour for o in batch.objects[0]), key=list(PALETTE).index)


def test_parse_caption_round_trip(batch):
    for caption, objects in zip(batch.captions, batch.objects):
        assert parse_caption(caption) == [(o.colour, o.shape, o.motion) for o in objects]
        assert parse_caption(caption_for(objects, with_motion=False)) == [(o.colour, o.shape, None) for o in objects]
    with pytest.raises(ValueError, match="moving <direction>"):
        parse_caption("a red circle flying left")
    with pytest.raises(ValueError, match="unknown words"):
        parse_caption("a purple circle moving left")
    with pytest.raises(TypeError, match="str"):
        parse_caption(["a red circle"])


def test_bad_inputs_name_the_layout(batch):
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        read_video(torch.zeros(2, 4, 32, 32))
    with pytest.raises(ValueError, match=r"C = 3"):
        read_video(torch.zeros(2, 1, 8, 32, 32))
    with pytest.raises(TypeError, match="torch.Tensor"):
        read_video(np.zeros((2, 3, 8, 32, 32)))
    with pytest.raises(TypeError, match="floating"):
        read_video(torch.zeros(2, 3, 8, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="one per video"):
        score_videos(batch.video[:2], batch.captions[:3])
    with pytest.raises(TypeError, match="list of captions"):
        score_videos(batch.video[:1], "a red circle moving left")


def test_colour_fidelity_is_zero_on_the_toy_world_and_grows_with_a_colour_shift():
    from minivdm.toyworld import generate_images
    from minivdm.toyworld.oracle import colour_fidelity

    images = generate_images(64, seed=5).images[:, :, None]  # (B, 3, 1, H, W)
    clean = colour_fidelity(images)
    assert clean["palette_distance"] < 1e-5 and clean["object_colour_error"] < 1e-5
    assert clean["background_error"] < 1e-5 and clean["readable_fraction"] == 1.0
    shifted = colour_fidelity((images + torch.tensor([0.2, 0.0, -0.2]).view(1, 3, 1, 1, 1)).clamp(-1, 1))
    # a shift of (0.1, 0, -0.1) in [0, 1] units is ~0.14 away, less where clamping bites
    assert 0.08 < shifted["palette_distance"] < 0.15
    assert shifted["background_error"] == pytest.approx((0.1**2 + 0.1**2) ** 0.5, abs=1e-3)
    assert shifted["object_colour_error"] > 0.05


def test_colour_fidelity_does_not_read_noise_as_a_scene():
    from minivdm.toyworld.oracle import colour_fidelity

    noise = torch.rand(16, 3, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    report = colour_fidelity(noise)
    assert report["readable_fraction"] == 0.0
    assert report["palette_distance"] > 0.2


def test_seam_scores_tell_a_continuous_video_from_two_clips_spliced_together():
    from minivdm.toyworld.oracle import seam_scores
    from minivdm.toyworld.world import ToyWorldConfig

    config = ToyWorldConfig(frames=16)
    first, second = generate(32, seed=3, config=config), generate(32, seed=4, config=config)
    continuous = seam_scores(first.video, [8])
    spliced = seam_scores(torch.cat([first.video[:, :, :8], second.video[:, :, 8:]], dim=2), [8])
    assert continuous["persistence"] == 1.0 and continuous["position_jump"] < 1.0  # measured 0.38 px
    assert continuous["size_change"] < 0.05  # measured 0.015
    assert spliced["persistence"] < 0.5 and spliced["position_jump"] > 3.0  # measured 0.16 and 7.0 px
    with pytest.raises(ValueError, match="seams"):
        seam_scores(first.video, [16])


def test_the_oracle_captions_toy_clips_with_their_own_captions():
    from minivdm.toyworld import caption_video, generate
    from minivdm.toyworld.world import ToyWorldConfig

    batch = generate(12, seed=5, config=ToyWorldConfig(frames=8))
    for video, caption in zip(batch.video, batch.captions):
        assert sorted(caption_video(video).split(" and ")) == sorted(caption.split(" and ")), caption
    background_only = torch.full((3, 4, 32, 32), -0.8)
    assert caption_video(background_only) == ""
    with pytest.raises(ValueError, match=r"\(3, T, H, W\)"):
        caption_video(batch.video)
