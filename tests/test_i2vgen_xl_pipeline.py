"""I2VGen-XL's image-to-video sampling (``minivdm.methods.i2vgen_xl``) on tiny random components:

* parity: our caption tokens (CLIP's penultimate layer), CLIP view of the image, posterior-sampled image latent with
  its frame-position ramp, fps, guidance (negative prompt, zero CLIP embedding) and DDIM loop with our I2VGenXLUNet
  (loaded from the diffusers model's save_pretrained folder), then the VAE frame by frame in chunks, reproduce
  diffusers' I2VGenXLPipeline: latents and frames within 1e-3, for an eps config (leading spacing) and a v-prediction
  zero-terminal-SNR one (trailing), guided and not;
* the CLIP view is diffusers' crop and resize (within one grey level where diffusers resizes once), and the image
  latent frames are diffusers' (the same posterior sample, then k / (T - 1) on frame k + 1);
* bad input refused by name.

diffusers draws the posterior's noise from torch's global generator and z_T from its ``generator``; we draw both from
ours, n_img first. Each test seeds the global generator as ours starts and hands diffusers a generator past n_img.
With transformers 5 diffusers' clip_skip path reads ``text_encoder.text_model``, which CLIPTextModel no longer has:
the fixture points that name at the model itself (where transformers 4 keeps the same layers).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from minivdm.methods.i2vgen_xl import clip_view, encode_image_latent, generate_i2vgen_xl, image_latent_frames
from minivdm.methods.image_to_video import CLIP_MEAN, CLIP_STD
from minivdm.methods.text_to_image import SamplerSettings
from minivdm.models.i2vgen_xl_unet import load_i2vgen_xl_unet
from sd_fixtures import perturb_parameters, tiny_shared_components
from test_svd_pipeline import as_ours, as_pil, assert_close_to_diffusers

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

WIDTH = 32  # cross_attention_dim = the text encoder's hidden size = the image encoder's projection_dim
CLIP_SIZE = 32
TINY_UNET = dict(  # noqa: C408
    sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64),
    down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"), up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
    layers_per_block=1, cross_attention_dim=WIDTH, attention_head_dim=16, norm_num_groups=4)
SCHEDULERS = {
    # Stable Diffusion's (and diffusers' I2VGen-XL tests'): eps, leading spacing, steps_offset 1
    "eps": dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,  # noqa: C408
                set_alpha_to_one=False, steps_offset=1),
    # v-prediction with zero terminal SNR, sampled from the last timestep
    "v, zero terminal SNR": dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",  # noqa: C408
                                 clip_sample=False, prediction_type="v_prediction", rescale_betas_zero_snr=True,
                                 timestep_spacing="trailing", set_alpha_to_one=True, steps_offset=1),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 2-level I2VGen-XL U-Net (saved and read back through load_i2vgen_xl_unet), a 2x VAE, a CLIP text encoder with
    a character tokenizer (16 tokens), a CLIP vision tower at 32 pixels; every weight moved off its initialisation.
    ``pipe(name)``: diffusers' pipeline over these modules with scheduler SCHEDULERS[name]."""
    from diffusers import DDIMScheduler, I2VGenXLPipeline, I2VGenXLUNet
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    root = tmp_path_factory.mktemp("i2vgen_xl")
    torch.manual_seed(0)
    shared = tiny_shared_components(root)
    unet = perturb_parameters(I2VGenXLUNet(**TINY_UNET), seed=1, std=0.1)
    unet.save_pretrained(root / "unet")
    text_encoder = perturb_parameters(shared["text_encoder"], seed=3, std=0.02)
    if not hasattr(text_encoder, "text_model"):  # transformers 5 (see the module docstring)
        object.__setattr__(text_encoder, "text_model", text_encoder)
    components = dict(  # noqa: C408
        unet=unet, vae=perturb_parameters(shared["vae"], seed=2, std=0.02), text_encoder=text_encoder,
        tokenizer=shared["tokenizer"],
        image_encoder=perturb_parameters(CLIPVisionModelWithProjection(CLIPVisionConfig(
            image_size=CLIP_SIZE, patch_size=8, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, projection_dim=WIDTH)), seed=4, std=0.02),
        feature_extractor=CLIPImageProcessor(crop_size=CLIP_SIZE, size=CLIP_SIZE, image_mean=list(CLIP_MEAN),
                                             image_std=list(CLIP_STD)))

    def pipe(scheduler: str):
        pipeline = I2VGenXLPipeline(scheduler=DDIMScheduler(**SCHEDULERS[scheduler]), **components)
        pipeline.set_progress_bar_config(disable=True)
        return pipeline

    ours = (load_i2vgen_xl_unet(root / "unet"), components["vae"], text_encoder, components["tokenizer"],
            components["image_encoder"])
    return {"pipe": pipe, "ours": ours, "root": root, **components}


