"""Command line: `python -m minivdm <command>` (also installed as `minivdm`).

    demo             the main job on the shipped tiny models: writes .mp4 and .gif files
    train-denoiser   reproduce a shipped chapter-1 denoiser
    train-text-to-image  reproduce the shipped toy text-to-image model
    train-vdm        train the toy world's text-to-video VDM (chapter "Video Diffusion Models")
    train-toy-clip   reproduce the shipped toy CLIP and aesthetic head (data curation)
    train-toy-controlnet  train the toy ControlNet (edge maps) on the frozen toy text-to-image model
    train-toy-tune-a-video  tune the toy text-to-image model on one held-out clip (Tune-A-Video, chapter 8)
    train-toy-temporal-layers  train Make-A-Video's or Video LDM's temporal layers on unlabeled toy clips (chapter 9)
    train-toy-frame-interpolation  train Make-A-Video's masked frame interpolation on toy clips (4 key frames -> 16)
    train-toy-image-to-video  train the toy image-to-video model (chapter 12: first frame + speed, SVD's conditioning)
    train-toy-gen1   train the toy Gen-1 (structure = depth, content = toy CLIP image embedding) and its prior
    train-toy-dit    train the toy text-to-video DiT (chapter 11) on clips of 8 and 16 frames at 32x32 and 32x48
    curate           SVD-style data curation of a folder of videos into a JSON-lines file (resumable)
    generate         full scale: text-to-image or text-to-video with a published checkpoint you have locally, or a
                     video from an image checkpoint (--method text2video-zero, or controlvideo with a ControlNet),
                     or Gen-1's structure + content edit of a video on SD 2 depth (--method gen1), or CogVideoX
                     text-to-video (--config cogvideox-2b | cogvideox-5b), or Stable Video Diffusion image-to-video
                     (--config svd | svd-xt --image FILE)
    tune-a-video     full scale: tune an image checkpoint on one video, then edit it by prompt (Tune-A-Video)
    make-exercises   regenerate exercises/ from solutions/
    course           copy the tutorials and exercises to your own folder to work in
    grade            instructors: grade a folder of submitted exercise notebooks into a gradebook
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

# What a user's mistake raises (a wrong path, a damaged file, a refused option): the CLI prints the
# message, not a traceback (MINIVDM_TRACEBACK=1 shows it).
USER_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, ValueError, TypeError)


def existing_folder(text: str) -> str:
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"no folder at {text}")
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; expected a folder")
    return text


def folder_to_write(text: str) -> str:
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; expected a folder to write into")
    return text


def file_to_write(*suffixes: str):
    def check(text: str) -> str:
        if Path(text).is_dir():
            raise argparse.ArgumentTypeError(f"{text} is a folder; expected a file name ending in {' or '.join(suffixes)}")
        if suffixes and Path(text).suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(f"{text} must end in {' or '.join(suffixes)}")
        return text
    check.__name__ = "file name"
    return check


def command_line(argv: list[str] | None) -> str:
    """The command as typed, for a trained model's metadata (its reproduce command)."""
    return "python -m minivdm " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))


