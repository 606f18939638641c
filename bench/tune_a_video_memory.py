"""Peak memory and time of a Tune-A-Video tuning step (forward, backward, AdamW on the tuned parameters) against
the number of frames, with and without gradient checkpointing, and in fp16 autocast on a GPU.

    .venv/bin/python bench/tune_a_video_memory.py                       # the toy model on the CPU
    .venv/bin/python bench/tune_a_video_memory.py --model sd14 --size 512 --frames 8 24 --device cuda
                                                                        # SD 1.4 inflated, random weights, GPU

``tiny``: the toy text-to-image U-Net inflated (32 x 32 pixels). ``sd14``: SD 1.4's U-Net inflated, random weights
(the figure does not depend on them), on latents of --size / 8. Each measurement runs in its own process, through
the course's training loop (``tune_a_video``, one step, no checkpoint written): on a GPU the peak is
``torch.cuda.max_memory_allocated`` (weights included); on the CPU it is the process's peak resident memory
(ru_maxrss) minus that after building the model (what the step added).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import replace

import torch


STEPS = 3  # timed together (the first step also builds the optimizer's state); memory is the peak over them


def child(model_name: str, frames: int, size: int, checkpointing: bool, precision: str, device: str) -> dict:
    from minivdm.diffusion import ScaledLinearSchedule
    from minivdm.methods.tune_a_video import tune_a_video
    from minivdm.models.tune_a_video_unet import TuneAVideoUNet
    from minivdm.toy.tune_a_video import TOY_TUNING

    torch.manual_seed(0)
    if model_name == "tiny":
        from minivdm.configs.stable_diffusion import TINY as config

        channels, side = 3, 32
    else:
        from minivdm.configs.stable_diffusion import SD14 as config

        channels, side = 4, size // 8
    unet = TuneAVideoUNet(config).to(device)
    unet.enable_gradient_checkpointing(checkpointing)
    video = torch.randn(1, channels, frames, side, side, device=device)
    text = torch.randn(1, 77, config.cross_attention_dim, device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    built_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    config_steps = replace(TOY_TUNING, steps=STEPS, checkpoint_every=STEPS, log_every=1)
    start = time.perf_counter()
    tune_a_video(unet, video, text, ScaledLinearSchedule(), config=config_steps, prediction_type="eps",
                 integer_timesteps=True, progress=False, device="cuda" if device.startswith("cuda") else "cpu",
                 mixed_precision=precision)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        peak_mib = torch.cuda.max_memory_allocated() / 2 ** 20
    else:
        peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - built_kib) / 1024
    return {"seconds_per_step": (time.perf_counter() - start) / STEPS, "peak_mib": peak_mib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["tiny", "sd14"], default="tiny")
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 24])
    parser.add_argument("--size", type=int, default=512, help="sd14: frame size in pixels (latents: size / 8)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", help="write the figures here as JSON")
    parser.add_argument("--child", nargs=3, metavar=("FRAMES", "CHECKPOINTING", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        frames, checkpointing, precision = int(args.child[0]), args.child[1] == "1", args.child[2]
        print(json.dumps(child(args.model, frames, args.size, checkpointing, precision, args.device)))
        return
    if args.model == "sd14" and not args.device.startswith("cuda"):
        parser.error("--model sd14 measures a full-size step on a GPU (--device cuda); on the CPU use --model tiny")
    precisions = ["no", "fp16"] if args.device.startswith("cuda") else ["no"]
    print(f"{args.model} on {args.device}: a tuning step (mean of {STEPS})\n| frames | gradient checkpointing | precision | "
          f"peak memory (MiB) | s / step |\n|---|---|---|---|---|", flush=True)
    rows = []
    for frames in args.frames:
        for checkpointing in (False, True):
            for precision in precisions:
                run = subprocess.run([sys.executable, __file__, "--model", args.model, "--size", str(args.size),
                                      "--device", args.device, "--child", str(frames), str(int(checkpointing)),
                                      precision], capture_output=True, text=True)
                lines = run.stdout.strip().splitlines()
                row = {"frames": frames, "gradient_checkpointing": checkpointing, "precision": precision}
                if run.returncode == 0 and lines:
                    row.update(json.loads(lines[-1]))
                    print(f"| {frames} | {'on' if checkpointing else 'off'} | {precision} | {row['peak_mib']:.0f} | "
                          f"{row['seconds_per_step']:.2f} |", flush=True)
                else:
                    row["error"] = run.stderr[-400:]
                    print(f"| {frames} | {'on' if checkpointing else 'off'} | {precision} | failed | - |", flush=True)
                rows.append(row)
    if args.out:
        with open(args.out, "w") as file:
            json.dump({"model": args.model, "device": args.device, "size": args.size, "rows": rows}, file, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
