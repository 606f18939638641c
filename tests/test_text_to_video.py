"""ModelScope text-to-video with our 3D U-Net and DDIM: diffusers' TextToVideoSDPipeline reproduced, and
the full-scale command path on a tiny checkpoint in the published folder layout."""

import pytest
import torch
from einops import rearrange

from minivdm.__main__ import main
from minivdm.io.video_files import read_video
from minivdm.methods.text_to_video import load_video_components, text_to_video
from minivdm.models.unet_3d_condition import UNet3DConditionModel
from sd_fixtures import make_tiny_sd_pipeline, make_tiny_text_to_video_pipeline

PROMPTS = ["a red circle moving left", "a blue square"]


def test_our_text_to_video_loop_reproduces_diffusers_text_to_video_pipeline(tmp_path):
    pipe = make_tiny_text_to_video_pipeline(tmp_path)
    expected = pipe(PROMPTS, num_frames=4, num_inference_steps=10, guidance_scale=9.0, output_type="np",
                    generator=torch.Generator().manual_seed(0)).frames  # (B, T, H, W, C) in [0, 1]
    expected = rearrange(torch.as_tensor(expected), "b t h w c -> b c t h w") * 2 - 1
    unet, vae, text_encoder, tokenizer, settings = load_video_components(tmp_path)
    assert isinstance(unet, UNet3DConditionModel)
    video = text_to_video(unet, vae, text_encoder, tokenizer, settings, PROMPTS, num_frames=4, num_steps=10,
                          guidance_scale=9.0, generator=torch.Generator().manual_seed(0), progress=False)
    assert video.shape == expected.shape == (2, 3, 4, 16, 16)
    assert (video - expected).abs().max() <= 2e-3  # 1e-3 in diffusers' [0, 1] pixels
    assert (video[0] - video[1]).abs().max() > 1e-2  # the prompt matters
    assert (video[:, :, 0] - video[:, :, -1]).abs().max() > 1e-2  # frames are not copies of each other


def test_text_to_video_refuses_an_image_unet_and_bad_frame_counts(tmp_path):
    make_tiny_sd_pipeline(tmp_path / "image")
    from minivdm.methods.text_to_image import load_components

    unet, vae, text_encoder, tokenizer, settings = load_components(tmp_path / "image")
    with pytest.raises(TypeError, match="UNet3DConditionModel"):
        text_to_video(unet, vae, text_encoder, tokenizer, settings, ["x"], num_steps=2, progress=False)
    make_tiny_text_to_video_pipeline(tmp_path / "video")
    unet, vae, text_encoder, tokenizer, settings = load_video_components(tmp_path / "video")
    with pytest.raises(ValueError, match="num_frames"):
        text_to_video(unet, vae, text_encoder, tokenizer, settings, ["x"], num_frames=0, num_steps=2, progress=False)


def test_generate_command_writes_the_video_our_pipeline_makes(tmp_path):
    make_tiny_text_to_video_pipeline(tmp_path / "weights")
    out = tmp_path / "out" / "clip.gif"
    assert main(["generate", "--config", "modelscope-t2v", "--prompt", PROMPTS[0], "--weights",
                 str(tmp_path / "weights"), "--out", str(out), "--steps", "4", "--frames", "6", "--seed", "3",
                 "--device", "cpu", "--no-config-check"]) == 0
    written = read_video(out)  # (C, T, H, W) in [-1, 1]
    unet, vae, text_encoder, tokenizer, settings = load_video_components(tmp_path / "weights")
    expected = text_to_video(unet, vae, text_encoder, tokenizer, settings, [PROMPTS[0]], num_frames=6, num_steps=4,
                             generator=torch.Generator().manual_seed(3), progress=False)[0]
    assert written.shape == expected.shape == (3, 6, 16, 16)
    # 8-bit colours with a palette: close, not equal (another seed is 0.34 away)
    assert (written - expected).abs().mean() < 0.02


def test_generate_refuses_weights_of_another_architecture_for_video(tmp_path, capsys):
    make_tiny_text_to_video_pipeline(tmp_path / "weights")
    assert main(["generate", "--config", "modelscope-t2v", "--prompt", "x", "--weights", str(tmp_path / "weights"),
                 "--out", str(tmp_path / "x.mp4"), "--steps", "2", "--device", "cpu"]) == 2
    assert "do not have the modelscope-t2v architecture" in capsys.readouterr().err
