"""The toy-world generator draws what its ground truth says, deterministically, inside the frame."""

import numpy as np
import pytest
import torch

from minivdm.toyworld import (
    BACKGROUND,
    MOTIONS,
    PALETTE,
    SHAPES,
    ToyObject,
    ToyWorldConfig,
    caption_for,
    generate,
    generate_images,
    object_masks as object_masks_np,
    render,
    sample_objects,
)
from minivdm.toyworld.world import MIN_VISIBLE_FRACTION, TEXTURE_AMPLITUDE


@pytest.fixture(scope="module")
def batch():
    return generate(200, seed=3)


def object_masks(objects, config):
    return torch.from_numpy(object_masks_np(objects, config))


def rgb01(video):
    return (video + 1) / 2


def test_layout_and_range(batch):
    b, n = 200, batch.config.max_objects
    assert batch.video.shape == (b, 3, 8, 32, 32) and batch.video.dtype == torch.float32
    assert batch.masks.shape == (b, n, 8, 32, 32) and batch.masks.dtype == torch.bool
    assert batch.depth.shape == (b, n) and batch.depth.dtype == torch.long
    assert batch.edges.shape == (b, 1, 8, 32, 32) and batch.edges.dtype == torch.bool
    assert batch.positions.shape == (b, n, 8, 2)
    assert len(batch.captions) == len(batch.objects) == len(batch) == b
    assert batch.video.min() >= -1 and batch.video.max() <= 1


def test_same_seed_same_batch_other_seed_other_batch():
    a, b, c = generate(16, seed=7), generate(16, seed=7), generate(16, seed=8)
    assert torch.equal(a.video, b.video) and a.captions == b.captions
    assert not torch.equal(a.video, c.video)


def test_pixels_are_exactly_palette_or_background(batch):
    rgb = rgb01(batch.video)
    for b in range(len(batch)):
        covered = torch.zeros_like(batch.masks[b, 0])
        for n, obj in enumerate(batch.objects[b]):
            colour = torch.tensor(PALETTE[obj.colour])[:, None]
            assert torch.allclose(rgb[b][:, batch.masks[b, n]], colour, atol=1e-6)
            assert not (covered & batch.masks[b, n]).any(), "visible masks must not overlap"
            covered |= batch.masks[b, n]
        assert torch.allclose(rgb[b][:, ~covered], torch.tensor(BACKGROUND)[:, None], atol=1e-6)


def test_objects_stay_inside_the_frame_with_a_margin(batch):
    for b in range(len(batch)):
        full = object_masks(batch.objects[b], batch.config)
        assert full.sum((-1, -2)).min() > 0, "every object is drawn in every frame"
        border = full[..., 0, :].any() | full[..., -1, :].any() | full[..., :, 0].any() | full[..., :, -1].any()
        assert not border


def test_depth_order_and_occlusion_keep_objects_readable(batch):
    for b in range(len(batch)):
        objects = batch.objects[b]
        full = object_masks(objects, batch.config)
        assert batch.depth[b].tolist()[: len(objects)] == list(range(len(objects)))
        assert (batch.depth[b, len(objects):] == -1).all() and not batch.masks[b, len(objects):].any()
        # The front-most object is never hidden; the others keep most of their area in every frame
        # and are whole in at least one frame.
        assert torch.equal(batch.masks[b, 0], full[0])
        fraction = batch.masks[b, : len(objects)].sum((-1, -2)) / full.sum((-1, -2))
        assert (fraction >= MIN_VISIBLE_FRACTION).all()
        assert (fraction == 1).any(dim=1).all()


def test_positions_follow_the_motion(batch):
    seen_motions = set()
    for b in range(len(batch)):
        for n, obj in enumerate(batch.objects[b]):
            step = batch.positions[b, n, 1:] - batch.positions[b, n, :-1]
            expected = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0), "still": (0, 0)}[obj.motion]
            assert torch.allclose(step, torch.tensor(expected, dtype=torch.float32) * obj.speed, atol=1e-5)
            # Mask centroid moves by the same amount (y down, x right) as the ground-truth centre.
            ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
            full = object_masks([obj], batch.config)[0].float()
            centroid = torch.stack([(full * ys).sum((-1, -2)), (full * xs).sum((-1, -2))], -1) / full.sum((-1, -2))[:, None]
            travel = centroid[-1] - centroid[0]
            assert torch.allclose(travel, batch.positions[b, n, -1] - batch.positions[b, n, 0], atol=1.0)
            seen_motions.add(obj.motion)
        assert torch.isnan(batch.positions[b, len(batch.objects[b]):]).all()
    assert seen_motions == set(MOTIONS)


def test_edges_are_the_boundaries_of_visible_objects(batch):
    union = batch.masks.any(dim=1, keepdim=True)
    assert not (batch.edges & ~union).any(), "edges lie on objects"
    for b in range(20):
        for n in range(len(batch.objects[b])):
            mask = batch.masks[b, n]
            assert (batch.edges[b, 0] & mask).sum((-1, -2)).min() > 0
            # Interior pixels (all four neighbours inside the same object) are not edges.
            inner = mask[:, 1:-1, 1:-1] & mask[:, :-2, 1:-1] & mask[:, 2:, 1:-1] & mask[:, 1:-1, :-2] & mask[:, 1:-1, 2:]
            assert not (batch.edges[b, 0, :, 1:-1, 1:-1] & inner).any()


