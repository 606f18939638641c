"""I2VGen-XL image-to-video (`minivdm generate --config i2vgen-xl --image FILE --prompt TEXT`) on a tiny random
pipeline folder in the published layout (unet/, vae/, text_encoder/, tokenizer/, image_encoder/, feature_extractor/,
scheduler/, written by I2VGenXLPipeline.save_pretrained), never downloaded:

* the command writes exactly the video our pipeline (``generate_i2vgen_xl``) makes from the image file fitted to
  --width x --height as diffusers fits it, with the folder's scheduler and CLIP statistics and the command's options,
  as an .mp4 of --frames frames; without options the pipeline gets diffusers' defaults (1280 x 704, 16 frames at
  16 fps, 50 steps, guidance 9, one frame decoded at a time);
* everything a user can get wrong is refused by name, in one line (exit 2), before any weight is read.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from minivdm.__main__ import main

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

from test_i2vgen_xl_pipeline import pixel_images, tiny  # noqa: E402, F401  (tiny: the components' fixture)
from test_svd_full_scale import edited_folder, record_calls, refused_line, write_png  # noqa: E402
from test_svd_pipeline import as_ours, as_pil  # noqa: E402

IMAGE_SIZE = (60, 64)  # height x width of the image file: fitted to the video's 48 x 32 by scaling and cropping


@pytest.fixture(scope="module")
def i2vgen_folder(tiny, tmp_path_factory):  # noqa: F811
    """The tiny pipeline (v-prediction, zero terminal SNR) saved in the published layout, and a 64 x 50 PNG."""
    root = tmp_path_factory.mktemp("i2vgen_xl_full_scale")
    tiny["pipe"]("v, zero terminal SNR").save_pretrained(root / "pipe", safe_serialization=True)
    pixels = pixel_images(1, *IMAGE_SIZE)[0]
    return {"folder": root / "pipe", "image": write_png(root / "image.png", pixels), "pixels": pixels}


def command(folder, image, out, *extra: str, prompt: str | None = "a cat runs", config: str = "i2vgen-xl") -> list[str]:
    argv = ["generate", "--config", config, "--weights", str(folder), "--image", str(image), "--out", str(out),
            "--seed", "5", "--device", "cpu", "--no-config-check", *extra]
    return argv + (["--prompt", prompt] if prompt is not None else [])


@pytest.fixture
def recorded(monkeypatch):
    """Every call of generate_i2vgen_xl through the command, with its arguments and video."""
    import minivdm.methods.i2vgen_xl as module

    return record_calls(monkeypatch, module, "generate_i2vgen_xl")


def test_generate_writes_the_video_our_pipeline_makes(tiny, i2vgen_folder, tmp_path, recorded, capsys):  # noqa: F811
    from minivdm.full_scale_i2vgen_xl import fit_image
    from minivdm.io.video_files import read_video, write_video
    from minivdm.methods.i2vgen_xl import generate_i2vgen_xl
    from minivdm.methods.image_to_video import CLIP_MEAN, CLIP_STD
    from minivdm.methods.text_to_image import SamplerSettings
    from minivdm.models.i2vgen_xl_unet import load_i2vgen_xl_unet
    from test_i2vgen_xl_pipeline import SCHEDULERS

    out = tmp_path / "clip.mp4"
    assert main(command(i2vgen_folder["folder"], i2vgen_folder["image"], out, "--frames", "3", "--steps", "2",
                        "--height", "48", "--width", "32", "--fps", "8", "--guidance", "4", "--decode-chunk-size", "2",
                        "--negative-prompt", "blurry")) == 0
    assert capsys.readouterr().out.strip() == str(out)
    (call,) = recorded
    kwargs = call["kwargs"]
    assert {key: kwargs[key] for key in ("negative_prompt", "num_frames", "num_steps", "guidance_scale", "fps",
                                         "decode_chunk_size", "clip_mean", "clip_std")} == {
        "negative_prompt": "blurry", "num_frames": 3, "num_steps": 2, "guidance_scale": 4.0, "fps": 8,
        "decode_chunk_size": 2, "clip_mean": CLIP_MEAN, "clip_std": CLIP_STD}
    # the scheduler config's DDIM, the prompt, and the image file fitted to 48 x 32 as diffusers fits it
    settings, saved = call["args"][5], SamplerSettings.from_scheduler_config(SCHEDULERS["v, zero terminal SNR"])
    assert (settings.prediction_type, settings.timestep_spacing) == (saved.prediction_type, saved.timestep_spacing) == (
        "v", "trailing")
    for ours, theirs in zip(settings.times_and_step_ends(7), saved.times_and_step_ends(7)):
        assert torch.equal(ours, theirs)
    assert torch.equal(settings.schedule.alpha_sigma(ours)[0], saved.schedule.alpha_sigma(ours)[0])
    assert call["args"][7] == "a cat runs"
    fitted = fit_image(i2vgen_folder["pixels"], 48, 32)
    assert torch.equal(call["args"][6], as_ours(fitted[None]))
    expected = generate_i2vgen_xl(load_i2vgen_xl_unet(i2vgen_folder["folder"]), tiny["vae"], tiny["text_encoder"],
                                  tiny["tokenizer"], tiny["image_encoder"], settings, as_ours(fitted[None]),
                                  "a cat runs", generator=torch.Generator().manual_seed(5), progress=False,
                                  **{k: v for k, v in kwargs.items() if k != "generator"})
    # float rounding only: the folder's image encoder and the fixture's in-memory one differ by ~1e-7 in the embedding
    assert (call["video"] - expected).abs().max() <= 1e-4
    assert expected.std() > 0.05  # a video with something in it
    written = read_video(out)
    assert written.shape == (3, 3, 48, 32)  # 3 frames of 48 x 32
    # exactly the encoding of our pipeline's video at --fps (H.264 at this size is lossy)
    assert torch.equal(written, read_video(write_video(tmp_path / "expected.mp4", expected[0], fps=8)))
    assert (written - expected[0]).abs().mean() < 0.15


@pytest.mark.parametrize("image_size, video_size", [((60, 64), (48, 32)), ((48, 32), (48, 32)), ((30, 20), (48, 32)),
                                                    ((1080, 1920), (704, 1280))])
def test_fit_image_is_diffusers_box_resize_and_centre_crop(image_size, video_size):
    from diffusers.pipelines.deprecated.i2vgen_xl.pipeline_i2vgen_xl import _center_crop_wide

    from minivdm.full_scale_i2vgen_xl import fit_image

    pixels = pixel_images(1, *image_size)
    theirs = torch.from_numpy(np.array(_center_crop_wide(as_pil(pixels), video_size[::-1])[0]))
    assert torch.equal(fit_image(pixels[0], *video_size), theirs)


@pytest.mark.parametrize("image_size, video_size", [((50, 64), (48, 32)), ((100, 80), (48, 32)),
                                                    ((768, 1024), (704, 1280))])
def test_fit_image_never_cuts_past_the_edge(image_size, video_size):
    """diffusers floors w / scale and h / scale in floating point: 50 / (50 / 48) = 47.99.. gives 47 rows where 48
    are cut out, and the crop pads a black line (so does a 1024 x 768 photo fitted to 1280 x 704). Ours keeps the
    scaled image at least the video's size."""
    from diffusers.pipelines.deprecated.i2vgen_xl.pipeline_i2vgen_xl import _center_crop_wide

    from minivdm.full_scale_i2vgen_xl import fit_image

    pixels = pixel_images(1, *image_size).clamp(min=1)  # no black pixel of its own
    theirs = torch.from_numpy(np.array(_center_crop_wide(as_pil(pixels), video_size[::-1])[0]))
    ours = fit_image(pixels[0], *video_size)
    assert ours.shape == theirs.shape == (*video_size, 3)
    black = (theirs == 0).all(dim=-1)
    assert black.all(dim=0).any() or black.all(dim=1).any()  # diffusers' black edge
    assert not (ours == 0).all(dim=-1).any()