def positive_int(text: str) -> int:
    if not text.lstrip("+").isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def step_indices(text: str) -> tuple[int, ...]:
    if text.strip().lower() == "none":
        return ()
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"expected sampler step indices >= 0 separated by commas (e.g. 20,21) or "
                                         f"'none', got {text!r}")
    return tuple(int(part) for part in parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="minivdm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the shipped tiny models and write videos")
    demo.add_argument("--out", default="outputs/demo", type=folder_to_write, help="folder for the videos")
    demo.add_argument("--seed", type=int, default=0)

    trainer = commands.add_parser("train-denoiser", help="train a chapter-1 toy-world denoiser")
    trainer.add_argument("--prediction", choices=["eps", "x0", "v"], required=True)
    trainer.add_argument("--out", required=True, type=file_to_write(".safetensors"), help="safetensors file to write")
    trainer.add_argument("--steps", type=positive_int, default=None, help="override the recipe's step count")
    trainer.add_argument("--checkpoint-dir", default=None, type=folder_to_write, help="resumable checkpoints go here")

    text_to_image = commands.add_parser("train-text-to-image", help="train the toy world's text-to-image model")
    text_to_image.add_argument("--out", required=True, type=folder_to_write, help="folder to write (unet/, text_encoder/, tokenizer/)")
    text_to_image.add_argument("--steps", type=positive_int, default=None, help="override the recipe's step count")
    text_to_image.add_argument("--checkpoint-dir", default=None, type=folder_to_write, help="resumable checkpoints go here")
    text_to_image.add_argument("--anneal-from", default=None, type=existing_folder,
                               help="second stage: start from this model folder and anneal the learning rate")
    text_to_image.add_argument("--seed", type=int, default=None, help="override the recipe's seed (a fresh draw of the data)")
    text_to_image.add_argument("--learning-rate", type=float, default=None, help="override the recipe's peak learning rate")

    vdm = commands.add_parser("train-vdm", help="train the toy world's text-to-video VDM")
    vdm.add_argument("--out", required=True, type=folder_to_write, help="folder to write (vdm.safetensors, text_encoder/, tokenizer/)")
    vdm.add_argument("--steps", type=positive_int, default=None, help="override the recipe's step count")
    vdm.add_argument("--checkpoint-dir", default=None, type=folder_to_write, help="resumable checkpoints go here")
    vdm.add_argument("--dataset-size", type=int, default=None, help="override the recipe's number of clips")
    vdm.add_argument("--anneal-from", default=None, type=existing_folder,
                     help="second stage: start from this model folder and anneal the learning rate")
    vdm.add_argument("--continue-from", default=None, type=existing_folder,
                     help="start from this model folder with the first stage's recipe (constant learning rate)")
    vdm.add_argument("--seed", type=int, default=None, help="override the recipe's seed (a fresh draw of the data)")
    vdm.add_argument("--learning-rate", type=float, default=None, help="override the recipe's peak learning rate")
    vdm.add_argument("--temporal-lr-factor", type=float, default=None,
                     help="the layers the image model lacks (temporal attention, the pooled-text projection) train at "
                          "this multiple of the learning rate (they start from zero)")
    vdm.add_argument("--text-lr-factor", type=float, default=None,
                     help="the text encoder trains at this multiple of the learning rate (the image model never "
                          "needed its motion words)")
    vdm.add_argument("--word-lr-factor", type=float, default=None,
                     help="the text encoder's word embeddings train at this multiple of the learning rate (the "
                          "motion words are still at their initial scale, drowned by the trained layers)")
    vdm.add_argument("--temporal-text-modulation", action="store_true",
                     help="add the pooled caption's scale and shift of every temporal attention (starting at zero) "
                          "if the starting model lacks it")
    vdm.add_argument("--high-noise-fraction", type=float, default=0.0,
                     help="this fraction of the clips draws t in --high-noise-band instead of [0, 1]")
    vdm.add_argument("--high-noise-band", type=float, nargs=2, default=(0.85, 1.0), metavar=("LO", "HI"),
                     help="the t range of --high-noise-fraction (default 0.85 1.0)")
    vdm.add_argument("--image-model", default=None,
                     help="toy text-to-image folder to inflate into the first stage (default: the shipped one); "
                          "'none' trains from random weights")
    vdm.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the steps run (default cpu)")
    vdm.add_argument("--batch-size", type=positive_int, default=None,
                     help="override the recipe's clips per step (part of the run: a checkpoint of another is refused)")
    vdm.add_argument("--max-minutes", type=float, default=None,
                     help="wall-clock budget of the training steps: when it runs out, checkpoint and write the model "
                          "so far; the same command goes on from the checkpoint, with any budget")

    toy_controlnet = commands.add_parser("train-toy-controlnet",
                                         help="train the toy ControlNet (edge maps) on the frozen toy text-to-image model")
    toy_controlnet.add_argument("--out", required=True, type=folder_to_write, help="folder to write (controlnet/)")
    toy_controlnet.add_argument("--steps", type=positive_int, default=None, help="override the recipe's step count")
    toy_controlnet.add_argument("--checkpoint-dir", default=None, type=folder_to_write, help="resumable checkpoints go here")
    toy_controlnet.add_argument("--dataset-size", type=positive_int, default=None, help="override the recipe's images")
    toy_controlnet.add_argument("--max-minutes", type=float, default=None,
                                help="wall-clock budget of the training steps (checkpointed; the same command goes on)")

    toy_tav = commands.add_parser("train-toy-tune-a-video",
                                  help="tune the toy text-to-image model on one held-out clip (Tune-A-Video's example)")
    toy_tav.add_argument("--out", required=True, type=folder_to_write, help="folder to write (tuned_unet.safetensors)")
    toy_tav.add_argument("--steps", type=positive_int, default=500)
    toy_tav.add_argument("--source", type=int, default=0, help="index of the held-out clip to tune on")
    toy_tav.add_argument("--checkpoint-dir", default=None, type=folder_to_write, help="resumable checkpoints go here")

    temporal = commands.add_parser("train-toy-temporal-layers",
                                   help="inflate the frozen toy text-to-image model (Make-A-Video or Video LDM) and train "
                                        "only its new temporal layers on toy clips without motion words")
    temporal.add_argument("--design", required=True, choices=("make-a-video", "video-ldm"))
    temporal.add_argument("--out", required=True, type=folder_to_write, help="folder to write (temporal_layers.safetensors)")
    temporal.add_argument("--steps", type=positive_int, default=None, help="override the recipe's step count")
    temporal.add_argument("--checkpoint-dir", default=None, type=folder_to_write, help="resumable checkpoints go here")
    temporal.add_argument("--max-minutes", type=float, default=None,
                          help="wall-clock budget of the training steps (checkpointed; the same command goes on)")
    temporal.add_argument("--device", default="cpu", choices=("cpu", "cuda"))

    interpolation = commands.add_parser("train-toy-frame-interpolation",
                                        help="widen the toy Make-A-Video model's input and train it to fill 12 frames "
                                             "between 4 key frames")
    interpolation.add_argument("--out", required=True, type=folder_to_write,
                               help="folder to write (interpolation_layers.safetensors)")
    interpolation.add_argument("--temporal-layers", default=None,
                               help="toy Make-A-Video folder to start from (train-toy-temporal-layers); default: "
                                    "fresh pseudo-3D layers")
    interpolation.add_argument("--steps", type=positive_int, default=None, help="override the recipe's step count")
    interpolation.add_argument("--checkpoint-dir", default=None, type=folder_to_write, help="resumable checkpoints go here")
    interpolation.add_argument("--max-minutes", type=float, default=None,
                               help="wall-clock budget of the training steps (checkpointed; the same command goes on)")
    interpolation.add_argument("--device", default="cpu", choices=("cpu", "cuda"))

    i2v = commands.add_parser("train-toy-image-to-video",
                              help="widen the toy Video LDM model for a first frame and a speed (SVD's conditioning) "
                                   "and train it on toy clips")
    i2v.add_argument("--out", required=True, type=folder_to_write, help="folder to write (image_to_video.safetensors)")
    i2v.add_argument("--temporal-layers", default="data/toy_video_ldm",
                     help="toy Video LDM folder to start from (train-toy-temporal-layers --design video-ldm)")
    i2v.add_argument("--steps", type=positive_int, default=None, help="override the recipe's step count")
    i2v.add_argument("--svd-noise", action="store_true",
                     help="draw the training noise as SVD does, log sigma ~ N(0.7, 1.6^2) (default: t uniform)")
    i2v.add_argument("--conditioning-lr-factor", type=float, default=1.0,
                     help="learning-rate factor of conv_in and the added-time-id MLP (default 1)")
    i2v.add_argument("--checkpoint-dir", default=None, type=folder_to_write, help="resumable checkpoints go here")
    i2v.add_argument("--max-minutes", type=float, default=None,
                     help="wall-clock budget of the training steps (checkpointed; the same command goes on)")
    i2v.add_argument("--device", default="cpu", choices=("cpu", "cuda"))

    gen1 = commands.add_parser("train-toy-gen1",
                               help="train the toy Gen-1 (structure = depth, content = toy CLIP image embedding) and "
                                    "its text -> image embedding prior")
    gen1.add_argument("--out", required=True, type=folder_to_write,
                      help="folder to write (gen1_unet.safetensors, prior.safetensors)")
    gen1.add_argument("--steps", type=positive_int, default=None, help="override the recipe's step count")
    gen1.add_argument("--content-swap", type=float, default=None,
                      help="share of clips whose content image comes from another clip of the same colour (default "
                           "0.5; 0 = always the clip's own frame, the paper's recipe)")
    gen1.add_argument("--checkpoint-dir", default=None, type=folder_to_write, help="resumable checkpoints go here")
    gen1.add_argument("--max-minutes", type=float, default=None,
                      help="wall-clock budget of the training steps (checkpointed; the same command goes on)")
    gen1.add_argument("--device", default="cpu", choices=("cpu", "cuda"))

    toy_dit = commands.add_parser("train-toy-dit",
                                  help="train the toy text-to-video DiT (chapter 11) from scratch on toy clips of 8 and "
                                       "16 frames at 32x32 and 32x48")
    toy_dit.add_argument("--out", required=True, type=folder_to_write,
                         help="folder to write (dit.safetensors, text_encoder/, tokenizer/)")
    toy_dit.add_argument("--steps", type=positive_int, default=None, help="override the recipe's step count")
    toy_dit.add_argument("--anneal-from", default=None, type=existing_folder,
                         help="second stage: start from this toy DiT folder and anneal the learning rate to zero")
    toy_dit.add_argument("--checkpoint-dir", default=None, type=folder_to_write, help="resumable checkpoints go here")
    toy_dit.add_argument("--max-minutes", type=float, default=None,
                         help="wall-clock budget of the training steps (checkpointed; the same command goes on)")
    toy_dit.add_argument("--device", default="cpu", choices=("cpu", "cuda"))

    toy_clip = commands.add_parser("train-toy-clip", help="train the toy world's tiny CLIP and aesthetic head (curation)")
    toy_clip.add_argument("--out", required=True, type=folder_to_write, help="folder to write (CLIP model, tokenizer, aesthetic_head.safetensors)")
    toy_clip.add_argument("--steps", type=positive_int, default=None, help="override the recipe's CLIP step count")
    toy_clip.add_argument("--checkpoint-dir", default=None, type=folder_to_write, help="resumable checkpoints go here")

    curate = commands.add_parser("curate", help="split a folder of videos into clips, score and filter them")
    curate.add_argument("input_dir", type=existing_folder, help="folder of .mp4 / .webm / .gif files (searched recursively)")
    curate.add_argument("--out", required=True, type=file_to_write(), help="JSON-lines file to write; an unfinished run is resumed")
    curate.add_argument("--clip", default="none",
                        help="'none', 'toy' (the shipped toy CLIP) or a local transformers CLIP folder")
    curate.add_argument("--aesthetic-head", default=None, help="with a CLIP folder: aesthetic head (safetensors)")
    curate.add_argument("--captioner", default="none",
                        help="'none', 'toy-oracle' (the toy world's oracle) or module:function taking (3, 3, H, W) "
                             "key frames in [-1, 1] and returning a caption")
    curate.add_argument("--min-motion", type=float, default=None, help="override the motion threshold")
    curate.add_argument("--max-text-area", type=float, default=None, help="override the text-area threshold")
    curate.add_argument("--min-aesthetic", type=float, default=None, help="aesthetic threshold (needs --clip)")
    curate.add_argument("--min-text-similarity", type=float, default=None,
                        help="caption similarity threshold (needs --clip and --captioner)")
    curate.add_argument("--no-progress", action="store_true")

    generate = commands.add_parser("generate", help="full scale: run a published checkpoint you have locally")
    generate.add_argument("--config", required=True,
                          help="sd15, sd14, sd2-depth (images), modelscope-t2v, animatediff, cogvideox-2b or "
                               "cogvideox-5b (video), svd or svd-xt (image-to-video, from --image), i2vgen-xl "
                               "(image-to-video, from --image and --prompt)")
    generate.add_argument("--prompt", default=None,
                          help="the text to generate from (every method but gen1, whose content is --content-image, "
                               "and svd, which starts from --image)")
    generate.add_argument("--out", required=True, type=file_to_write(".png", ".jpg", ".mp4", ".gif"), help="file to write: .png for images, .mp4 or .gif for videos")
    generate.add_argument("--weights", default=None, help="local pipeline folder or a cached Hugging Face id")
    generate.add_argument("--steps", type=positive_int, default=None, help="default 50 (svd: 25)")
    generate.add_argument("--guidance", type=float, default=None,
                          help="default 7.5 for images, 9 for videos, 6 for cogvideox (gen1: guidance on the content, "
                               "default 7.5; svd: the last frame's, default 3)")
    generate.add_argument("--dynamic-cfg", action="store_true",
                          help="cogvideox: the guidance scale diffusers' use_dynamic_cfg varies over the steps")
    generate.add_argument("--frames", type=positive_int, default=None,
                          help="video configs, text2video-zero, controlvideo and gen1: number of frames (default 16; "
                               "cogvideox: 4k + 1, default 49; svd: 14, svd-xt: 25; controlvideo, gen1: the first N "
                               "of --control-video)")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    generate.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default=None,
                          help="on GPU (default fp16; cogvideox-5b: bf16); the CPU runs fp32")
    generate.add_argument("--height", type=int, default=None)
    generate.add_argument("--width", type=int, default=None)
    generate.add_argument("--no-config-check", action="store_true", help="accept weights of another architecture")
    generate.add_argument("--motion-adapter", default=None,
                          help="animatediff: local MotionAdapter folder or a cached Hugging Face id (default "
                               "guoyww/animatediff-motion-adapter-v1-5-2); --weights is then the SD 1.5 pipeline")
    generate.add_argument("--method", choices=["text2video-zero", "controlvideo", "gen1"], default=None,
                          help="a video from an image checkpoint (sd15, sd14), no training: text2video-zero, or "
                               "controlvideo (following the edges or depth of --control-video, with a ControlNet); "
                               "or gen1 (sd2-depth): the depth of --control-video, the look of --content-image")
    generate.add_argument("--motion", default=None,
                          help="text2video-zero: right, left, up, down, or dx,dy (the global motion's direction)")
    generate.add_argument("--motion-strength", type=float, default=None,
                          help="text2video-zero: lambda, latent pixels per frame (default 1.5)")
    generate.add_argument("--foreground-mask", default=None,
                          help="text2video-zero: an image, white on the objects of frame 1, for background smoothing")
    generate.add_argument("--controlnet", choices=["canny", "depth"], default=None,
                          help="controlvideo: the control, Canny edges or depth maps of --control-video's frames")
    generate.add_argument("--control-video", default=None,
                          help="controlvideo: .mp4 or .gif whose frames give the controls; gen1: the source video "
                               "whose depth gives the structure")
    generate.add_argument("--controlnet-weights", default=None,
                          help="controlvideo: local ControlNet folder or a cached Hugging Face id (default: the "
                               "published SD 1.5 ControlNet of --controlnet)")
    generate.add_argument("--depth-model", default=None,
                          help="controlvideo with --controlnet depth, and gen1: local transformers depth-estimation "
                               "model folder (e.g. a copy of Intel/dpt-hybrid-midas)")
    generate.add_argument("--attention", choices=["frame", "first", "all"], default=None,
                          help="controlvideo: self-attention over each frame, the first frame's, or all frames' "
                               "(default all: fully cross-frame)")
    generate.add_argument("--smoother-steps", type=step_indices, default=None,
                          help="controlvideo: sampler steps of the interleaved-frame smoother, e.g. 20,21, or none "
                               "(default: two steps at t of about 0.6)")
    generate.add_argument("--clip-length", type=positive_int, default=None,
                          help="controlvideo: frames from one key frame to the next in the hierarchical sampler, "
                               ">= 2 (default: all frames at once)")
    generate.add_argument("--conditioning-scale", type=float, default=None,
                          help="controlvideo: weight of the ControlNet's residuals, >= 0 (default 1)")
    generate.add_argument("--content-image", default=None,
                          help="gen1: an image (PNG, JPEG) whose look, as its CLIP image embedding, the video takes")
    generate.add_argument("--image-encoder", default=None,
                          help="gen1: local transformers CLIP image encoder folder (CLIPVisionModelWithProjection or "
                               "CLIPModel, with preprocessor_config.json) of the U-Net's cross-attention width: "
                               "OpenCLIP ViT-H/14 (1024) for sd2-depth")
    generate.add_argument("--gen1-weights", default=None,
                          help="gen1: .safetensors of trained Gen-1 U-Net weights (all of them, or the temporal "
                               "layers only); Gen-1's are not public: without it the temporal layers are the identity")
    generate.add_argument("--structure-level", type=int, default=None,
                          help="gen1: t_s, how many times the depth is halved in resolution before the U-Net sees it "
                               "(default 0: the exact depth; higher leaves the content freer)")
    generate.add_argument("--image", default=None,
                          help="svd: the image (PNG, JPEG) the video starts from, its size a multiple of 64 (SVD was "
                               "trained at 1024x576); i2vgen-xl: any size, scaled and cropped to --width x --height "
                               "(default 1280x704)")
    generate.add_argument("--fps", type=positive_int, default=None,
                          help="svd, i2vgen-xl: frames per second of the file, and the model's conditioning on it "
                               "(default 7; i2vgen-xl: 16)")
    generate.add_argument("--motion-bucket", type=int, default=None,
                          help="svd: motion_bucket_id, 0 (still) to 255 (most motion), default 127")
    generate.add_argument("--noise-aug", type=float, default=None,
                          help="svd: noise_aug_strength, the std of the noise added to the image (default 0.02; "
                               "higher: the video strays further from it)")
    generate.add_argument("--min-guidance", type=float, default=None,
                          help="svd: the first frame's guidance scale, rising to --guidance on the last (default 1)")
    generate.add_argument("--decode-chunk-size", type=positive_int, default=None,
                          help="svd, i2vgen-xl: frames the VAE decodes at once (default all; i2vgen-xl: 1; lower "
                               "saves GPU memory)")
    generate.add_argument("--negative-prompt", default=None,
                          help="i2vgen-xl: what the video should not show, the unguided branch's text (default empty)")

    tune = commands.add_parser("tune-a-video", help="full scale: tune an image checkpoint on one video, then edit it by "
                                                    "prompt (Tune-A-Video; local weights only)")
    tune.add_argument("--config", required=True, help="sd14 (the paper's base) or sd15")
    tune.add_argument("--video", required=True, help=".mp4 or .gif to tune on; its first --frames frames are used")
    tune.add_argument("--prompt", required=True, help="what the video shows, e.g. 'a man is skiing'")
    tune.add_argument("--edit", required=True, action="append",
                      help="an edited prompt, e.g. 'spider man is skiing on the beach' (repeat for several)")
    tune.add_argument("--out", required=True, type=folder_to_write,
                      help="folder: tuned_unet.safetensors, edit_<k>.mp4, the resumable tuning state")
    tune.add_argument("--weights", default=None, help="local pipeline folder or a cached Hugging Face id")
    tune.add_argument("--tuned", default=None, help="tuned weights written by an earlier run: skip tuning")
    tune.add_argument("--tuned-unet", default=None,
                      help="a whole tuned U-Net folder in the official Tune-A-Video layout: skip tuning")
    tune.add_argument("--allow-pickle", action="store_true",
                      help="--tuned-unet: read .bin weights (pickle can run code: only for files you trust)")
    tune.add_argument("--tune-steps", type=positive_int, default=500, help="tuning steps (default 500, the paper's)")
    tune.add_argument("--learning-rate", type=float, default=3e-5)
    tune.add_argument("--frames", type=positive_int, default=8, help="frames of --video to use (the paper: 24)")
    tune.add_argument("--steps", type=positive_int, default=50, help="DDIM steps of inversion and of sampling")
    tune.add_argument("--guidance", type=float, default=12.5)
    tune.add_argument("--seed", type=int, default=33)
    tune.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    tune.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp16",
                      help="on GPU: fp16 autocast while tuning, this dtype for editing")
    tune.add_argument("--height", type=int, default=None)
    tune.add_argument("--width", type=int, default=None)
    tune.add_argument("--fps", type=positive_int, default=8)
    tune.add_argument("--format", choices=["mp4", "gif"], default="mp4")
    tune.add_argument("--gradient-checkpointing", choices=["on", "off"], default=None,
                      help="recompute attention in the backward pass (default: on with a GPU)")
    tune.add_argument("--no-config-check", action="store_true", help="accept weights of another architecture")

    exercises = commands.add_parser("make-exercises", help="regenerate exercises/ from solutions/")
    exercises.add_argument("--check", action="store_true", help="only report notebooks that are out of sync")

    course = commands.add_parser("course", help="copy the tutorials and exercises to a folder of your own")
    course.add_argument("out", type=folder_to_write, help="folder to copy into (existing notebooks there are kept)")
    course.add_argument("--with-solutions", action="store_true", help="copy solutions/ too")

    grade = commands.add_parser("grade", help="grade a folder of submitted exercise notebooks (instructors)",
                                description="Runs every submitted notebook in a fresh, limited kernel and writes a "
                                            "gradebook (one row per student, exercise and check), a summary and one "
                                            "report per student. Re-running resumes: unchanged submissions are not "
                                            "graded again.")
    grade.add_argument("submissions", type=existing_folder,
                       help="folder of notebooks: <student>/NN_topic.ipynb or <student>__NN_topic.ipynb")
    grade.add_argument("--out", required=True, type=file_to_write(".csv"),
                       help="gradebook to write (.csv); the summary, reports and resume state go beside it")
    grade.add_argument("--weights", default=None, help="CSV of points: exercise,check,points (check may be *)")
    grade.add_argument("--jobs", type=positive_int, default=None, help="notebooks graded at once (default: cores, at most 4)")
    grade.add_argument("--timeout", type=float, default=600.0, help="seconds one notebook may run (default 600)")
    grade.add_argument("--memory", type=float, default=4.0, help="GiB of address space per kernel (default 4; 0: no cap)")
    grade.add_argument("--max-output", type=float, default=10.0, help="MiB of output kept per notebook (default 10)")
    grade.add_argument("--exercises", default=None, type=existing_folder,
                       help="the released exercises (default: this repository's exercises/)")

    args = parser.parse_args(argv)
    try:
        return _run(parser, args, argv)
    except USER_ERRORS as error:
        if os.environ.get("MINIVDM_TRACEBACK"):
            raise
        print(f"minivdm {args.command}: error: {error}", file=sys.stderr)
        return 2


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str] | None) -> int:
    if args.command == "demo":
        from minivdm.demo import run_demo

        for path in run_demo(args.out, seed=args.seed):
            print(path)
        return 0
    if args.command == "train-denoiser":
        import dataclasses

        import torch

        from minivdm.toy.denoisers import CHAPTER1_TRAIN, train_image_denoiser

        config = CHAPTER1_TRAIN if args.steps is None else dataclasses.replace(CHAPTER1_TRAIN, steps=args.steps)
        command = command_line(argv)
        print(train_image_denoiser(args.prediction, args.out, config=config, checkpoint_dir=args.checkpoint_dir, command=command))
        return 0
    if args.command == "train-text-to-image":
        import dataclasses

        from minivdm.toy.text_to_image import TEXT_TO_IMAGE_ANNEAL, TEXT_TO_IMAGE_TRAIN, train_text_to_image

        recipe = TEXT_TO_IMAGE_TRAIN if args.anneal_from is None else TEXT_TO_IMAGE_ANNEAL
        overrides = {"steps": args.steps, "seed": args.seed, "learning_rate": args.learning_rate}
        config = dataclasses.replace(recipe, **{k: v for k, v in overrides.items() if v is not None})
        command = command_line(argv)
        print(train_text_to_image(args.out, config=config, checkpoint_dir=args.checkpoint_dir,
                                  init_from=args.anneal_from, command=command))
        return 0
    if args.command == "train-vdm":
        import dataclasses

        import torch

        # refused before the data is drawn and the models loaded, minutes that a wrong option would waste
        if args.device == "cuda" and not torch.cuda.is_available():
            parser.error("train-vdm: --device cuda, but no CUDA device is visible (torch.cuda.is_available() is "
                         "False); use --device cpu")
        if args.max_minutes is not None and not args.max_minutes > 0:
            parser.error(f"train-vdm: --max-minutes must be a number of minutes > 0, got {args.max_minutes}")

        from minivdm.models.vdm_unet import VIDEO_ONLY_PARAMETERS
        from minivdm.toy.vdm import (TEXT_ENCODER_PARAMETERS, TOY_VDM_ANNEAL, TOY_VDM_TRAIN, WORD_EMBEDDINGS,
                                     train_toy_vdm)

        if args.anneal_from is not None and args.continue_from is not None:
            parser.error("train-vdm: give --anneal-from or --continue-from, not both")
        recipe = TOY_VDM_TRAIN if args.anneal_from is None else TOY_VDM_ANNEAL
        overrides = {"steps": args.steps, "seed": args.seed, "learning_rate": args.learning_rate}
        # the first name part that matches a parameter sets its factor: word embeddings before the rest of the encoder
        multipliers = (*((part, args.temporal_lr_factor) for part in VIDEO_ONLY_PARAMETERS),
                       (WORD_EMBEDDINGS, args.word_lr_factor), (TEXT_ENCODER_PARAMETERS, args.text_lr_factor))
        if any(factor is not None for _, factor in multipliers):
            overrides["lr_multipliers"] = tuple((part, factor) for part, factor in multipliers if factor is not None)
        config = dataclasses.replace(recipe, **{k: v for k, v in overrides.items() if v is not None})
        command = command_line(argv)
        options = {} if args.dataset_size is None else {"dataset_size": args.dataset_size}
        if args.image_model is not None:
            options["image_model"] = None if args.image_model == "none" else args.image_model
        if args.batch_size is not None:
            options["batch_size"] = args.batch_size
        print(train_toy_vdm(args.out, config=config, checkpoint_dir=args.checkpoint_dir,
                            init_from=args.anneal_from or args.continue_from, command=command,
                            temporal_text_modulation=args.temporal_text_modulation,
                            high_noise_fraction=args.high_noise_fraction, high_noise_band=tuple(args.high_noise_band),
                            device=args.device, max_minutes=args.max_minutes, **options))
        return 0
    if args.command == "train-toy-temporal-layers":
        import dataclasses

        from minivdm.toy.temporal_layers import TEMPORAL_LAYERS_TRAIN, train_toy_temporal_layers

        if args.max_minutes is not None and not args.max_minutes > 0:
            parser.error(f"train-toy-temporal-layers: --max-minutes must be > 0, got {args.max_minutes}")
        config = TEMPORAL_LAYERS_TRAIN if args.steps is None else dataclasses.replace(TEMPORAL_LAYERS_TRAIN, steps=args.steps)
        print(train_toy_temporal_layers(args.out, design=args.design, config=config, checkpoint_dir=args.checkpoint_dir,
                                        max_minutes=args.max_minutes, command=command_line(argv), device=args.device))
        return 0
    if args.command == "train-toy-gen1":
        import dataclasses

        from minivdm.toy.gen1 import GEN1_TRAIN, PRIOR_FILE, train_toy_gen1, train_toy_gen1_prior

        if args.max_minutes is not None and not args.max_minutes > 0:
            parser.error(f"train-toy-gen1: --max-minutes must be > 0, got {args.max_minutes}")
        config = GEN1_TRAIN if args.steps is None else dataclasses.replace(GEN1_TRAIN, steps=args.steps)
        if not (Path(args.out) / PRIOR_FILE).is_file():  # seconds; written first so that a resumed run skips it
            print(train_toy_gen1_prior(args.out, command=command_line(argv)))
        options = {} if args.content_swap is None else {"content_swap": args.content_swap}
        print(train_toy_gen1(args.out, config=config, checkpoint_dir=args.checkpoint_dir, max_minutes=args.max_minutes,
                             command=command_line(argv), device=args.device, **options))
        return 0
    if args.command == "train-toy-dit":
        import dataclasses

        from minivdm.toy.dit import TOY_DIT_ANNEAL, TOY_DIT_TRAIN, train_toy_dit

        if args.max_minutes is not None and not args.max_minutes > 0:
            parser.error(f"train-toy-dit: --max-minutes must be > 0, got {args.max_minutes}")
        recipe = TOY_DIT_TRAIN if args.anneal_from is None else TOY_DIT_ANNEAL
        config = recipe if args.steps is None else dataclasses.replace(recipe, steps=args.steps)
        print(train_toy_dit(args.out, config=config, checkpoint_dir=args.checkpoint_dir, max_minutes=args.max_minutes,
                            init_from=args.anneal_from, command=command_line(argv), device=args.device))
        return 0
    if args.command == "train-toy-frame-interpolation":
        import dataclasses

        from minivdm.toy.frame_interpolation import INTERPOLATION_TRAIN, train_toy_frame_interpolation

        if args.max_minutes is not None and not args.max_minutes > 0:
            parser.error(f"train-toy-frame-interpolation: --max-minutes must be > 0, got {args.max_minutes}")
        config = INTERPOLATION_TRAIN if args.steps is None else dataclasses.replace(INTERPOLATION_TRAIN, steps=args.steps)
        print(train_toy_frame_interpolation(args.out, temporal_layers=args.temporal_layers, config=config,
                                            checkpoint_dir=args.checkpoint_dir, max_minutes=args.max_minutes,
                                            command=command_line(argv), device=args.device))
        return 0
    if args.command == "train-toy-image-to-video":
        import dataclasses

        from minivdm.toy.image_to_video import (I2V_TRAIN, SVD_LOG_SIGMA, train_toy_image_to_video,
                                                with_conditioning_lr_factor)

        if args.max_minutes is not None and not args.max_minutes > 0:
            parser.error(f"train-toy-image-to-video: --max-minutes must be > 0, got {args.max_minutes}")
        if not args.conditioning_lr_factor > 0:
            parser.error(f"train-toy-image-to-video: --conditioning-lr-factor must be > 0, "
                         f"got {args.conditioning_lr_factor}")
        config = I2V_TRAIN if args.steps is None else dataclasses.replace(I2V_TRAIN, steps=args.steps)
        if args.conditioning_lr_factor != 1.0:
            config = with_conditioning_lr_factor(config, args.conditioning_lr_factor)
        print(train_toy_image_to_video(args.out, temporal_layers=args.temporal_layers, config=config,
                                       log_sigma=SVD_LOG_SIGMA if args.svd_noise else None,
                                       checkpoint_dir=args.checkpoint_dir, max_minutes=args.max_minutes,
                                       command=command_line(argv), device=args.device))
        return 0
    if args.command == "train-toy-tune-a-video":
        from minivdm.toy.tune_a_video import train_toy_tune_a_video

        if args.source < 0:
            parser.error(f"train-toy-tune-a-video: --source must be >= 0, got {args.source}")
        command = command_line(argv)
        print(train_toy_tune_a_video(args.out, source_index=args.source, steps=args.steps,
                                     checkpoint_dir=args.checkpoint_dir, command=command))
        return 0
    if args.command == "train-toy-controlnet":
        import dataclasses

        from minivdm.toy.controlnet import TOY_CONTROLNET_DATASET_SIZE, TOY_CONTROLNET_TRAIN, train_toy_controlnet

        if args.max_minutes is not None and not args.max_minutes > 0:
            parser.error(f"train-toy-controlnet: --max-minutes must be a number of minutes > 0, got {args.max_minutes}")
        config = TOY_CONTROLNET_TRAIN if args.steps is None else dataclasses.replace(TOY_CONTROLNET_TRAIN, steps=args.steps)
        command = command_line(argv)
        print(train_toy_controlnet(args.out, config=config, checkpoint_dir=args.checkpoint_dir,
                                   dataset_size=args.dataset_size or TOY_CONTROLNET_DATASET_SIZE,
                                   command=command, max_minutes=args.max_minutes))
        return 0
    if args.command == "train-toy-clip":
        from minivdm.toy.clip import train_toy_clip

        command = command_line(argv)
        print(train_toy_clip(args.out, steps=args.steps, checkpoint_dir=args.checkpoint_dir, command=command))
        return 0
    if args.command == "curate":
        from minivdm.curation.folder_run import run_curate_command

        print(run_curate_command(args))
        return 0
    if args.command == "tune-a-video":
        from minivdm.full_scale_tune_a_video import tune_a_video_full_scale

        checkpointing = None if args.gradient_checkpointing is None else args.gradient_checkpointing == "on"
        for path in tune_a_video_full_scale(
                args.config, args.video, args.prompt, args.edit, args.out, weights=args.weights, tuned=args.tuned,
                tuned_unet=args.tuned_unet, allow_pickle=args.allow_pickle, tune_steps=args.tune_steps,
                learning_rate=args.learning_rate, num_frames=args.frames, steps=args.steps,
                guidance_scale=args.guidance, seed=args.seed, device=args.device, dtype=args.dtype,
                height=args.height, width=args.width, fps=args.fps, fmt="." + args.format,
                gradient_checkpointing=checkpointing, check_config=not args.no_config_check,
                command=command_line(argv)):
            print(path)
        return 0
    if args.command == "generate":
        from minivdm.configs.dit import DIT_CONFIGS
        from minivdm.configs.svd import SVD_CONFIGS
        from minivdm.configs.i2vgen_xl import I2VGEN_XL
        from minivdm.full_scale import VIDEO_CONFIGS, generate_image, generate_video
        from minivdm.full_scale_dit import DEFAULT_FRAMES, generate_dit_video
        if args.config in DIT_CONFIGS:
            if args.method is not None or args.motion_adapter is not None:
                given = "--method" if args.method is not None else "--motion-adapter"
                parser.error(f"generate: {given} does not apply to --config {args.config} (a text-to-video DiT)")
        elif args.dynamic_cfg:
            parser.error(f"generate: --dynamic-cfg belongs to the cogvideox configs, got --config {args.config}")
        svd_options = {"--image": args.image, "--fps": args.fps, "--motion-bucket": args.motion_bucket,
                       "--noise-aug": args.noise_aug, "--min-guidance": args.min_guidance,
                       "--decode-chunk-size": args.decode_chunk_size}
        if args.config == I2VGEN_XL.name:
            given = [name for name, value in (("--method", args.method), ("--motion-adapter", args.motion_adapter),
                                              ("--motion-bucket", args.motion_bucket), ("--noise-aug", args.noise_aug),
                                              ("--min-guidance", args.min_guidance)) if value is not None]
            if given:
                parser.error(f"generate: --config {args.config} takes no {', '.join(given)} (those are svd's)")
            if args.image is None or args.prompt is None:
                parser.error(f"generate: --config {args.config} needs --image and --prompt (the image the video starts "
                             f"from, and what happens in it)")
        elif args.negative_prompt is not None:
            parser.error(f"generate: --negative-prompt: only for --config {I2VGEN_XL.name}, not {args.config}")
        if args.config in SVD_CONFIGS:
            given = [name for name, value in (("--prompt", args.prompt), ("--method", args.method),
                                              ("--motion-adapter", args.motion_adapter), ("--height", args.height),
                                              ("--width", args.width)) if value is not None]
            if given:
                parser.error(f"generate: --config {args.config} takes no {', '.join(given)} (image-to-video: the "
                             f"video starts from --image, at the image's size)")
            if args.image is None:
                parser.error(f"generate: --config {args.config} needs --image (the image the video starts from)")
        elif args.config != I2VGEN_XL.name and any(value is not None for value in svd_options.values()):
            given = [name for name, value in svd_options.items() if value is not None]
            takers = ("svd, svd-xt and i2vgen-xl" if set(given) <= {"--image", "--fps", "--decode-chunk-size"}
                      else "svd and svd-xt")
            parser.error(f"generate: {', '.join(given)}: only for --config {takers}, not {args.config}")
        if args.steps is None:
            args.steps = 25 if args.config in SVD_CONFIGS else 50
        options = dict(weights=args.weights, steps=args.steps, seed=args.seed, device=args.device,  # noqa: C408
                       dtype=args.dtype or "fp16", height=args.height, width=args.width,
                       check_config=not args.no_config_check)
        if args.frames is None and args.config not in SVD_CONFIGS:  # svd: the U-Net's
            args.frames = DEFAULT_FRAMES if args.config in DIT_CONFIGS else 16
        if args.method == "gen1" and args.prompt is not None:
            parser.error("generate: --method gen1 takes no --prompt: its content is --content-image (Gen-1's text path "
                         "needs its prior from text to image embeddings, whose weights are not public)")
        if args.method != "gen1" and args.prompt is None and args.config not in SVD_CONFIGS:
            parser.error("generate: --prompt is required (the text to generate from); only --method gen1 takes none")
        if args.method != "text2video-zero" and (args.motion is not None or args.motion_strength is not None
                                                 or args.foreground_mask is not None):
            parser.error("generate: --motion, --motion-strength and --foreground-mask belong to --method text2video-zero")
        gen1_options = {"--content-image": args.content_image, "--image-encoder": args.image_encoder,
                        "--gen1-weights": args.gen1_weights, "--structure-level": args.structure_level}
        given = [name for name, value in gen1_options.items() if value is not None]
        if args.method != "gen1" and given:
            parser.error(f"generate: {', '.join(given)} belong to --method gen1")
        controlvideo_options = {"--controlnet": args.controlnet, "--control-video": args.control_video,
                                "--controlnet-weights": args.controlnet_weights, "--depth-model": args.depth_model,
                                "--attention": args.attention, "--smoother-steps": args.smoother_steps,
                                "--clip-length": args.clip_length, "--conditioning-scale": args.conditioning_scale}
        shared_with_gen1 = ("--control-video", "--depth-model")  # gen1's source video and its depth model
        given = [name for name, value in controlvideo_options.items() if value is not None
                 and not (args.method == "gen1" and name in shared_with_gen1)]
        if args.method != "controlvideo" and given:
            parser.error(f"generate: {', '.join(given)} belong to --method controlvideo")
        if args.config in SVD_CONFIGS:
            from minivdm.full_scale_svd import generate_svd_video

            min_guidance = 1.0 if args.min_guidance is None else args.min_guidance
            print(generate_svd_video(args.config, args.weights, args.image, args.out, frames=args.frames,
                                     steps=args.steps, min_guidance=min_guidance,
                                     max_guidance=3.0 if args.guidance is None else args.guidance, fps=args.fps or 7,
                                     motion_bucket_id=127 if args.motion_bucket is None else args.motion_bucket,
                                     noise_aug_strength=0.02 if args.noise_aug is None else args.noise_aug,
                                     decode_chunk_size=args.decode_chunk_size, seed=args.seed, device=args.device,
                                     dtype=args.dtype, check_config=not args.no_config_check))
            return 0
        if args.config == I2VGEN_XL.name:
            from minivdm.full_scale_i2vgen_xl import generate_i2vgen_xl_video

            print(generate_i2vgen_xl_video(args.weights, args.image, args.prompt, args.out,
                                           negative_prompt=args.negative_prompt or "", frames=args.frames,
                                           steps=args.steps, guidance=9.0 if args.guidance is None else args.guidance,
                                           fps=args.fps or 16, decode_chunk_size=args.decode_chunk_size or 1,
                                           height=args.height, width=args.width, seed=args.seed, device=args.device,
                                           dtype=args.dtype, check_config=not args.no_config_check))
            return 0
        if args.method == "gen1":
            from minivdm.full_scale_gen1 import generate_gen1_video

            if args.motion_adapter is not None:
                parser.error("generate: --motion-adapter belongs to --config animatediff, not --method gen1")
            missing = [name for name, value in (("--control-video", args.control_video),
                                                ("--content-image", args.content_image),
                                                ("--depth-model", args.depth_model),
                                                ("--image-encoder", args.image_encoder)) if value is None]
            if missing:
                parser.error(f"generate: --method gen1 needs {', '.join(missing)} (the source video, an image whose "
                             f"look the video takes, a local depth model for the structure and a local CLIP image "
                             f"encoder for the content)")
            if args.structure_level is not None and args.structure_level < 0:
                parser.error(f"generate: --structure-level must be a whole number >= 0 (0: the exact depth), got "
                             f"{args.structure_level}")
            print(generate_gen1_video(args.config, args.out, control_video=args.control_video,
                                      content_image=args.content_image, depth_model=args.depth_model,
                                      image_encoder=args.image_encoder, gen1_weights=args.gen1_weights,
                                      structure_level=args.structure_level or 0,
                                      guidance_scale=7.5 if args.guidance is None else args.guidance,
                                      num_frames=args.frames, **options))
            return 0
        if args.method == "controlvideo":
            from minivdm.full_scale import generate_controlled_video

            missing = [name for name in ("--control-video", "--controlnet") if controlvideo_options[name] is None]
            if missing:
                parser.error(f"generate: --method controlvideo needs {' and '.join(missing)} (a video whose frames "
                             f"give the controls, and which control: canny or depth)")
            if args.depth_model is not None and args.controlnet != "depth":
                parser.error(f"generate: --depth-model belongs to --controlnet depth, got --controlnet "
                             f"{args.controlnet} (Canny edges need no model)")
            if args.conditioning_scale is not None and not args.conditioning_scale >= 0:
                parser.error(f"generate: --conditioning-scale must be a number >= 0, got {args.conditioning_scale}")
            scale = 1.0 if args.conditioning_scale is None else args.conditioning_scale
            print(generate_controlled_video(args.config, args.prompt, args.out, control_video=args.control_video,
                                            control=args.controlnet, controlnet_weights=args.controlnet_weights,
                                            depth_model=args.depth_model, attention=args.attention or "all",
                                            smoother_steps=args.smoother_steps, clip_length=args.clip_length,
                                            conditioning_scale=scale, guidance_scale=args.guidance or 7.5,
                                            num_frames=args.frames, **options))
            return 0
        if args.method == "text2video-zero":
            from minivdm.full_scale import generate_zero_shot_video

            motion = args.motion or "right"
            motion = motion if "," not in motion else motion.split(",")
            strength = 1.5 if args.motion_strength is None else args.motion_strength
            print(generate_zero_shot_video(args.config, args.prompt, args.out, motion=motion,
                                           motion_strength=strength, guidance_scale=args.guidance or 7.5,
                                           num_frames=args.frames, foreground_mask=args.foreground_mask, **options))
            return 0
        if args.config in DIT_CONFIGS:
            guidance = 6.0 if args.guidance is None else args.guidance
            print(generate_dit_video(args.config, args.prompt, args.out, guidance_scale=guidance,
                                     use_dynamic_cfg=args.dynamic_cfg, num_frames=args.frames,
                                     **dict(options, dtype=args.dtype)))
            return 0
        if args.motion_adapter is not None and args.config != "animatediff":
            parser.error(f"generate: --motion-adapter belongs to --config animatediff, got --config {args.config}")
        if args.config == "animatediff":
            from minivdm.full_scale import generate_animatediff

            if args.method is not None:
                parser.error(f"generate: --method {args.method} runs on an image config (sd15, sd14), not animatediff")
            print(generate_animatediff(args.prompt, args.out, motion_adapter=args.motion_adapter,
                                       guidance_scale=args.guidance or 7.5, num_frames=args.frames, **options))
            return 0
        if args.config in VIDEO_CONFIGS:
            print(generate_video(args.config, args.prompt, args.out, guidance_scale=args.guidance or 9.0,
                                 num_frames=args.frames, **options))
        else:
            print(generate_image(args.config, args.prompt, args.out, guidance_scale=args.guidance or 7.5, **options))
        return 0
    if args.command == "make-exercises":
        from minivdm.course.exercises import sync_exercises

        stale = sync_exercises(check_only=args.check)
        for path in stale:
            print(("out of sync: " if args.check else "wrote ") + str(path))
        return 1 if (args.check and stale) else 0
    if args.command == "course":
        from minivdm.course.workspace import copy_course

        copied, kept = copy_course(args.out, with_solutions=args.with_solutions)
        for path in copied:
            print(f"copied {path}")
        for path in kept:
            print(f"kept   {path} (already there: your work is not overwritten)")
        print(f"open them with: jupyter lab {args.out}   (as root: jupyter lab --allow-root {args.out})")
        return 0
    if args.command == "grade":
        try:
            from minivdm.course.gradebook import default_jobs, grade_folder, summary_rows
            from minivdm.course.notebook_run import GIB, MIB, Limits
        except ImportError as error:
            raise ValueError(f"grading needs nbclient, nbformat and ipykernel ({error}): "
                             f"pip install -e '.[grade]' (scripts/setup.sh installs them)") from None

        jobs = args.jobs or default_jobs()
        limits = Limits(wall_time_s=args.timeout, memory_bytes=int(args.memory * GIB),
                        output_bytes=int(args.max_output * MIB), threads=max(1, (os.cpu_count() or 1) // jobs))
        try:
            gradebook = grade_folder(args.submissions, args.out, exercises_dir=args.exercises,
                                     weights_path=args.weights, jobs=jobs, limits=limits,
                                     log=lambda line: print(line, file=sys.stderr))
        except KeyboardInterrupt:
            print("minivdm grade: stopped. Every notebook graded so far is saved: run the same command again to "
                  "go on.", file=sys.stderr, flush=True)
            sys.stdout.flush()
            # leave now: nbclient's exit handlers would touch the stopped kernels' sockets from this thread
            os._exit(130)
        for record in summary_rows(gradebook.rows, None):
            print(f"{record['student']:<20} {record['checks_passed']:>3} / {record['checks_total']:<3} checks passed")
        print(f"gradebook: {gradebook.paths.gradebook}\nsummary:   {gradebook.paths.summary}\n"
              f"reports:   {gradebook.paths.reports}/")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