def test_depth_maps_order_the_visible_objects_and_ignore_colour(batch):
    depth = batch.depth_maps
    assert depth.shape == (200, 1, *batch.masks.shape[2:]) and depth.min() >= -1 and depth.max() <= 1
    union = batch.masks.any(dim=1, keepdim=True)
    assert (depth[~union] == -1).all()  # background: the far plane
    for b in range(20):
        levels = [depth[b, 0][batch.masks[b, n]].unique() for n in range(len(batch.objects[b]))]
        assert all(len(level) == 1 for level in levels)  # one depth per object
        assert all(a > c for a, c in zip(levels, levels[1:]))  # objects are listed front-most first
    recoloured = generate(20, seed=3)
    recoloured.video = -recoloured.video  # same geometry, other colours
    assert torch.equal(recoloured.depth_maps, depth[:20])


def test_captions_describe_the_objects(batch):
    for caption, objects in zip(batch.captions, batch.objects):
        assert caption == caption_for(objects)
        for obj in objects:
            phrase = "standing still" if obj.motion == "still" else f"moving {obj.motion}"
            assert f"a {obj.colour} {obj.shape} {phrase}" in caption
        assert caption.count(" and ") == len(objects) - 1
        assert len({o.colour for o in objects}) == len(objects), "colours are distinct"
    assert {o.shape for objs in batch.objects for o in objs} == set(SHAPES)
    assert {len(objs) for objs in batch.objects} == {1, 2}


def test_caption_format():
    objects = [ToyObject("red", "circle", "left", 5, (16.0, 16.0)), ToyObject("blue", "square", "still", 5, (8.0, 8.0))]
    assert caption_for(objects) == "a red circle moving left and a blue square standing still"
    assert caption_for(objects, with_motion=False) == "a red circle and a blue square"


def test_render_a_hand_made_scene():
    config = ToyWorldConfig(frames=4)
    objects = [ToyObject("green", "square", "right", 4, (10.5, 10.5), speed=2.0)]
    sample = render(objects, config)
    # A square of half-size 4 at a half-pixel centre covers exactly 8 x 8 pixels in every frame.
    assert sample["masks"][0].sum((-1, -2)).tolist() == [64] * 4
    xs = sample["masks"][0].any(dim=1).float().argmax(dim=-1)
    assert xs.tolist() == [7, 9, 11, 13]
    assert sample["caption"] == "a green square moving right"


def test_images_have_no_motion():
    images = generate_images(50, seed=0)
    assert images.images.shape == (50, 3, 32, 32)
    assert all(o.motion == "still" for objs in images.objects for o in objs)
    assert all("moving" not in c and "still" not in c for c in images.captions)


def test_larger_and_longer_configs_fit():
    config = ToyWorldConfig(size=64, frames=16)
    batch = generate(20, seed=0, config=config)
    assert batch.video.shape == (20, 3, 16, 64, 64)
    assert all(config.scaled_radius(config.min_radius) <= o.radius for objs in batch.objects for o in objs)
    # 16 frames at 1.5 px/frame do not fit at size 32: such objects are slowed down, not clipped.
    slow = generate(50, seed=0, config=ToyWorldConfig(frames=16))
    full = torch.stack([object_masks(objs, slow.config).any(0) for objs in slow.objects])
    assert not (full[..., 0, :].any() or full[..., -1, :].any() or full[..., 0].any() or full[..., -1].any())


def test_texture_is_faint_and_the_camera_pan_moves_it():
    still = generate(8, seed=1, config=ToyWorldConfig(texture=True))
    panned = generate(8, seed=1, config=ToyWorldConfig(camera_pan=True))
    grey = torch.tensor(BACKGROUND)[None, :, None, None, None]
    for batch in (still, panned):
        background = ~batch.masks.any(dim=1, keepdim=True).expand_as(batch.video)
        deviation = (rgb01(batch.video) - grey).abs()[background]
        assert deviation.max() <= TEXTURE_AMPLITUDE + 1e-6 and deviation.max() > TEXTURE_AMPLITUDE / 4
    background = ~(still.masks.any(dim=1)[:, :-1] | still.masks.any(dim=1)[:, 1:])
    change = (still.video[:, :, 1:] - still.video[:, :, :-1]).abs().amax(dim=1)
    assert change[background].max() == 0, "a static camera gives a static background"
    background = ~(panned.masks.any(dim=1)[:, :-1] | panned.masks.any(dim=1)[:, 1:])
    change = (panned.video[:, :, 1:] - panned.video[:, :, :-1]).abs().amax(dim=1)
    assert change[background].mean() > 0.01, "a pan moves the background"
    assert (panned.pan_velocity.norm(dim=-1) - panned.config.speed).abs().max() < 1e-5


def test_sample_objects_is_seeded():
    config = ToyWorldConfig()
    a = sample_objects(np.random.default_rng(5), config)
    b = sample_objects(np.random.default_rng(5), config)
    assert a == b


@pytest.mark.parametrize("kwargs, message", [
    (dict(size=0), "size"),
    (dict(max_objects=7), "max_objects"),
    (dict(min_radius=9, max_radius=8), "min_radius"),
    (dict(speed=-1.0), "speed"),
    (dict(max_radius=20), "no room"),
])
def test_bad_configs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ToyWorldConfig(**kwargs)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="positive int"):
        generate(0)
    with pytest.raises(TypeError, match="seed"):
        generate(2, seed=1.5)
    with pytest.raises(TypeError, match="ToyWorldConfig"):
        generate(2, config={"size": 32})
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        sample_objects(0, ToyWorldConfig())
    with pytest.raises(ValueError, match=r"\(3, T, H, W\)"):
        render([], ToyWorldConfig(), background=torch.zeros(3, 32, 32))