def test_generate_defaults_are_diffusers_pipeline_defaults(i2vgen_folder, tmp_path, monkeypatch):
    """Without options: a 1280 x 704 video of 16 frames at 16 fps, 50 steps, w = 9, no negative prompt, one frame
    decoded at a time (the pipeline is replaced by a stub that records its arguments)."""
    import minivdm.methods.i2vgen_xl as module

    calls = []

    def stub(*args, **kwargs):
        calls.append((args, kwargs))
        return torch.zeros(1, 3, kwargs["num_frames"], 8, 8)

    monkeypatch.setattr(module, "generate_i2vgen_xl", stub)
    assert main(command(i2vgen_folder["folder"], i2vgen_folder["image"], tmp_path / "clip.gif")) == 0
    (args, kwargs), = calls
    assert tuple(args[6].shape) == (1, 3, 704, 1280)
    assert {key: kwargs[key] for key in ("negative_prompt", "num_frames", "num_steps", "guidance_scale", "fps",
                                         "decode_chunk_size")} == {
        "negative_prompt": "", "num_frames": 16, "num_steps": 50, "guidance_scale": 9.0, "fps": 16,
        "decode_chunk_size": 1}


SIZE = ("--height", "48", "--width", "32")
SCHEDULER = "scheduler/scheduler_config.json"
FOLDER = ("is not an I2VGen-XL pipeline folder (unet/, vae/, text_encoder/, tokenizer/, image_encoder/, "
          "feature_extractor/, scheduler/): it has no ")
