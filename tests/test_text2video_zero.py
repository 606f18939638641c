"""Text2Video-Zero: parity with diffusers' TextToVideoZeroPipeline on a tiny random Stable Diffusion in the
published layout (loaded through our loader), and the properties of its two mechanisms: the latent warp
moves codes by delta^k, cross-frame attention reads keys and values from frame 1 only, the re-noising
is the DDPM forward process from T' to T. Bad input is refused by name."""

from __future__ import annotations

import pytest
import torch

from minivdm.diffusion import CosineSchedule, add_noise
from minivdm.methods.text2video_zero import (diffusers_frame_shifts, frame_shifts, motion_direction, renoise,
                                             text2video_zero, text2video_zero_latents, translate)
from minivdm.nn.attention import Attention
from minivdm.nn.cross_frame_attention import CrossFrameAttention, cross_frame_attention
from sd_fixtures import make_tiny_sd_pipeline


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_sd")
    return root, make_tiny_sd_pipeline(root)


@pytest.mark.parametrize("frames, steps, t0, t1, strength_x, strength_y", [
    (6, 12, 3, 7, 40.0, -20.0),   # both axes, content moving left and down
    (4, 10, 0, 8, -24.0, 0.0),    # the longest first-frame run diffusers allows (t1 = steps - 2)
    (3, 8, 4, 4, 36.0, 36.0),     # t0 == t1: warped, not re-noised (the product of no alphas is 1)
])
def test_matches_diffusers_text_to_video_zero(tiny_sd, frames, steps, t0, t1, strength_x, strength_y):
    """Same seed, motion field, t0/t1, frames: every frame's latents within 1e-4 of diffusers'. Our
    parameters in diffusers' terms: start_index = steps - t1 - 1, delta_t = t1 - t0, the shifts of its
    512-pixel motion field (``diffusers_frame_shifts``) and its re-noising product (the named differences)."""
    from diffusers import TextToVideoZeroPipeline

    from minivdm.methods.text_to_image import load_components

    root, pipe = tiny_sd
    reference = TextToVideoZeroPipeline(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                                        unet=pipe.unet, scheduler=pipe.scheduler, safety_checker=None,
                                        feature_extractor=None, requires_safety_checker=False)
    reference.set_progress_bar_config(disable=True)
    expected = reference("a red circle", video_length=frames, num_inference_steps=steps, guidance_scale=7.5, t0=t0,
                         t1=t1, motion_field_strength_x=strength_x, motion_field_strength_y=strength_y,
                         generator=torch.Generator().manual_seed(3), output_type="latent").images
    unet, _, text_encoder, tokenizer, settings = load_components(root)
    size = unet.config.sample_size
    ours = text2video_zero_latents(unet, text_encoder, tokenizer, settings, "a red circle", num_frames=frames,
                                   shifts=diffusers_frame_shifts(frames, strength_x, strength_y, size, size),
                                   delta_t=t1 - t0, start_index=steps - t1 - 1, num_steps=steps, guidance_scale=7.5,
                                   generator=torch.Generator().manual_seed(3), renoise_with="diffusers")
    assert ours.shape == (1, 4, frames, size, size) and expected.shape == (frames, 4, size, size)
    ours = ours[0].transpose(0, 1)  # diffusers keeps the frames on the batch axis
    errors = (ours - expected).abs().flatten(1).max(dim=1).values
    assert errors.max() <= 1e-4, f"per-frame max abs difference {errors.tolist()} (latents up to {expected.abs().max():.1f})"
    # the frames differ from one another: the test compares a video, not one image repeated
    assert (expected[1:] - expected[:1]).abs().max() > 0.1


def test_translate_moves_content_by_the_shift():
    x = torch.zeros(3, 1, 8, 10)
    x[:, :, 3, 4] = 1.0
    moved = translate(x, torch.tensor([[0.0, 0.0], [2.0, 0.0], [-1.0, 3.0]]))
    assert torch.equal(moved[0], x[0])  # delta^1 = 0: frame 1 is not moved
    assert moved[1, 0, 3, 6] == 1 and moved[1].sum() == 1  # two pixels to the right (+x)
    assert moved[2, 0, 6, 3] == 1 and moved[2].sum() == 1  # one left, three down (+y is down)
    # a non-integer shift reads the nearest pixel; past the edge the code is mirrored, never blank
    edge = translate(torch.arange(10.0).view(1, 1, 1, 10).expand(1, 1, 2, 10).contiguous(), torch.tensor([[3.0, 0.0]]))
    assert edge[0, 0, 0].tolist() == [2, 1, 0, 0, 1, 2, 3, 4, 5, 6]


