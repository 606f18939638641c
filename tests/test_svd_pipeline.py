"""Stable Video Diffusion's image-to-video sampling (``minivdm.methods.image_to_video``) on tiny random components:

* parity: our CLIP preprocessing + encoder, noise-augmented VAE latent, added time ids, per-frame guidance, EDM Euler
  loop with our SVDUNet (loaded from the diffusers model's save_pretrained folder) and chunked temporal decoding
  reproduce diffusers' StableVideoDiffusionPipeline from the same generator (both draw the augmentation noise, then
  the initial noise, from it in the same order): latents and frames within 1e-3 (measured: latents 7e-5 at a
  mean |z| of 2.3, frames 5e-6);
* the antialiased 224 resize before CLIP is diffusers' helper, shrinking and enlarging;
* the guidance scale is per frame: with one step the output is linear in w_f, frame by frame;
* bad input refused by name.
"""

from __future__ import annotations

import pytest
import torch

from minivdm.methods.image_to_video import (
    decode_svd_latents,
    frame_guidance_scales,
    generate_image_to_video,
    resize_with_antialiasing,
)
from minivdm.models.svd_unet import load_svd_unet

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-3
CLIP_DIM = 32
# stabilityai/stable-video-diffusion-img2vid(-xt)'s scheduler_config.json
SVD_SCHEDULER = dict(  # noqa: C408
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    prediction_type="v_prediction", interpolation_type="linear", use_karras_sigmas=True, sigma_min=0.002,
    sigma_max=700.0, timestep_spacing="leading", timestep_type="continuous", steps_offset=1)


def _perturb(model, scale: float):
    """Every parameter moved by normal noise, so that no zero-initialised layer hides a wrong branch."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(scale * torch.randn_like(parameter))
    return model.eval()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 2-level SVD U-Net (saved and read back through load_svd_unet), a 3-level temporal-decoder VAE (4x), a CLIP
    vision tower at 224 with 32-pixel patches, and diffusers' pipeline over the same modules."""
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    unet = _perturb(UNetSpatioTemporalConditionModel(
        sample_size=8, in_channels=8, out_channels=4, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"), num_attention_heads=(2, 4),
        layers_per_block=1, cross_attention_dim=CLIP_DIM, addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24, num_frames=3), 0.2)
    folder = tmp_path_factory.mktemp("svd_unet")
    unet.save_pretrained(folder)
    vae = _perturb(AutoencoderKLTemporalDecoder(block_out_channels=(32, 32, 32), layers_per_block=1,
                                                down_block_types=("DownEncoderBlock2D",) * 3, latent_channels=4), 0.02)
    image_encoder = _perturb(CLIPVisionModelWithProjection(CLIPVisionConfig(
        image_size=224, patch_size=32, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, projection_dim=CLIP_DIM)), 0.02)
    feature_extractor = CLIPImageProcessor(image_mean=[0.48145466, 0.4578275, 0.40821073],
                                           image_std=[0.26862954, 0.26130258, 0.27577711])
    pipe = StableVideoDiffusionPipeline(vae=vae, image_encoder=image_encoder, unet=unet,
                                        scheduler=EulerDiscreteScheduler(**SVD_SCHEDULER),
                                        feature_extractor=feature_extractor)
    pipe.set_progress_bar_config(disable=True)
    return {"pipe": pipe, "unet": load_svd_unet(folder), "vae": vae, "image_encoder": image_encoder}


def pixel_images(batch: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """uint8 images (B, H, W, 3): smooth colour ramps plus noise, different per image."""
    generator = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, size)
    base = torch.stack([ramp.view(1, -1).expand(size, size), ramp.view(-1, 1).expand(size, size),
                        (ramp.view(1, -1) * ramp.view(-1, 1))], dim=-1)
    images = [(base.roll(7 * index, dims=index % 2) * 200 + torch.rand(size, size, 3, generator=generator) * 55)
              for index in range(batch)]
    return torch.stack(images).round().clamp(0, 255).to(torch.uint8)


def as_pil(pixels: torch.Tensor):
    import PIL.Image

    return [PIL.Image.fromarray(image.numpy()) for image in pixels]


