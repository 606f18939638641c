"""Stable Video Diffusion image-to-video (`minivdm generate --config svd | svd-xt --image FILE`) on a tiny random
pipeline folder in the published layout (unet/, vae/, image_encoder/, feature_extractor/, scheduler/, written by
StableVideoDiffusionPipeline.save_pretrained), never downloaded:

* the command writes exactly the video our pipeline (``generate_image_to_video``) makes from the image file's pixels,
  with the scheduler config's sigmas and the command's micro-conditioning, as an .mp4 of --frames frames of the
  image's size;
* everything a user can get wrong is refused by name, in one line, before any weight is read.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from minivdm.__main__ import main

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

from test_svd_pipeline import as_ours, pixel_images, tiny  # noqa: E402, F401  (tiny: the tiny components' fixture)


def write_png(path, pixels: torch.Tensor):
    import PIL.Image

    PIL.Image.fromarray(pixels.numpy()).save(path)
    return path


@pytest.fixture(scope="module")
def svd_folder(tiny, tmp_path_factory):  # noqa: F811
    """The tiny pipeline saved in the published layout, and a 32x32 PNG."""
    root = tmp_path_factory.mktemp("svd_full_scale")
    tiny["pipe"].save_pretrained(root / "pipe", safe_serialization=True)
    return {"folder": root / "pipe", "image": write_png(root / "image.png", pixel_images(1)[0]),
            "pixels": pixel_images(1)}


def command(folder, image, out, *extra: str, config: str = "svd") -> list[str]:
    return ["generate", "--config", config, "--weights", str(folder), "--image", str(image), "--out", str(out),
            "--frames", "3", "--steps", "2", "--seed", "5", "--device", "cpu", "--no-config-check", *extra]


def record_calls(monkeypatch, module, name: str) -> list[dict]:
    """Every call of ``module.name`` from now on, with its arguments and result ("video")."""
    calls, real = [], getattr(module, name)

    def recording(*args, **kwargs):
        video = real(*args, **kwargs)
        calls.append({"args": args, "kwargs": kwargs, "video": video})
        return video

    monkeypatch.setattr(module, name, recording)
    return calls


def refused_line(argv: list[str], capsys) -> str:
    """The error line of a `minivdm generate` that must be refused with exit code 2, in one line, no traceback."""
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's errors (parser.error) exit; the command's own return 2
        code = exit.code
    assert code == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]  # argparse prints its usage first
    # the subcommand's argparse and runtime errors, or the top parser's parser.error
    assert last_line.startswith(("minivdm generate: error: ", "minivdm: error: generate: "))
    return last_line


@pytest.fixture
def recorded(monkeypatch):
    """Every call of generate_image_to_video through the command, with its arguments and video."""
    import minivdm.methods.image_to_video as module

    return record_calls(monkeypatch, module, "generate_image_to_video")


def test_generate_writes_the_video_our_pipeline_makes(tiny, svd_folder, tmp_path, recorded, capsys):  # noqa: F811
    from minivdm.io.video_files import read_video, write_video
    from minivdm.methods.image_to_video import generate_image_to_video
    from minivdm.models.svd_unet import load_svd_unet

    out = tmp_path / "clip.mp4"
    assert main(command(svd_folder["folder"], svd_folder["image"], out, "--motion-bucket", "40", "--fps", "6")) == 0
    assert capsys.readouterr().out.strip() == str(out)
    (call,) = recorded
    kwargs = call["kwargs"]
    # the scheduler config's sigmas, the command's micro-conditioning and SVD's defaults for the rest
    assert {key: kwargs[key] for key in ("num_frames", "num_steps", "min_guidance_scale", "max_guidance_scale", "fps",
                                         "motion_bucket_id", "noise_aug_strength", "sigma_min", "sigma_max")} == {
        "num_frames": 3, "num_steps": 2, "min_guidance_scale": 1.0, "max_guidance_scale": 3.0, "fps": 6,
        "motion_bucket_id": 40, "noise_aug_strength": 0.02, "sigma_min": 0.002, "sigma_max": 700.0}
    # the image file's pixels, read as [-1, 1] RGB, are the pipeline's image
    assert torch.equal(call["args"][3], as_ours(svd_folder["pixels"]))
    expected = generate_image_to_video(load_svd_unet(svd_folder["folder"]), tiny["vae"], tiny["image_encoder"],
                                       as_ours(svd_folder["pixels"]), generator=torch.Generator().manual_seed(5),
                                       progress=False, **{k: v for k, v in kwargs.items() if k != "generator"})
    assert (call["video"] - expected).abs().max() <= 1e-5
    assert expected.std() > 0.05  # a video with something in it
    written = read_video(out)
    assert written.shape == (3, 3, 32, 32)  # 3 frames of the image's 32x32
    # exactly the encoding of our pipeline's video at --fps (H.264 at 32x32 is lossy)
    assert torch.equal(written, read_video(write_video(tmp_path / "expected.mp4", expected[0], fps=6)))
    assert (written - expected[0]).abs().mean() < 0.15


def edited_folder(svd_folder, tmp_path, path: str, change: dict, drop: tuple[str, ...] = ()):
    folder = shutil.copytree(svd_folder["folder"], tmp_path / "pipe")
    config_path = folder / path
    config = {key: value for key, value in json.loads(config_path.read_text()).items() if key not in drop}
    config_path.write_text(json.dumps({**config, **change}))
    return folder


SCHEDULER = "scheduler/scheduler_config.json"
# name -> (how the command line or the folder changes, the message)
REFUSALS = {
    "image size": (dict(image=(30, 32)), "is 32x30; its width and height must be multiples of 8"),
    "image size suggests SVD's": (dict(image=(30, 32)), "resize it, e.g. to 1024x576"),
    "fps 0": (dict(extra=("--fps", "0")), "argument --fps: expected a positive whole number, got '0'"),
    "fps < 0": (dict(extra=("--fps", "-2")), "argument --fps: expected a positive whole number"),
    "motion bucket 256": (dict(extra=("--motion-bucket", "256")), "--motion-bucket must be a whole number in 0..255"),
    "motion bucket -1": (dict(extra=("--motion-bucket", "-1")), "--motion-bucket must be a whole number in 0..255"),
    "noise aug < 0": (dict(extra=("--noise-aug", "-0.1")), "--noise-aug must be a number >= 0"),
    "guidance ramp down": (dict(extra=("--min-guidance", "4")), "--min-guidance (the first frame's) must be <= "
                                                                "--guidance"),
    "frames 0": (dict(extra=("--frames", "0")), "argument --frames: expected a positive whole number"),
    "decode chunk 0": (dict(extra=("--decode-chunk-size", "0")), "argument --decode-chunk-size: expected a positive"),
    "prompt": (dict(extra=("--prompt", "a cat")), "--config svd takes no --prompt (image-to-video"),
    "method": (dict(extra=("--method", "gen1")), "--config svd takes no --method"),
    "height": (dict(extra=("--height", "64")), "--config svd takes no --height"),
    "controlnet": (dict(extra=("--controlnet", "canny")), "--controlnet belong to --method controlvideo"),
    "no image": (dict(no_image=True), "--config svd needs --image"),
    "png out": (dict(out="x.png"), "svd writes a video: --out must end in .mp4 or .gif"),
    "image with cogvideox": (dict(config="cogvideox-2b", extra=("--prompt", "x")),
                             "--image: only for --config svd, svd-xt and i2vgen-xl, not cogvideox-2b"),
    "fps with sd15": (dict(config="sd15", no_image=True, extra=("--prompt", "x", "--fps", "8")),
                      "--fps: only for --config svd, svd-xt and i2vgen-xl, not sd15"),
    "architecture": (dict(config_check=True), "the weights do not have the svd architecture: they differ in"),
    "missing image file": (dict(image="missing"), "missing.png: no file there; give an image (PNG, JPEG)"),
    "scheduler not Euler": (dict(folder=(SCHEDULER, {"_class_name": "DDIMScheduler"})),
                            "the scheduler is a DDIMScheduler; minivdm samples SVD with EDM's Euler sampler"),
    "epsilon prediction": (dict(folder=(SCHEDULER, {"prediction_type": "epsilon"})),
                           "the scheduler has prediction_type='epsilon'; minivdm's EDM Euler sampler implements "
                           "SVD's prediction_type='v_prediction' only"),
    "no karras sigmas": (dict(folder=(SCHEDULER, {}), drop=("use_karras_sigmas",)),
                         "the scheduler has use_karras_sigmas=False"),
    "no sigma_max": (dict(folder=(SCHEDULER, {"sigma_max": None})), "the scheduler has sigma_max=None"),
    "unknown option": (dict(folder=(SCHEDULER, {"shift": 3.0})), "the scheduler config has ['shift'], options"),
    "other VAE": (dict(folder=("vae/config.json", {"_class_name": "AutoencoderKL"})),
                  "the VAE is a AutoencoderKL; SVD decodes with diffusers' AutoencoderKLTemporalDecoder"),
    "no feature extractor": (dict(remove="feature_extractor"),
                             "is not an SVD pipeline folder (unet/, vae/, image_encoder/, feature_extractor/, "
                             "scheduler/): it has no feature_extractor/preprocessor_config.json"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_generate_refuses_bad_input_by_name_before_loading(svd_folder, tmp_path, monkeypatch, capsys, case):
    import minivdm.models.svd_unet as module

    def must_not_load(*args, **kwargs):
        raise AssertionError("a checkpoint was loaded before the input was checked")

    monkeypatch.setattr(module, "load_svd_unet", must_not_load)
    change, message = REFUSALS[case]
    folder, image = svd_folder["folder"], svd_folder["image"]
    if "folder" in change:
        folder = edited_folder(svd_folder, tmp_path, *change["folder"], drop=change.get("drop", ()))
    if "remove" in change:
        folder = shutil.copytree(folder, tmp_path / "pipe")
        shutil.rmtree(folder / change["remove"])
    if isinstance(change.get("image"), tuple):
        height, width = change["image"]
        image = write_png(tmp_path / "odd.png", pixel_images(1, size=32)[0][:height, :width])
    elif change.get("image") == "missing":
        image = tmp_path / "missing.png"
    argv = command(folder, image, tmp_path / change.get("out", "x.mp4"), *change.get("extra", ()),
                   config=change.get("config", "svd"))
    if change.get("no_image"):
        del argv[argv.index("--image"):argv.index("--image") + 2]
    if change.get("config_check"):
        argv.remove("--no-config-check")
    assert message in refused_line(argv, capsys)
