"""ControlVideo: the properties of its three mechanisms. Fully cross-frame attention is one softmax over the keys
of every frame; the hierarchical clips read their two key frames only; the interleaved-frame smoother replaces
every other predicted clean frame by the interpolation of its neighbours and the DDIM step goes on from it; the
hierarchical sampler never runs more than one clip of frames at a time and equals the flat one on a single clip.
Bad input is refused by name."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

from minivdm.diffusion import CosineSchedule, sample
from minivdm.methods.controlvideo import (controlvideo, interpolate_midpoint, key_frames, predict_video,
                                          smooth_interleaved)
from minivdm.nn.attention import Attention
from minivdm.nn.cross_frame_attention import CrossFrameAttention, cross_frame_attention


def bare_attention(dim: int = 8) -> Attention:
    """One head, no output projection: the layer's output is softmax(Q K^T / sqrt(d)) V itself."""
    torch.manual_seed(0)
    layer = Attention(dim, heads=1, dim_head=dim)
    layer.to_out = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Identity())
    return layer


def test_fully_cross_frame_attention_is_one_softmax_over_all_frames():
    layer, frames, tokens, dim = bare_attention(), 3, 5, 8
    x = torch.randn(2 * frames, tokens, dim)  # two videos of three frames on the batch axis
    out = CrossFrameAttention(layer, frames, keys_from="all")(x)
    q, k, v = layer.to_q(x), layer.to_k(x), layer.to_v(x)
    for video in range(2):
        rows = slice(video * frames, (video + 1) * frames)
        keys, values = k[rows].reshape(-1, dim), v[rows].reshape(-1, dim)  # [K^1, ..., K^m]: m n tokens
        for frame in range(frames):
            weights = torch.softmax(q[rows][frame] @ keys.T / dim ** 0.5, dim=-1)
            assert torch.allclose(out[rows][frame], weights @ values, atol=1e-5)


def test_fully_cross_frame_attention_sees_every_frame_and_ignores_their_order():
    layer, frames = bare_attention(), 4
    x = torch.randn(frames, 6, 8)
    attend = CrossFrameAttention(layer, frames, keys_from="all")
    out = attend(x)
    changed = x.clone()
    changed[2] += 1.0
    assert (attend(changed)[0] - out[0]).abs().max() > 1e-3  # frame 1 reads frame 3
    shuffled = x[[0, 3, 1, 2]]  # the other frames in another order: the same set of keys
    assert torch.allclose(attend(shuffled)[0], out[0], atol=1e-5)
    # the image model's own attention (each frame alone) is another thing
    assert (layer(x) - out).abs().max() > 1e-3


def test_clip_attention_reads_the_two_key_frames_only():
    layer, frames = bare_attention(), 5
    x = torch.randn(frames, 6, 8)
    attend = CrossFrameAttention(layer, frames, keys_from="ends")
    out = attend(x)
    inner = x.clone()
    inner[1:-1] += torch.randn_like(inner[1:-1])
    kept = attend(inner)
    assert torch.allclose(kept[1:-1], layer(inner[1:-1], torch.cat([x[0], x[-1]])[None].expand(3, -1, -1)), atol=1e-5)
    # frame 3's output moves only with its own queries: frame 2 (inner) changing leaves it
    only_two = x.clone()
    only_two[1] += 1.0
    assert torch.allclose(attend(only_two)[2], out[2], atol=1e-6)
    last = x.clone()
    last[-1] += 1.0
    assert (attend(last)[2] - out[2]).abs().max() > 1e-3


def moving_square(positions: list[float], size: int = 24) -> torch.Tensor:
    """(N, 3, size, size) frames in [-1, 1] of a soft-edged bright square whose left edge is at ``positions``."""
    xs = torch.arange(size, dtype=torch.float32)
    frames = []
    for left in positions:
        column = ((xs - left + 0.5).clamp(0, 1) * (left + 7.5 - xs).clamp(0, 1))
        row = ((xs - 8 + 0.5).clamp(0, 1) * (15.5 - xs).clamp(0, 1))
        square = row[:, None] * column[None, :]
        frames.append(torch.stack([square, 0.5 * square, 1 - square]) * 2 - 1)
    return torch.stack(frames)