def as_ours(pixels: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) in [-1, 1], with the arithmetic diffusers applies to a PIL image."""
    return (pixels.permute(0, 3, 1, 2).float() / 255.0) * 2.0 - 1.0


def assert_close_to_diffusers(case: str, our_latents, their_latents, our_video, their_video,
                              tolerance: float = TOLERANCE) -> None:
    """Latents (B, C, T, h, w) and frames (B, 3, T, H, W) in [-1, 1] within ``tolerance`` of diffusers' (the largest
    differences printed), whose output must carry a signal for the tolerance to mean something: latents of order 1,
    frames that vary and are not clipped."""
    latent_difference = (our_latents - their_latents).abs().max().item()
    video_difference = (our_video - their_video).abs().max().item()
    print(f"{case}: max |ours - diffusers| latents {latent_difference:.2e} (mean |z| {their_latents.abs().mean():.3f}),"
          f" frames {video_difference:.2e} (std {their_video.std():.3f}, "
          f"{(their_video.abs() < 0.99).float().mean():.0%} unclipped)")
    assert their_latents.abs().mean() > 0.3 and their_video.std() > 0.05
    assert (their_video.abs() < 0.99).float().mean() > 0.5
    assert latent_difference <= tolerance
    assert video_difference <= tolerance


# name -> (batch, our call's options); diffusers gets the same numbers (num_steps as num_inference_steps)
CASES = {
    "guided 1..3, chunks of 2 over 2 clips of 4 frames": (2, dict(  # noqa: C408
        num_frames=4, num_steps=4, min_guidance_scale=1.0, max_guidance_scale=3.0, fps=7, motion_bucket_id=127,
        noise_aug_strength=0.1, decode_chunk_size=2)),
    "unguided, 4 frames in chunks of 3, other micro-conditioning": (1, dict(  # noqa: C408
        num_frames=4, num_steps=3, min_guidance_scale=0.5, max_guidance_scale=1.0, fps=12, motion_bucket_id=30,
        noise_aug_strength=0.3, decode_chunk_size=3)),
}


def their_call(options: dict) -> dict:
    renamed = {("num_inference_steps" if key == "num_steps" else key): value for key, value in options.items()}
    return dict(height=32, width=32, **renamed)  # noqa: C408


@pytest.mark.parametrize("case", list(CASES))
def test_our_pipeline_reproduces_diffusers_stable_video_diffusion_pipeline(tiny, case):
    batch, options = CASES[case]
    pixels = pixel_images(batch)
    pipe = tiny["pipe"]
    their_latents = pipe(as_pil(pixels), generator=torch.Generator().manual_seed(3), output_type="latent",
                         **their_call(options)).frames
    their_frames = pipe(as_pil(pixels), generator=torch.Generator().manual_seed(3), output_type="pt",
                        **their_call(options)).frames
    components = (tiny["unet"], tiny["vae"], tiny["image_encoder"], as_ours(pixels))
    our_latents = generate_image_to_video(*components, generator=torch.Generator().manual_seed(3), output="latents",
                                          progress=False, **options)
    our_video = generate_image_to_video(*components, generator=torch.Generator().manual_seed(3), progress=False,
                                        **options)
    # diffusers: latents (B, T, C, h, w), frames (B, T, 3, H, W) in [0, 1]; ours (B, C, T, h, w), (B, 3, T, H, W)
    their_latents = their_latents.permute(0, 2, 1, 3, 4)
    their_video = their_frames.permute(0, 2, 1, 3, 4) * 2 - 1
    num_frames = options["num_frames"]
    assert our_latents.shape == their_latents.shape == (batch, 4, num_frames, 8, 8)
    assert our_video.shape == their_video.shape == (batch, 3, num_frames, 32, 32)
    assert_close_to_diffusers(case, our_latents, their_latents, our_video, their_video)


@pytest.mark.parametrize("size, shape", [((224, 224), (2, 3, 600, 900)), ((224, 224), (1, 3, 32, 48)),
                                         ((20, 30), (1, 3, 64, 64))])
def test_resize_before_clip_is_diffusers_antialiased_resize(size, shape):
    from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import _resize_with_antialiasing

    image = torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ours = resize_with_antialiasing(image, size)
    assert ours.shape == (*shape[:2], *size)
    assert (ours - _resize_with_antialiasing(image, size)).abs().max() <= 1e-5
    if shape[-1] > size[1]:  # shrinking blurs first: less aliasing than a plain bicubic resize of the noise
        plain = torch.nn.functional.interpolate(image, size=size, mode="bicubic", align_corners=True)
        assert ours.std() < 0.8 * plain.std()


def test_a_clip_decodes_the_same_alone_or_in_a_batch_unlike_diffusers_chunks(tiny):
    """Chunks of 2 frames over 2 clips of 3: ours cut each clip into its own chunks; diffusers' chunks run over
    (b t), so its second chunk is clip 0's last frame with clip 1's first, decoded together as one clip."""
    latents = torch.randn(2, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        both = decode_svd_latents(tiny["vae"], latents, 2)
        for index in range(2):
            alone = decode_svd_latents(tiny["vae"], latents[index:index + 1], 2)
            assert (both[index:index + 1] - alone).abs().max() < 1e-5
        theirs = tiny["pipe"].decode_latents(latents.permute(0, 2, 1, 3, 4), num_frames=3, decode_chunk_size=2)
    theirs = theirs.float().clamp(-1, 1)  # (B, 3, T, H, W), as ours
    assert (both[0, :, :2] - theirs[0, :, :2]).abs().max() < 1e-4  # a chunk of one clip: the same
    assert (both[1] - theirs[1]).abs().max() > 1e-3  # a chunk that spans the two clips: diffusers mixes them


def test_guidance_scale_ramps_over_frames(tiny):
    """With one step the sample is D(y; sigma_max), linear in each frame's v_f = v_uncond + w_f (v_cond - v_uncond)
    (the U-Net's inputs do not depend on w): w = (1, 2, 3) over 3 frames agrees with w = 1 (no guidance: the
    conditional v) on the first frame, with w = 3 on the last, and with their mean on the middle one."""
    assert torch.allclose(frame_guidance_scales(1.0, 3.0, 5), torch.tensor([1.0, 1.5, 2.0, 2.5, 3.0]))
    assert frame_guidance_scales(2.0, 3.0, 1).tolist() == [2.0]
    image = as_ours(pixel_images(1))

    def one_step(w_min, w_max):
        return generate_image_to_video(tiny["unet"], tiny["vae"], tiny["image_encoder"], image, num_frames=3,
                                       num_steps=1, min_guidance_scale=w_min, max_guidance_scale=w_max,
                                       generator=torch.Generator().manual_seed(4), output="latents", progress=False)

    ramp, low, high = one_step(1.0, 3.0), one_step(1.0, 1.0), one_step(3.0, 3.0)
    scale = (high - low).abs().mean()
    assert scale > 0.1  # guidance does change the sample
    # the step from y = 700 n to D computes y + (0 - sigma) (y - D) / sigma in float32: rounding of ~1e-4
    assert (ramp[:, :, 0] - low[:, :, 0]).abs().max() <= 1e-3
    assert (ramp[:, :, 2] - high[:, :, 2]).abs().max() <= 1e-3
    assert (ramp[:, :, 1] - (low[:, :, 1] + high[:, :, 1]) / 2).abs().max() <= 1e-3
    # and not one w for the whole clip: the first frame of the ramp is far from w = 3's
    assert (ramp[:, :, 0] - high[:, :, 0]).abs().mean() > 0.3 * scale


@pytest.mark.parametrize("change, error, match", [
    (dict(image=torch.zeros(1, 32, 32, 3)), ValueError, r"image must be \(B, 3, H, W\).*'b h w c -> b c h w'"),
    (dict(image=torch.zeros(1, 3, 30, 32)), ValueError, r"H and W of image .* multiples of 8 \(the VAE downsamples "
                                                        r"4x, then the U-Net 2x\), got 30x32"),
    (dict(image=torch.zeros(3, 32, 32)), ValueError, r"image must be \(B, C, H, W\)"),
    (dict(image=torch.full((1, 3, 32, 32), 200.0)), ValueError, r"image values must be in \[-1, 1\]"),
    (dict(fps=0), ValueError, r"fps must be > 0"),
    (dict(fps=-3.0), ValueError, r"fps must be > 0"),
    (dict(motion_bucket_id=-1), ValueError, r"motion_bucket_id must be in 0..255: it names one of SVD's 256"),
    (dict(motion_bucket_id=256), ValueError, r"motion_bucket_id must be in 0..255"),
    (dict(motion_bucket_id=127.5), ValueError, r"motion_bucket_id must be a whole number: it names"),
    (dict(motion_bucket_id="127"), TypeError, r"motion_bucket_id must be an int"),
    (dict(num_frames=0), ValueError, r"num_frames must be a positive int"),
    (dict(decode_chunk_size=0), ValueError, r"decode_chunk_size must be a positive int"),
    (dict(num_steps=0), ValueError, r"num_steps must be a positive int"),
    (dict(min_guidance_scale=3.5), ValueError, r"min_guidance_scale \(the first frame's guidance\) must be <= "
                                               r"max_guidance_scale"),
    (dict(noise_aug_strength=-0.1), ValueError, r"noise_aug_strength must be >= 0"),
    (dict(output="pil"), ValueError, r"output must be 'video' or 'latents'"),
    (dict(unet="unet"), TypeError, r"unet must be minivdm's SVDUNet"),
])
def test_bad_input_is_refused_by_name(tiny, change, error, match):
    arguments = dict(unet=tiny["unet"], vae=tiny["vae"], image_encoder=tiny["image_encoder"],  # noqa: C408
                     image=torch.zeros(1, 3, 32, 32), num_frames=3, num_steps=2, progress=False)
    arguments.update(change)
    with pytest.raises(error, match=match):
        generate_image_to_video(**arguments)
