"""Gen-1 (chapter 10): the structure blur t_s, the content token, the U-Net's two conditioning paths and their
errors, the toy recipe (trains, saves, resumes), the edit pairs and scores, the prior, and, on the shipped toy
model, that structure sets the geometry and content the colour."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from minivdm.configs.stable_diffusion import TINY
from minivdm.methods.gen1 import blur_structure, content_tokens, depth_to_structure, edit_video, null_content
from minivdm.models.gen1_unet import Gen1UNet, with_structure_channels
from minivdm.models.unet_2d_condition import UNet2DConditionModel

generator = torch.Generator().manual_seed(0)


def random_gen1(seed: int = 0) -> Gen1UNet:
    """A tiny Gen-1 U-Net from a random image U-Net, every weight random (the depth channel's and the temporal
    layers' too), so that both conditioning paths and the frames matter."""
    torch.manual_seed(seed)
    unet = Gen1UNet.inflate(with_structure_channels(UNet2DConditionModel(TINY).eval(), 1))
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if unet.is_new(name) or name == "conv_in.weight":
                parameter.normal_(0.0, 0.05)
    return unet.eval()


def test_t_s_zero_is_the_depth_and_each_level_is_pooling_then_upsampling():
    depth = torch.rand(2, 1, 3, 32, 32, generator=generator) * 2 - 1
    assert torch.equal(blur_structure(depth, 0), depth)
    for level in (1, 3):
        frames = depth[:, 0].reshape(6, 1, 32, 32)  # (b t) frames
        expected = F.interpolate(F.avg_pool2d(F.avg_pool2d(frames, 2), 2) if level == 2 else
                                 F.avg_pool2d(frames, 2**level), size=(32, 32), mode="bilinear", align_corners=False)
        assert torch.allclose(blur_structure(depth, level), expected.reshape(2, 1, 3, 32, 32), atol=1e-6)
    # each level keeps less detail: the distance to the sharp map grows with t_s
    errors = [(blur_structure(depth, level) - depth).abs().mean().item() for level in range(5)]
    assert errors == sorted(errors) and errors[0] == 0
    # frames are blurred one by one: time is never mixed
    moved = depth.clone()
    moved[:, :, 1] = 0.0
    assert torch.equal(blur_structure(moved, 2)[:, :, 0], blur_structure(depth, 2)[:, :, 0])


def test_per_clip_levels_blur_each_clip_at_its_own_level():
    depth = torch.rand(3, 1, 2, 16, 16, generator=generator)
    levels = torch.tensor([0, 2, 1])
    mixed = blur_structure(depth, levels)
    for index, level in enumerate(levels.tolist()):
        assert torch.allclose(mixed[index:index + 1], blur_structure(depth[index:index + 1], level), atol=1e-6)


def test_bad_structure_levels_and_depth_are_refused_by_name():
    depth = torch.zeros(2, 1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"t_s = 5 halves a 16x16 map below one pixel; the largest level for this size is 4"):
        blur_structure(depth, 5)
    with pytest.raises(ValueError, match=r"t_s must be an int >= 0"):
        blur_structure(depth, -1)
    with pytest.raises(ValueError, match=r"t_s must be an int >= 0 or a \(B,\) = \(2,\) tensor"):
        blur_structure(depth, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"depth must be \(B, 1, T, H, W\), one map per frame"):
        depth_to_structure(torch.zeros(1, 3, 2, 16, 16), (8, 8))


def test_depth_to_structure_resizes_and_scales_once_per_clip():
    depth = torch.rand(1, 1, 4, 64, 48, generator=generator) * 5 + 2
    depth[:, :, 2] *= 0.5  # a frame whose depths are all nearer: per-frame scaling would hide it
    structure = depth_to_structure(depth, (16, 12))
    assert structure.shape == (1, 1, 4, 16, 12)
    assert structure.min() == -1 and structure.max() == 1
    assert structure[:, :, 2].mean() < structure[:, :, 1].mean() - 0.3


def test_content_is_one_token_of_norm_sqrt_d():
    embeddings = torch.randn(3, 64, generator=generator) * 7
    tokens = content_tokens(embeddings)
    assert tokens.shape == (3, 1, 64)
    assert torch.allclose(tokens.norm(dim=-1), torch.full((3, 1), 8.0), atol=1e-5)
    assert torch.allclose(F.cosine_similarity(tokens[:, 0], embeddings), torch.ones(3), atol=1e-6)
    with pytest.raises(ValueError, match=r"image_embeddings must be \(B, D\), got shape \(3, 1, 64\)"):
        content_tokens(torch.zeros(3, 1, 64))


def test_fresh_gen1_is_the_image_model_on_each_frame_and_ignores_the_depth():
    torch.manual_seed(0)
    image = UNet2DConditionModel(TINY).eval()
    unet = Gen1UNet.inflate(with_structure_channels(image, 1)).eval()
    z = torch.randn(2, 3, 4, 32, 32, generator=generator)
    depth = torch.rand(2, 1, 4, 32, 32, generator=generator)
    content = torch.randn(2, 1, 64, generator=generator)
    with torch.no_grad():
        ours = unet(z, 300.0, content, depth)
        per_frame = torch.stack([image(z[:, :, i], 300.0, content) for i in range(4)], dim=2)
    assert torch.allclose(ours, per_frame, atol=1e-5)


def test_structure_is_concatenated_after_the_latent_and_content_is_cross_attended():
    unet = random_gen1()
    z = torch.randn(1, 3, 4, 32, 32, generator=generator)
    depth = torch.rand(1, 1, 4, 32, 32, generator=generator)
    content = torch.randn(1, 1, 64, generator=generator)
    with torch.no_grad():
        out = unet(z, 300.0, content, depth)
        # the same as the inflated U-Net's own forward on [z_t ; s] with c as the cross-attention context
        direct = super(Gen1UNet, unet).forward(torch.cat([z, depth], dim=1), 300.0, content)
        assert torch.equal(out, direct)
        assert not torch.allclose(out, unet(z, 300.0, content, torch.zeros_like(depth)), atol=1e-4)
        assert not torch.allclose(out, unet(z, 300.0, null_content(content), depth), atol=1e-4)


def test_bad_structure_and_content_are_refused_with_the_expected_shape():
    unet = random_gen1()
    z = torch.zeros(2, 3, 4, 32, 32)
    content = torch.zeros(2, 1, 64)
    with pytest.raises(ValueError, match=r"structure must be \(B, S, T, H, W\) = \(2, 1, 4, 32, 32\), one depth map "
                                         r"per frame of z_t at its size, got \(2, 1, 4, 16, 16\)"):
        unet(z, 1.0, content, torch.zeros(2, 1, 4, 16, 16))
    with pytest.raises(ValueError, match=r"got \(2, 1, 3, 32, 32\)"):
        unet(z, 1.0, content, torch.zeros(2, 1, 3, 32, 32))  # one frame short
    with pytest.raises(ValueError, match=r"content must be \(B, N, D\) with B = 2 and D = 64 \(the CLIP image "
                                         r"embedding's width\), got \(2, 1, 768\)"):
        unet(z, 1.0, torch.zeros(2, 1, 768), torch.zeros(2, 1, 4, 32, 32))
    with pytest.raises(ValueError, match=r"content must be \(B, N, D\), N content tokens, got shape \(2, 64\)"):
        unet(z, 1.0, torch.zeros(2, 64), torch.zeros(2, 1, 4, 32, 32))
    with pytest.raises(ValueError, match=r"z_t must be \(B, C, T, H, W\) with C = 3"):
        unet(torch.zeros(2, 4, 4, 32, 32), 1.0, content, torch.zeros(2, 1, 4, 32, 32))
    with pytest.raises(TypeError, match="with_structure_channels takes an image U-Net"):
        with_structure_channels(unet, 1)


def test_guided_edit_keeps_the_structure_in_both_branches():
    """edit_video with w: v(s, 0) + w (v(s, c) - v(s, 0)), the structure in both branches."""
    from minivdm.toy.text_to_image import TEXT_TO_IMAGE_SCHEDULE as schedule

    unet = random_gen1()

    seen = []

    def model(z_t, t, c, s):
        seen.append((c.clone(), s.clone()))
        return unet(z_t, t * 1000, c, s)

    depth = torch.rand(2, 1, 2, 32, 32, generator=generator)
    content = torch.randn(2, 1, 64, generator=generator)
    z = torch.randn(2, 3, 2, 32, 32, generator=generator)
    times = schedule.uniform_times(1)
    out = edit_video(model, depth, content, schedule, times, z_start=z, guidance_scale=4.0)
    (c, s), = seen
    assert torch.equal(c, torch.cat([torch.zeros_like(content), content])) and torch.equal(s, torch.cat([depth, depth]))
    with torch.no_grad():
        t = times[:1].float().expand(2)
        uncond, cond = unet(z, t * 1000, torch.zeros_like(content), depth), unet(z, t * 1000, content, depth)
    v = uncond + 4.0 * (cond - uncond)
    alpha, sigma = schedule.alpha_sigma(t)
    x0 = alpha[:, None, None, None, None] * z - sigma[:, None, None, None, None] * v  # v-parameterisation at t = 1
    assert torch.allclose(out, x0, atol=5e-4)  # float64 times in the sampler, float32 here


def test_toy_recipe_trains_every_unet_weight_saves_and_resumes(tmp_path):
    from minivdm.toy.gen1 import GEN1_TRAIN, UNET_FILE, build_toy_gen1, train_toy_gen1
    from minivdm.io.checkpoints import read_safetensors, read_safetensors_metadata

    tiny = replace(GEN1_TRAIN, steps=2, warmup_steps=1, log_every=1, checkpoint_every=1)
    out = train_toy_gen1(tmp_path / "out", config=tiny, dataset_size=8, batch_size=2, checkpoint_dir=tmp_path / "ck",
                         progress=False, command="test")
    state, metadata = read_safetensors(out), read_safetensors_metadata(out)
    assert out.name == UNET_FILE and metadata["steps"] == "2" and metadata["command"] == "test"
    start = build_toy_gen1().unet.state_dict()
    assert set(state) == set(start)
    assert state["conv_in.weight"].shape[1] == 4 and start["conv_in.weight"][:, 3].abs().sum() == 0
    assert state["conv_in.weight"][:, 3].abs().sum() > 0, "the depth channel learns from zero"
    again = train_toy_gen1(tmp_path / "again", config=replace(tiny, steps=3), dataset_size=8, batch_size=2,
                           checkpoint_dir=tmp_path / "ck", progress=False)
    assert read_safetensors_metadata(again)["steps"] == "3"


def test_edit_pairs_give_each_source_a_content_image_of_another_colour():
    from minivdm.toy.gen1 import edit_pairs
    from minivdm.toyworld.oracle import read_video

    pairs = edit_pairs(12)
    sources = [objects[0].colour for objects in pairs.sources.objects]
    assert all(a != b for a, b in zip(sources, pairs.content_colours))
    seen = read_video(pairs.content_frames[:, :, None])
    assert [objects[0].colour for objects in seen] == pairs.content_colours
    assert [caption.split()[1] for caption in pairs.content_captions] == pairs.content_colours


def test_scores_read_a_perfect_recolouring_and_the_source_itself():
    """The source scores IoU 1, motion and shape kept, and the source colour; the source recoloured to the target
    (the edit we want) scores the target colour with the same geometry; a clip moved 4 px loses the IoU."""
    from minivdm.toy.gen1 import edit_pairs, score_edits, summarise_edits
    from minivdm.toyworld.world import PALETTE

    pairs = edit_pairs(8)
    source = summarise_edits(score_edits(pairs.sources.video, pairs.sources, pairs.content_colours))
    assert source["mean_iou"] == 1 and source["motion_kept"] == 1 and source["source_colour"] == 1
    assert source["target_colour"] == 0
    masks = pairs.sources.masks[:, 0]  # (B, T, H, W)
    recoloured = pairs.sources.video.clone()
    for index, colour in enumerate(pairs.content_colours):
        rgb = torch.tensor(PALETTE[colour]) * 2 - 1
        recoloured[index] = torch.where(masks[index][None], rgb[:, None, None, None], recoloured[index])
    edit = summarise_edits(score_edits(recoloured, pairs.sources, pairs.content_colours))
    assert edit["target_colour"] == 1 and edit["mean_iou"] > 0.99 and edit["shape_kept"] == 1
    shifted = summarise_edits(score_edits(torch.roll(recoloured, 4, dims=-1), pairs.sources, pairs.content_colours))
    assert shifted["mean_iou"] < 0.8


def test_prior_maps_a_caption_near_its_images():
    """The shipped prior: a caption's predicted image embedding is nearer the images of its own colour and shape
    than the caption's own text embedding is (the modality gap it learned to cross)."""
    from minivdm.toy.clip import load_toy_clip_scorer
    from minivdm.toy.gen1 import load_toy_gen1, toy_clips

    _, prior, _ = load_toy_gen1()
    scorer = load_toy_clip_scorer()
    clips = toy_clips(40, seed=777)
    images = scorer.image_embeddings(clips.video[:, :, 0])
    texts = scorer.text_embeddings(clips.captions)
    with torch.no_grad():
        predicted = prior(texts)
    assert (predicted * images).sum(-1).mean() > 0.9
    assert (predicted * images).sum(-1).mean() > (texts * images).sum(-1).mean() + 0.1
    with pytest.raises(ValueError, match=r"text_embeddings must be \(B, 64\)"):
        prior(torch.zeros(2, 32))


@pytest.fixture(scope="module")
def shipped():
    from minivdm.toy.clip import load_toy_clip_scorer
    from minivdm.toy.gen1 import edit_pairs, load_toy_gen1

    model, _, _ = load_toy_gen1()
    pairs = edit_pairs(4)
    embeddings = load_toy_clip_scorer().image_embeddings(pairs.content_frames)
    return model, pairs, embeddings


def read_edit(video):
    from minivdm.toy.gen1 import object_pixels
    from minivdm.toyworld.oracle import read_video

    return [objects[0].colour if len(objects) == 1 else None for objects in read_video(video)], object_pixels(video)


def iou(a, b):
    return ((a & b).sum() / (a | b).sum().clamp(min=1)).item()


def test_on_the_trained_model_changing_s_changes_the_geometry_not_the_colour(shipped):
    from minivdm.toy.gen1 import EditSettings, edit_clips

    model, pairs, embeddings = shipped
    depth = pairs.sources.depth_maps
    settings = EditSettings(num_steps=10)
    content = embeddings[:1].expand(2, -1)        # one content image, two structures
    video = edit_clips(model, depth[:2], content, settings=settings, seed=0)
    colours, masks = read_edit(video)
    assert colours == [pairs.content_colours[0]] * 2, colours
    truth = pairs.sources.masks[:2, 0]
    for index in range(2):
        assert iou(masks[index], truth[index]) > 0.85             # each edit follows its own structure
    assert iou(masks[0], masks[1]) < iou(masks[0], truth[0]) - 0.2  # and the two geometries differ


def test_on_the_trained_model_changing_c_changes_the_colour_not_the_geometry(shipped):
    from minivdm.toy.gen1 import EditSettings, edit_clips

    model, pairs, embeddings = shipped
    depth = pairs.sources.depth_maps[:1].expand(2, -1, -1, -1, -1)  # one structure, two contents
    video = edit_clips(model, depth, embeddings[:2], settings=EditSettings(num_steps=10), seed=0)
    colours, masks = read_edit(video)
    assert colours == pairs.content_colours[:2] and colours[0] != colours[1], colours
    assert iou(masks[0], masks[1]) > 0.85


def test_swapped_content_comes_from_another_clip_of_the_same_colour():
    from minivdm.toy.gen1 import content_clips

    colours = ["red", "blue", "red", "green", "blue", "red"] * 5
    pick = torch.arange(30)
    assert torch.equal(content_clips(pick, colours, 0.0, torch.Generator().manual_seed(0)), pick)
    donors = content_clips(pick, colours, 1.0, torch.Generator().manual_seed(0))
    assert all(colours[int(d)] == colours[int(p)] for d, p in zip(donors, pick))
    assert (donors != pick).float().mean() > 0.7  # a red clip has 15 red donors: it rarely draws itself
    half = content_clips(pick.repeat(20), colours, 0.5, torch.Generator().manual_seed(1))
    assert 0.35 < (half != pick.repeat(20)).float().mean() < 0.55