def test_flow_interpolation_finds_the_middle_of_a_moving_square():
    before, middle, after = moving_square([6.0, 8.0, 10.0])
    flow = interpolate_midpoint(before[None], after[None], "flow")[0]
    linear = interpolate_midpoint(before[None], after[None], "linear")[0]
    flow_error, linear_error = (flow - middle).abs().mean(), (linear - middle).abs().mean()
    assert torch.equal(linear, (before + after) / 2)
    # the plain average leaves two half-bright copies; warping half way along the flow puts the square in the middle
    assert flow_error < 0.5 * linear_error, (flow_error, linear_error)
    assert flow_error < 0.03


def test_smoother_replaces_every_other_frame_and_keeps_the_rest():
    video = torch.randn(2, 3, 6, 8, 8)
    odd = smooth_interleaved(video, 1, "linear")
    for i in range(6):
        if i in (1, 3):
            assert torch.allclose(odd[:, :, i], (video[:, :, i - 1] + video[:, :, i + 1]) / 2)
        else:  # even frames, and the last one (frame 5 has no right neighbour)
            assert torch.equal(odd[:, :, i], video[:, :, i])
    even = smooth_interleaved(video, 0, "linear")
    assert torch.equal(even[:, :, 0], video[:, :, 0]) and torch.equal(even[:, :, 5], video[:, :, 5])
    assert torch.allclose(even[:, :, 2], (video[:, :, 1] + video[:, :, 3]) / 2)
    assert torch.allclose(even[:, :, 4], (video[:, :, 3] + video[:, :, 5]) / 2)


def test_smoother_steps_change_the_clean_estimate_and_keep_the_predicted_noise():
    """With an x0-predicting model and the smoother at the last step (to t = 0), the result is the smoothed
    prediction; at an earlier step z_s = alpha_s x~0 + sigma_s eps^ with eps^ from the unsmoothed prediction."""
    schedule = CosineSchedule()
    target = torch.randn(1, 3, 5, 4, 4)

    def model_fn(z, t, frames):  # always predicts the target video (x0-parameterisation)
        return rearrange(target[:, :, frames], "b c f h w -> (b f) c h w")

    z_T = torch.randn(1, 3, 5, 4, 4)
    times = torch.tensor([1.0, 0.5, 0.0])
    out = controlvideo(model_fn, z_T, schedule, times, attention="frame", smoother_steps=(1,), interpolation="linear",
                       prediction_type="x0")
    assert torch.allclose(out, smooth_interleaved(target, 1, "linear"), atol=1e-3)  # sigma(0) = 5e-5
    # two chosen steps: the first smooths frames 2 and 4 (1-based), the second frames 3
    half = controlvideo(model_fn, z_T, schedule, torch.tensor([1.0, 0.5]), attention="frame", smoother_steps=(0,),
                        interpolation="linear", prediction_type="x0")
    alpha_t, sigma_t = schedule.alpha_sigma(torch.tensor(1.0))
    alpha_s, sigma_s = schedule.alpha_sigma(torch.tensor(0.5))
    eps = (z_T - alpha_t * target) / sigma_t
    assert torch.allclose(half, alpha_s * smooth_interleaved(target, 1, "linear") + sigma_s * eps, atol=1e-5)
    both = controlvideo(model_fn, z_T, schedule, torch.tensor([1.0, 0.5, 0.0]), attention="frame",
                        smoother_steps=(0, 1), interpolation="linear", prediction_type="x0")
    assert torch.allclose(both, smooth_interleaved(target, 0, "linear"), atol=1e-3)


def test_frame_attention_without_smoother_is_ddim_frame_by_frame():
    """The ControlVideo loop with per-frame attention and no smoother is the library's DDIM sampler run on the
    frames as a batch of images."""
    schedule = CosineSchedule()
    weights = torch.randn(3, 3)

    def image_model(z, t):  # any deterministic v-predictor of (z, t)
        return torch.einsum("ij,bjhw->bihw", weights, z) * (1 + t[:, None, None, None])

    z_T = torch.randn(2, 3, 4, 6, 6)
    times = schedule.uniform_times(6)
    ours = controlvideo(lambda z, t, frames: image_model(z, t), z_T, schedule, times, attention="frame",
                        prediction_type="v")
    frames = sample(image_model, rearrange(z_T, "b c f h w -> (b f) c h w"), schedule, times, prediction_type="v",
                    progress=False)
    assert torch.allclose(ours, rearrange(frames, "(b f) c h w -> b c f h w", b=2), atol=1e-5)