def pixel_images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """uint8 images (B, H, W, 3): colour ramps plus noise, different per image."""
    generator = torch.Generator().manual_seed(seed)
    rows, columns = torch.linspace(0, 1, height).view(-1, 1), torch.linspace(0, 1, width).view(1, -1)
    base = torch.stack([columns.expand(height, width), rows.expand(height, width), rows * columns], dim=-1)
    images = [base.roll(5 * index, dims=index % 2) * 200 + torch.rand(height, width, 3, generator=generator) * 55
              for index in range(batch)]
    return torch.stack(images).round().clamp(0, 255).to(torch.uint8)


def seeded_like_ours(seed: int, posterior_shape: tuple[int, ...]) -> torch.Generator:
    """Our generator draws n_img, then z_T; diffusers draws n_img from the global generator and z_T from the one it
    is given: seed the global one as ours starts, and give diffusers one past n_img."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    torch.randn(posterior_shape, generator=generator)
    return generator


# name -> (scheduler, batch, (H, W), our call's options); diffusers gets the same numbers
CASES = {
    "2 portrait images, guided, negative prompts, eps DDIM, chunks of 2": ("eps", 2, (40, 32), dict(  # noqa: C408
        prompts=["a cat runs", "waves on a beach"], negative_prompt=["blurry", "still"], num_frames=3, num_steps=3,
        guidance_scale=6.0, fps=8, decode_chunk_size=2)),
    "a square image resized for CLIP, unguided, v zero-SNR DDIM, 4 frames": (
        "v, zero terminal SNR", 1, (48, 48), dict(  # noqa: C408
            prompts=["a red car"], negative_prompt=[""], num_frames=4, num_steps=4, guidance_scale=1.0, fps=16,
            decode_chunk_size=3)),
}


def their_call(options: dict, height: int, width: int) -> dict:
    names = {"prompts": "prompt", "num_steps": "num_inference_steps", "fps": "target_fps"}
    renamed = {names.get(key, key): value for key, value in options.items()}
    return dict(height=height, width=width, **renamed)  # noqa: C408


@pytest.mark.parametrize("case", list(CASES))
def test_our_pipeline_reproduces_diffusers_i2vgen_xl_pipeline(tiny, case):
    scheduler, batch, (height, width), options = CASES[case]
    pixels = pixel_images(batch, height, width)
    pipe = tiny["pipe"](scheduler)
    posterior_shape = (batch, 4, height // 2, width // 2)
    their_latents = pipe(image=as_pil(pixels), generator=seeded_like_ours(3, posterior_shape), output_type="latent",
                         **their_call(options, height, width)).frames
    their_frames = pipe(image=as_pil(pixels), generator=seeded_like_ours(3, posterior_shape), output_type="pt",
                        **their_call(options, height, width)).frames
    settings = SamplerSettings.from_scheduler_config(dict(pipe.scheduler.config))
    arguments = dict(settings=settings, image=as_ours(pixels), progress=False, **options)  # noqa: C408
    our_latents = generate_i2vgen_xl(*tiny["ours"], generator=torch.Generator().manual_seed(3), output="latents",
                                     **arguments)
    our_video = generate_i2vgen_xl(*tiny["ours"], generator=torch.Generator().manual_seed(3), **arguments)
    # diffusers: latents (B, C, T, h, w) as ours; frames (B, T, 3, H, W) in [0, 1], ours (B, 3, T, H, W) in [-1, 1]
    their_video = their_frames.permute(0, 2, 1, 3, 4) * 2 - 1
    num_frames = options["num_frames"]
    assert our_latents.shape == their_latents.shape == (batch, 4, num_frames, height // 2, width // 2)
    assert our_video.shape == their_video.shape == (batch, 3, num_frames, height, width)
    assert_close_to_diffusers(case, our_latents, their_latents, our_video, their_video)


@pytest.mark.parametrize("height, width, size", [(64, 64, 32), (48, 48, 32), (32, 32, 48), (80, 64, 32),
                                                 (64, 40, 224), (40, 32, 32)])
def test_clip_view_is_diffusers_centre_square_and_bilinear_resize(height, width, size):
    """diffusers crops the centre square (of the video's width) and resizes it with PIL's bilinear filter, in uint8;
    ours in float: within one grey level, and the exact pixels when no resize is needed (40 x 32 -> 32)."""
    from diffusers.pipelines.deprecated.i2vgen_xl.pipeline_i2vgen_xl import _center_crop_wide, _resize_bilinear

    pixels = pixel_images(1, height, width, seed=1)
    theirs = _resize_bilinear(_center_crop_wide(as_pil(pixels), (width, width)), (size, size))[0]
    theirs = torch.from_numpy(np.array(theirs)).permute(2, 0, 1).float() / 255
    ours = clip_view(as_ours(pixels), size)[0]
    assert ours.shape == (3, size, size)
    if min(height, width) == size:
        assert (ours - theirs).abs().max() <= 1e-6
    else:
        assert (ours - theirs).abs().max() <= 1 / 255 + 1e-4


@pytest.mark.parametrize("num_frames", [1, 2, 5])
def test_image_latents_are_diffusers_posterior_sample_and_position_ramp(tiny, num_frames):
    pipe = tiny["pipe"]("eps")
    pipe._guidance_scale = 1.0  # prepare_image_latents reads it: one branch
    image = as_ours(pixel_images(2, 16, 16))
    torch.manual_seed(7)
    theirs = pipe.prepare_image_latents(image, device="cpu", num_frames=num_frames, num_videos_per_prompt=1)
    z_img = encode_image_latent(tiny["vae"], image, torch.Generator().manual_seed(7))
    ours = image_latent_frames(z_img, num_frames)
    assert ours.shape == theirs.shape == (2, 4, num_frames, 8, 8)
    assert (ours - theirs).abs().max() <= 1e-6
    assert torch.equal(ours[:, :, 0], z_img)
    for k in range(1, num_frames):  # frame k + 1: the constant k / (T - 1)
        assert torch.all(ours[:, :, k] == k / (num_frames - 1))


@pytest.mark.parametrize("change, error, match", [
    (dict(image=torch.zeros(1, 32, 32, 3)), ValueError, r"image must be \(B, 3, H, W\).*'b h w c -> b c h w'"),
    (dict(image=torch.zeros(1, 3, 30, 32)), ValueError, r"H and W of image .* multiples of 4 \(the VAE downsamples "
                                                        r"2x, then the U-Net 2x\), got 30x32"),
    (dict(image=torch.zeros(3, 32, 32)), ValueError, r"image must be \(B, C, H, W\)"),
    (dict(image=torch.full((1, 3, 32, 32), 200.0)), ValueError, r"image values must be in \[-1, 1\]"),
    (dict(fps=0), ValueError, r"fps must be > 0 \(the frame rate the video is conditioned on"),
    (dict(fps=-3.0), ValueError, r"fps must be > 0"),
    (dict(fps="16"), TypeError, r"fps must be a number"),
    (dict(num_frames=0), ValueError, r"num_frames must be a positive int"),
    (dict(num_steps=0), ValueError, r"num_steps must be a positive int"),
    (dict(decode_chunk_size=0), ValueError, r"decode_chunk_size must be a positive int"),
    (dict(guidance_scale=float("nan")), ValueError, r"guidance_scale must be finite"),
    (dict(prompts=["a", "b"]), ValueError, r"prompts must have one entry per image: image has B = 1, prompts has 2"),
    (dict(prompts=None), TypeError, r"prompts must be a str \(for every image\) or a list of B str"),
    (dict(negative_prompt=["x", "y"]), ValueError, r"negative_prompt must have one entry per image"),
    (dict(output="pil"), ValueError, r"output must be 'video' or 'latents'"),
    (dict(generator=3), TypeError, r"generator must be a torch.Generator or None"),
    (dict(settings={"beta_schedule": "linear"}), TypeError, r"settings must be a SamplerSettings"),
    (dict(unet="unet"), TypeError, r"unet must be minivdm's I2VGenXLUNet"),
])
def test_bad_input_is_refused_by_name(tiny, change, error, match):
    unet, vae, text_encoder, tokenizer, image_encoder = tiny["ours"]
    arguments = dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,  # noqa: C408
                     image_encoder=image_encoder, settings=SamplerSettings.from_scheduler_config(SCHEDULERS["eps"]),
                     image=torch.zeros(1, 3, 32, 32), prompts="a cat", num_frames=2, num_steps=2, progress=False)
    arguments.update(change)
    with pytest.raises(error, match=match):
        generate_i2vgen_xl(**arguments)


def test_image_encoder_of_another_width_is_refused(tiny):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    unet, vae, text_encoder, tokenizer, _ = tiny["ours"]
    narrow = CLIPVisionModelWithProjection(CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=32,
                                                            intermediate_size=37, num_hidden_layers=1,
                                                            num_attention_heads=4, projection_dim=16))
    with pytest.raises(ValueError, match=r"the image encoder has projection_dim=16; the U-Net attends to tokens "
                                         r"of cross_attention_dim=32"):
        generate_i2vgen_xl(unet, vae, text_encoder, tokenizer, narrow,
                           SamplerSettings.from_scheduler_config(SCHEDULERS["eps"]), torch.zeros(1, 3, 32, 32), "a",
                           num_frames=2, num_steps=1, progress=False)