def test_frame_shifts_follow_delta_k():
    shifts = frame_shifts(4, "right", 1.5)
    assert shifts.tolist() == [[0, 0], [1.5, 0], [3.0, 0], [4.5, 0]]  # lambda (k - 1) delta, k = 1..m
    assert frame_shifts(3, (1, -2), 2.0)[2].tolist() == [4.0, -8.0]
    # diffusers' frame i moves -(s i - 1/2) w / 512 pixels (positive strength: content moves left)
    assert diffusers_frame_shifts(3, 12.0, 0.0, 64, 64)[2].tolist() == pytest.approx([-(24 - 0.5) / 8, 0.5 / 8])


def test_cross_frame_attention_reads_keys_and_values_from_frame_one():
    torch.manual_seed(0)
    attention = Attention(16, heads=2, dim_head=8)
    x = torch.randn(2 * 3, 5, 16)  # 2 videos (unconditional, conditional) of 3 frames, 5 tokens each
    crossed = CrossFrameAttention(attention, num_frames=3)(x)
    for video in range(2):
        first = x[video * 3]
        for frame in range(3):
            row = video * 3 + frame
            expected = attention(x[row:row + 1], first[None])
            assert torch.allclose(crossed[row], expected[0], atol=1e-6)
    # frame 1 attends to itself: its output is plain self-attention
    assert torch.allclose(crossed[0], attention(x[:1])[0], atol=1e-6)
    # changing frame 2 changes only frame 2's output; changing frame 1 changes every frame of its video
    changed = x.clone()
    changed[1] += 1
    assert torch.equal(CrossFrameAttention(attention, 3)(changed)[[0, 2, 3, 4, 5]], crossed[[0, 2, 3, 4, 5]])
    changed = x.clone()
    changed[0] += 1
    assert not torch.allclose(CrossFrameAttention(attention, 3)(changed)[2], crossed[2])
    text = torch.randn(6, 4, 16)  # cross-attention to a context is left alone
    assert torch.equal(CrossFrameAttention(attention, 3)(x, text), attention(x, text))


def test_cross_frame_attention_is_installed_and_removed(tiny_sd):
    from minivdm.models.unet_2d_condition import UNet2DConditionModel

    root, _ = tiny_sd
    unet = UNet2DConditionModel.from_pretrained(root, "unet")
    before = [name for name, _ in unet.named_modules()]
    with cross_frame_attention(unet, 4):
        inside = [module for module in unet.modules() if isinstance(module, CrossFrameAttention)]
        assert inside and all(module.num_frames == 4 for module in inside)
    assert [name for name, _ in unet.named_modules()] == before
    with pytest.raises(ValueError, match="has no transformer blocks"):
        with cross_frame_attention(torch.nn.Linear(2, 2), 4):
            pass


def test_renoising_is_the_forward_process_from_t_prime_to_t():
    schedule = CosineSchedule()
    t_prime, t = torch.tensor(0.6, dtype=torch.float64), torch.tensor(0.9, dtype=torch.float64)
    x0 = torch.full((20000, 1, 1, 1), 0.7)
    generator = torch.Generator().manual_seed(0)
    z_prime, _ = add_noise(x0, t_prime.float().expand(x0.shape[0]), schedule, generator=generator)
    ratio = schedule.alpha_bar(t) / schedule.alpha_bar(t_prime)
    z_t = renoise(z_prime, ratio, torch.randn(x0.shape, generator=generator))
    alpha_t, sigma_t = schedule.alpha_sigma(t)
    # q(z_t | x) = N(alpha_t x, sigma_t^2): the same as noising x straight to t
    assert z_t.mean().item() == pytest.approx(alpha_t.item() * 0.7, abs=0.02)
    assert z_t.std().item() == pytest.approx(sigma_t.item(), abs=0.02)


def _toy_model_fn(z, t):
    return torch.zeros_like(z)  # v = 0: DDIM shrinks the code deterministically, no frame is special


def test_joint_denoising_starts_from_warped_renoised_codes():
    schedule = CosineSchedule()
    times = schedule.uniform_times(6)
    z_T = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    captured = []
    video = text2video_zero(_toy_model_fn, z_T, schedule, times, num_frames=3, shifts=frame_shifts(3, "right", 2.0),
                            delta_t=2, prediction_type="v", generator=torch.Generator().manual_seed(1),
                            first_frames=captured)
    x_T1, x_Tprime1, codes = captured
    assert torch.equal(x_T1, z_T) and torch.equal(codes[0], z_T[0])  # start_index 0: frame 1 starts at x_T^1
    ratio = schedule.alpha_bar(times[0]) / schedule.alpha_bar(times[2])
    noise = torch.randn((2, 3, 8, 8), generator=torch.Generator().manual_seed(1))
    expected = renoise(translate(x_Tprime1.expand(2, -1, -1, -1), torch.tensor([[2.0, 0.0], [4.0, 0.0]])), ratio, noise)
    assert torch.allclose(codes[1:], expected, atol=1e-6)
    assert video.shape == (1, 3, 3, 8, 8)  # (B, C, T, H, W)