def test_key_frames_every_clip_length_and_the_last():
    assert key_frames(64, 8) == [0, 8, 16, 24, 32, 40, 48, 56, 63]
    assert key_frames(65, 8) == [0, 8, 16, 24, 32, 40, 48, 56, 64]
    assert key_frames(5, 8) == [0, 4]


class CountingModel(torch.nn.Module):
    """A model_fn that records how many frames each call holds and which frames it was asked for."""

    def __init__(self):
        super().__init__()
        self.calls: list[list[int]] = []

    def forward(self, z, t, frames):
        self.calls.append(frames.tolist())
        return z * 0.5 + frames.float().repeat(z.shape[0] // len(frames))[:, None, None, None]


@pytest.mark.parametrize("frames, clip", [(64, 8), (200, 8), (9, 8), (30, 4)])
def test_hierarchical_sampler_bounds_every_call_by_one_clip(frames, clip):
    model = CountingModel()
    z = torch.randn(1, 1, frames, 2, 2)
    out = predict_video(model, z, torch.tensor(0.5), attention="frame", attention_model=None, clip_length=clip)
    assert max(len(call) for call in model.calls) <= clip + 1
    # every frame's prediction is the model's for that frame (its own index came back)
    assert torch.allclose(out, z * 0.5 + torch.arange(frames, dtype=torch.float32)[None, None, :, None, None])
    flat = predict_video(CountingModel(), z, torch.tensor(0.5), attention="frame", attention_model=None,
                         clip_length=None)
    assert torch.allclose(out, flat)
    if frames > clip + 1:  # the key frames were denoised before the clips between them
        keys = model.calls[0] if frames <= clip * (clip + 1) else None
        if keys is not None:
            assert keys == key_frames(frames, clip)


def test_hierarchical_equals_flat_on_one_clip_with_fully_cross_frame_attention():
    from minivdm.models.unet_2d_condition import UNet2DConditionConfig, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(UNet2DConditionConfig(
        sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8, attention_head_dim=2, norm_num_groups=4)).eval()
    context = torch.randn(1, 3, 8)

    def model_fn(z, t, frames):
        return unet(z, t * 1000, context.expand(z.shape[0], -1, -1))

    z = torch.randn(1, 3, 5, 8, 8)
    with torch.no_grad():
        flat = predict_video(model_fn, z, torch.tensor(0.5), attention="all", attention_model=unet, clip_length=None)
        one_clip = predict_video(model_fn, z, torch.tensor(0.5), attention="all", attention_model=unet, clip_length=4)
        two_clips = predict_video(model_fn, z, torch.tensor(0.5), attention="all", attention_model=unet, clip_length=2)
        per_frame = predict_video(model_fn, z, torch.tensor(0.5), attention="frame", attention_model=unet,
                                  clip_length=None)
    assert torch.allclose(one_clip, flat, atol=1e-6)
    # key frames 1, 3, 5 attend to each other, frames 2 and 4 to their clips' ends: not the flat result
    assert (two_clips - flat).abs().max() > 1e-4

    def direct(indices, keys_from):
        chunk = rearrange(z[:, :, indices], "b c f h w -> (b f) c h w")
        with torch.no_grad(), cross_frame_attention(unet, len(indices), keys_from):
            return model_fn(chunk, torch.full((len(indices),), 0.5), torch.tensor(indices))

    assert torch.allclose(two_clips[0, :, [0, 2, 4]].transpose(0, 1), direct([0, 2, 4], "all"), atol=1e-6)
    assert torch.allclose(two_clips[0, :, 1], direct([0, 1, 2], "ends")[1], atol=1e-6)
    assert torch.allclose(two_clips[0, :, 3], direct([2, 3, 4], "ends")[1], atol=1e-6)
    assert (flat - per_frame).abs().max() > 1e-4  # the attention mode reached the U-Net


@pytest.mark.parametrize("kwargs, message", [
    ({"z_T": torch.randn(1, 3, 4, 4)}, "must be (B, C, N, H, W)"),
    ({"attention": "diagonal"}, "attention must be one of"),
    ({"attention": "all"}, "pass attention_model"),
    ({"smoother_steps": (5,)}, "smoother_steps must be distinct step indices in [0, 3]"),
    ({"smoother_steps": (1, 1)}, "smoother_steps must be distinct"),
    ({"clip_length": 0}, "clip_length must be an int >= 2"),
    ({"clip_length": 1}, "clip_length must be an int >= 2"),
    ({"interpolation": "rife"}, "interpolation must be one of"),
    ({"to_pixels": lambda x: x}, "give both to_pixels and from_pixels"),
])
def test_bad_input_is_refused_by_name(kwargs, message):
    arguments = {"z_T": torch.randn(1, 3, 4, 4, 4), "attention": "frame"}
    arguments.update(kwargs)
    z_T = arguments.pop("z_T")
    with pytest.raises(ValueError) as error:
        controlvideo(lambda z, t, frames: z, z_T, CosineSchedule(), torch.linspace(1, 0, 5), **arguments)
    assert message in str(error.value)


def test_interpolation_refuses_mismatched_frames():
    with pytest.raises(ValueError, match="two .N, C, H, W. of one shape"):
        interpolate_midpoint(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
    with pytest.raises(ValueError, match="parity must be 0"):
        smooth_interleaved(torch.zeros(1, 3, 4, 8, 8), 2)


def test_toy_controlvideo_refuses_controls_of_another_length():
    from minivdm.toy.controlvideo import ToyControlVideoSettings, toy_controlvideo

    with pytest.raises(ValueError, match="controls must be .B, 1, N, 32, 32. with B = 1 prompts and N = 8 frames"):
        toy_controlvideo(torch.nn.Linear(1, 1), None, ["a red circle"], torch.zeros(1, 1, 6, 32, 32),
                         settings=ToyControlVideoSettings(num_frames=8))


@pytest.fixture(scope="module")
def tiny_controlnet_pipe(tmp_path_factory):
    """diffusers' StableDiffusionControlNetPipeline on a tiny random SD (zero convolutions randomised), saved."""
    from diffusers import ControlNetModel as DiffusersControlNet
    from diffusers import StableDiffusionControlNetPipeline

    from sd_fixtures import make_tiny_sd_pipeline
    from test_controlnet import randomise_zero_convolutions

    root = tmp_path_factory.mktemp("controlvideo")
    sd = make_tiny_sd_pipeline(root / "sd")
    torch.manual_seed(3)
    net = DiffusersControlNet.from_unet(sd.unet, conditioning_embedding_out_channels=(8, 16)).eval()
    randomise_zero_convolutions(net)
    pipe = StableDiffusionControlNetPipeline(vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer,
                                             unet=sd.unet, controlnet=net, scheduler=sd.scheduler, safety_checker=None,
                                             feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(root / "pipe", safe_serialization=True)
    return root / "pipe", pipe


def ours_and_reference(folder, pipe, attention: str, frames: int = 3, steps: int = 6):
    """Our controlvideo_latents and diffusers' ControlNet pipeline on the same per-frame noise and controls (the
    frames as diffusers' batch); with attention "first", diffusers' Text2Video-Zero cross-frame processor on its
    U-Net and ControlNet (batch_size=2: the unconditional and conditional halves)."""
    from diffusers.pipelines.deprecated.text_to_video_synthesis.pipeline_text_to_video_zero import \
        CrossFrameAttnProcessor
    from diffusers.models.attention_processor import AttnProcessor

    from minivdm.methods.controlvideo import controlvideo_latents
    from minivdm.methods.text_to_image import load_components
    from minivdm.models.controlnet import ControlNetModel

    control = torch.rand(1, 3, frames, 16, 16, generator=torch.Generator().manual_seed(4))
    unet, vae, text_encoder, tokenizer, settings = load_components(folder)
    controlnet = ControlNetModel.from_pretrained(folder)
    ours = controlvideo_latents(unet, controlnet, vae, text_encoder, tokenizer, settings, "a red circle", control,
                                attention=attention, conditioning_scale=0.8, num_steps=steps,
                                generator=torch.Generator().manual_seed(0))
    noise = torch.randn((1, 4, frames, 8, 8), generator=torch.Generator().manual_seed(0))
    processor = CrossFrameAttnProcessor(batch_size=2) if attention == "first" else AttnProcessor()
    pipe.unet.set_attn_processor(processor)
    pipe.controlnet.set_attn_processor(processor)
    try:
        expected = pipe(["a red circle"] * frames, image=list(control[0].transpose(0, 1)), num_inference_steps=steps,
                        guidance_scale=7.5, controlnet_conditioning_scale=0.8, output_type="latent",
                        latents=rearrange(noise, "1 c f h w -> f c h w")).images
    finally:
        pipe.unet.set_attn_processor(AttnProcessor())
        pipe.controlnet.set_attn_processor(AttnProcessor())
    return ours, rearrange(expected, "f c h w -> 1 c f h w")


@pytest.mark.parametrize("attention", ["frame", "first"])
def test_per_frame_and_first_frame_controlnet_match_diffusers(tiny_controlnet_pipe, attention):
    """Per-frame ControlNet = diffusers' ControlNet pipeline on the frames as a batch; first-frame attention (the
    Text2Video-Zero + ControlNet baseline) = the same with diffusers' CrossFrameAttnProcessor on U-Net and
    ControlNet. Latents of every frame within 1e-4."""
    folder, pipe = tiny_controlnet_pipe
    ours, expected = ours_and_reference(folder, pipe, attention)
    assert ours.shape == expected.shape == (1, 4, 3, 8, 8)
    assert (ours - expected).abs().max() <= 1e-4, (ours - expected).abs().max()
    assert (expected[:, :, 1:] - expected[:, :, :1]).abs().max() > 1e-2  # frames differ: a video, not one image


def test_fully_cross_frame_and_smoother_at_full_scale_run_and_differ(tiny_controlnet_pipe):
    from minivdm.methods.controlvideo import controlvideo_latents
    from minivdm.methods.text_to_image import load_components
    from minivdm.models.controlnet import ControlNetModel

    folder, _ = tiny_controlnet_pipe
    unet, vae, text_encoder, tokenizer, settings = load_components(folder)
    controlnet = ControlNetModel.from_pretrained(folder)
    control = torch.rand(1, 3, 5, 16, 16, generator=torch.Generator().manual_seed(4))
    runs = {name: controlvideo_latents(unet, controlnet, vae, text_encoder, tokenizer, settings, "a red circle",
                                       control, num_steps=4, generator=torch.Generator().manual_seed(0), **kwargs)
            for name, kwargs in {"frame": {"attention": "frame"}, "all": {"attention": "all"},
                                 "smoother": {"attention": "all", "smoother_steps": (1, 2)},
                                 "hierarchical": {"attention": "all", "clip_length": 2}}.items()}
    for name in ("all", "smoother", "hierarchical"):
        assert runs[name].shape == (1, 4, 5, 8, 8) and torch.isfinite(runs[name]).all()
    assert (runs["all"] - runs["frame"]).abs().max() > 1e-3
    assert (runs["smoother"] - runs["all"]).abs().max() > 1e-3
    assert (runs["hierarchical"] - runs["all"]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="reads 3-channel control images, got 1"):
        controlvideo_latents(unet, controlnet, vae, text_encoder, tokenizer, settings, "a", control[:, :1])
    with pytest.raises(ValueError, match="conditioning_scale must be >= 0"):
        controlvideo_latents(unet, controlnet, vae, text_encoder, tokenizer, settings, "a", control,
                             conditioning_scale=-1.0)
    with pytest.raises(ValueError, match=r"control must be \(1, C, N, H, W\)"):
        controlvideo_latents(unet, controlnet, vae, text_encoder, tokenizer, settings, "a", control[0])