# name -> (how the command line or the folder changes, the message)
REFUSALS = {
    "no image": (dict(no_image=True), "--config i2vgen-xl needs --image and --prompt"),
    "no prompt": (dict(prompt=None), "--config i2vgen-xl needs --image and --prompt"),
    "svd's option": (dict(extra=("--motion-bucket", "40")), "--config i2vgen-xl takes no --motion-bucket"),
    "negative prompt with svd": (dict(config="svd", prompt=None, extra=("--negative-prompt", "x")),
                                 "--negative-prompt: only for --config i2vgen-xl, not svd"),
    "fps 0": (dict(extra=("--fps", "0")), "argument --fps: expected a positive whole number, got '0'"),
    "frames 0": (dict(extra=("--frames", "0")), "argument --frames: expected a positive whole number"),
    "decode chunk 0": (dict(extra=("--decode-chunk-size", "0")), "argument --decode-chunk-size: expected a positive"),
    "height 0": (dict(extra=("--height", "0", "--width", "32")), "--height must be a whole number >= 1, got 0"),
    "size not a multiple": (dict(extra=("--height", "42", "--width", "32")),
                            "--width x --height is 32x42; both must be multiples of 4"),
    "guidance nan": (dict(extra=("--guidance", "nan", *SIZE)), "--guidance must be a finite number"),
    "png out": (dict(out="x.png"), "i2vgen-xl writes a video: --out must end in .mp4 or .gif"),
    "missing weights folder": (dict(weights="/no/such/folder"),
                               "--weights /no/such/folder: no folder there (and it is not a Hugging Face id"),
    "missing image file": (dict(image="missing"), "missing.png: no file there; give an image (PNG, JPEG)"),
    "not an image": (dict(image="text"), "notes.png is not an image minivdm can read"),
    "architecture": (dict(config_check=True), "the weights do not have the i2vgen-xl architecture: they differ in"),
    "no feature extractor": (dict(remove="feature_extractor"), FOLDER + "feature_extractor/preprocessor_config.json"),
    "no tokenizer": (dict(remove="tokenizer"), FOLDER + "tokenizer/"),
    "no image encoder": (dict(remove="image_encoder"), FOLDER + "image_encoder/config.json"),
    "no scheduler": (dict(remove="scheduler"), FOLDER + "scheduler/scheduler_config.json"),
    "thresholding": (dict(folder=(SCHEDULER, {"thresholding": True})),
                     "scheduler config has thresholding=True; minivdm's DDIM supports only thresholding=False"),
    "unknown scheduler option": (dict(folder=(SCHEDULER, {"shift": 3.0})),
                                 "scheduler config has shift=3.0, an option minivdm does not know"),
    "flow-matching scheduler": (dict(folder=(SCHEDULER, {"_class_name": "FlowMatchEulerDiscreteScheduler"})),
                                "scheduler config is a FlowMatchEulerDiscreteScheduler, whose noise schedule"),
    "temporal VAE": (dict(folder=("vae/config.json", {"_class_name": "AutoencoderKLTemporalDecoder"})),
                     "the VAE is a AutoencoderKLTemporalDecoder with latent_channels=4; I2VGen-XL decodes frame by "
                     "frame with diffusers' AutoencoderKL"),
    "text encoder width": (dict(folder=("text_encoder/config.json", {"hidden_size": 16})),
                           "the text encoder has hidden_size=16; the U-Net attends to tokens of "
                           "cross_attention_dim=32"),
    "CLIP statistics": (dict(folder=("feature_extractor/preprocessor_config.json", {"image_mean": [0.5]})),
                        "the feature extractor has image_mean=[0.5]; expected three numbers"),
    "CLIP crop size": (dict(folder=("feature_extractor/preprocessor_config.json",
                                    {"crop_size": {"height": 224, "width": 224}})),
                       "the feature extractor crops to {'height': 224, 'width': 224} but the image encoder takes "
                       "image_size=32"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_generate_refuses_bad_input_by_name_before_loading(i2vgen_folder, tmp_path, monkeypatch, capsys, case):
    import minivdm.methods.text_to_image as module

    def must_not_load(*args, **kwargs):
        raise AssertionError("a checkpoint was loaded before the input was checked")

    monkeypatch.setattr(module, "load_components", must_not_load)
    change, message = REFUSALS[case]
    folder, image = change.get("weights", i2vgen_folder["folder"]), i2vgen_folder["image"]
    if "folder" in change:
        folder = edited_folder(i2vgen_folder, tmp_path, *change["folder"])
    if "remove" in change:
        folder = shutil.copytree(folder, tmp_path / "pipe")
        shutil.rmtree(folder / change["remove"])
    if change.get("image") == "missing":
        image = tmp_path / "missing.png"
    elif change.get("image") == "text":
        image = tmp_path / "notes.png"
        image.write_text("not a picture")
    argv = command(folder, image, tmp_path / change.get("out", "x.mp4"), *change.get("extra", SIZE),
                   prompt=change.get("prompt", "a cat runs"), config=change.get("config", "i2vgen-xl"))
    if change.get("no_image"):
        del argv[argv.index("--image"):argv.index("--image") + 2]
    if change.get("config_check"):
        argv.remove("--no-config-check")
    assert message in refused_line(argv, capsys)