@pytest.mark.parametrize("change, message", [
    (dict(num_frames=1, shifts=None), "num_frames >= 2"),
    (dict(delta_t=6), "start_index \\+ delta_t <= 5"),
    (dict(start_index=-1), "0 <= start_index"),
    (dict(shifts=None, start_index=1), "fresh noise, which is a sample of x_T only at the sampler's first time"),
    (dict(shifts=torch.zeros(4, 2)), "shifts must be \\(B, m, 2\\) for B = 1 videos of m = 3 frames"),
    (dict(background_masks=torch.ones(3, 1, 4, 4)), "with H, W = 8, 8"),
    (dict(background_masks=torch.ones(2, 1, 8, 8)), "background masks must be \\(B, m, 1, H, W\\) for B = 1"),
    (dict(renoise_with="ddim"), "renoise_with must be one of"),
])
def test_bad_input_is_refused_by_name(change, message):
    schedule = CosineSchedule()
    arguments = dict(num_frames=3, shifts=frame_shifts(3, "right", 1.0), delta_t=2)
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        text2video_zero(_toy_model_fn, torch.zeros(1, 3, 8, 8), schedule, schedule.uniform_times(6),
                        prediction_type="v", **arguments)


def test_bad_motion_is_refused_by_name():
    with pytest.raises(ValueError, match="two finite numbers"):
        motion_direction((1, 2, 3))
    with pytest.raises(ValueError, match="one of"):
        motion_direction("sideways")
    with pytest.raises(ValueError, match="lambda must be a finite number >= 0"):
        frame_shifts(8, "left", -1.0)
    with pytest.raises(ValueError, match="num_frames >= 2"):
        frame_shifts(1, "left", 1.0)


def test_background_smoothing_pulls_the_background_to_frame_one_warped():
    schedule = CosineSchedule()
    times = schedule.uniform_times(5)
    z_T = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    shifts = torch.stack([frame_shifts(3, "right", 1.0), frame_shifts(3, "down", 2.0)])  # one direction per video

    def video(masks, alpha=0.6):
        return text2video_zero(_toy_model_fn, z_T, schedule, times, num_frames=3, shifts=shifts, delta_t=2,
                               prediction_type="v", background_masks=masks, smoothing_alpha=alpha,
                               generator=torch.Generator().manual_seed(1))

    plain = video(None)
    assert torch.equal(video(torch.ones(3, 1, 8, 8)), plain)  # all foreground: nothing to smooth
    all_background = video(torch.zeros(2, 3, 1, 8, 8), alpha=1.0)  # the background is frame 1, warped, at every step
    for b in range(2):
        expected = translate(all_background[b, :, 0][None].expand(3, -1, -1, -1), shifts[b])
        assert torch.allclose(all_background[b].transpose(0, 1), expected, atol=1e-6)
    assert not torch.allclose(plain[:, :, 1:], all_background[:, :, 1:])


def test_toy_ablation_rows_share_prompts_and_noise():
    """Every row of the toy ablation starts from the same x_T^1 (and the same noise for frames 2..m), so
    rows differ only by the mechanisms; a video is judged against its caption with the motion added."""
    from minivdm.toy.text2video_zero import ToyT2VZSettings, toy_text2video_zero, video_caption
    from minivdm.toy.text_to_image import load_text_to_image

    model, tokenizer = load_text_to_image()
    captions, directions = ["a red circle", "a blue square and a green triangle"], ["right", "up"]
    codes = {}
    for name, settings in {"both": ToyT2VZSettings(num_frames=3, num_steps=4, start_index=1, delta_t=1),
                           "motion only": ToyT2VZSettings(num_frames=3, num_steps=4, start_index=1, delta_t=1,
                                                          cross_frame=False)}.items():
        captured = []
        video = toy_text2video_zero(model, tokenizer, captions, directions, settings=settings, seed=5, first_frames=captured)
        assert video.shape == (2, 3, 3, 32, 32) and video.abs().max() <= 1
        codes[name] = captured[2]
    assert torch.equal(codes["both"], codes["motion only"])  # cross-frame attention acts only after the codes
    assert video_caption("a blue square and a green triangle", "up") == \
        "a blue square moving up and a green triangle moving up"


def test_generate_command_writes_the_video_our_pipeline_makes(tiny_sd, tmp_path, capsys):
    from minivdm.__main__ import main
    from minivdm.full_scale import text2video_zero_steps
    from minivdm.io.video_files import read_video
    from minivdm.methods.text_to_image import load_components
    from minivdm.methods.text_to_video import decode_frames

    root, _ = tiny_sd
    out = tmp_path / "clip.gif"
    assert main(["generate", "--config", "sd15", "--method", "text2video-zero", "--motion", "left", "--frames", "4",
                 "--prompt", "a red circle", "--weights", str(root), "--out", str(out), "--steps", "5", "--seed", "3",
                 "--device", "cpu", "--no-config-check"]) == 0
    written = read_video(out)
    unet, vae, text_encoder, tokenizer, settings = load_components(root)
    start_index, delta_t = text2video_zero_steps(5)
    latents = text2video_zero_latents(unet, text_encoder, tokenizer, settings, "a red circle", num_frames=4,
                                      shifts=frame_shifts(4, "left", 1.5), delta_t=delta_t, start_index=start_index,
                                      num_steps=5, generator=torch.Generator().manual_seed(3))
    expected = decode_frames(vae, latents)[0].clamp(-1, 1)
    assert written.shape == expected.shape == (3, 4, 16, 16)
    assert (written - expected).abs().mean() < 0.02  # 8-bit colours with a palette: close, not equal
    assert text2video_zero_steps(50) == (2, 3)  # diffusers' t1 = 47, t0 = 44 of 50 steps
    # an image model is needed, and the motion options belong to the method
    assert main(["generate", "--config", "modelscope-t2v", "--method", "text2video-zero", "--prompt", "x",
                 "--weights", str(root), "--out", str(tmp_path / "x.gif"), "--device", "cpu"]) == 2
    assert "--config must be one of" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "--config", "sd15", "--motion", "left", "--prompt", "x", "--out", str(tmp_path / "x.png")])
    assert main(["generate", "--config", "sd15", "--method", "text2video-zero", "--motion", "1,2,3", "--prompt", "x",
                 "--weights", str(root), "--out", str(tmp_path / "x.gif"), "--device", "cpu",
                 "--no-config-check"]) == 2
    assert "two finite numbers" in capsys.readouterr().err


def test_a_foreground_mask_turns_on_background_smoothing_at_full_scale(tiny_sd, tmp_path, capsys):
    """--foreground-mask: all white (everything foreground) leaves every latent as without smoothing, all black
    (everything background) pulls frames 2..m toward frame 1 warped; an unreadable mask is refused by name."""
    import imageio.v3 as iio
    import numpy as np

    from minivdm.__main__ import main
    from minivdm.io.video_files import read_video

    root, _ = tiny_sd
    common = ["generate", "--config", "sd15", "--method", "text2video-zero", "--motion", "right", "--frames", "3",
              "--prompt", "a red circle", "--weights", str(root), "--steps", "5", "--seed", "1", "--device", "cpu",
              "--no-config-check"]
    videos = {}
    for name, value in (("none", None), ("white", 255), ("black", 0)):
        extra = []
        if value is not None:
            iio.imwrite(tmp_path / f"{name}.png", np.full((40, 24), value, dtype=np.uint8))
            extra = ["--foreground-mask", str(tmp_path / f"{name}.png")]
        assert main(common + ["--out", str(tmp_path / f"{name}.gif"), *extra]) == 0
        videos[name] = read_video(tmp_path / f"{name}.gif")
    assert torch.equal(videos["white"], videos["none"])
    assert (videos["black"][:, 1:] - videos["none"][:, 1:]).abs().mean() > 0.01
    (tmp_path / "broken.png").write_text("not an image")
    assert main(common + ["--out", str(tmp_path / "x.gif"), "--foreground-mask", str(tmp_path / "broken.png")]) == 2
    assert "not a readable image" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "--config", "sd15", "--foreground-mask", "m.png", "--prompt", "x", "--out", str(tmp_path / "x.png")])


def test_masks_move_with_their_frame():
    from minivdm.methods.text2video_zero import warp_masks

    first = torch.zeros(1, 1, 6, 6)
    first[0, 0, 2, 1] = 1  # one foreground pixel at (y, x) = (2, 1)
    masks = warp_masks(first, frame_shifts(3, "right", 2.0)[None])
    assert masks.shape == (1, 3, 1, 6, 6)
    assert [masks[0, k, 0, 2, 1 + 2 * k].item() for k in range(3)] == [1, 1, 1]  # moved right 2 px a frame
    assert masks[0, 1, 0, :, 2:].sum() == 1 and masks[0, 1, 0, 2, 1] == 0       # (the edge mirrors into x < 2)
    with pytest.raises(ValueError, match="must be \\(B, 1, H, W\\)"):
        warp_masks(torch.zeros(6, 6), frame_shifts(3, "right", 2.0)[None])
