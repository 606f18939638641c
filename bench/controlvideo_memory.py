"""Peak memory and time of ControlVideo's sampler against the number of frames: every frame in one call (flat,
fully cross-frame attention over all of them) against the hierarchical sampler (clips of ``--clip-length`` + 1
frames: no call holds more).

    .venv/bin/python bench/controlvideo_memory.py [--frames 16 32 64 128] [--steps 2] [--device cuda]

One video of the toy world's edge maps, the shipped toy ControlNet on the toy text-to-image model, with
classifier-free guidance and the smoother off (its cost is per frame). Each measurement runs in its own process:
on a GPU the peak is ``torch.cuda.max_memory_allocated``; on the CPU it is the process's peak resident memory
(ru_maxrss) minus that of the same process after loading the model (so: what sampling added), with the address
space capped at ``--cap-gib`` so a flat run that would not fit fails here instead of taking the machine down.
Time is per DDIM step.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def child(frames: int, clip_length: int | None, steps: int, device: str) -> dict:
    """Runs in the subprocess: load, sample, report."""
    from minivdm.toy.controlnet import load_toy_controlnet
    from minivdm.toy.controlvideo import ToyControlVideoSettings, held_out_videos, toy_controlvideo

    torch.manual_seed(0)
    model, tokenizer = load_toy_controlnet(device=device)
    controls = held_out_videos(1, frames).edges.float()
    settings = ToyControlVideoSettings(num_frames=frames, num_steps=steps, clip_length=clip_length)
    loaded_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    toy_controlvideo(model, tokenizer, ["a red circle"], controls, settings=settings)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        peak_mib = torch.cuda.max_memory_allocated() / 2 ** 20
    else:
        peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - loaded_kib) / 1024
    return {"seconds_per_step": (time.perf_counter() - start) / steps, "peak_mib": peak_mib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--clip-length", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2, help="DDIM steps timed (time is per step)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cap-gib", type=float, default=12.0, help="CPU: address-space cap of each measurement")
    parser.add_argument("--out", help="write the figures here as JSON")
    parser.add_argument("--child", nargs=3, metavar=("FRAMES", "CLIP", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        frames, clip, steps = int(args.child[0]), int(args.child[1]), int(args.child[2])
        if not args.device.startswith("cuda"):
            cap = int(args.cap_gib * 2 ** 30)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        print(json.dumps(child(frames, clip or None, steps, args.device)))
        return
    if args.steps < 1 or args.clip_length < 1 or min(args.frames) < 2:
        parser.error("--steps and --clip-length must be >= 1, --frames >= 2")

    print(f"device {args.device}, one video, {args.steps} DDIM steps with guidance, clips of {args.clip_length} + 1 "
          f"frames\n| frames | sampler | peak memory (MiB) | s / step |\n|---|---|---|---|", flush=True)
    results = []
    for frames in args.frames:
        for name, clip in (("flat", 0), ("hierarchical", args.clip_length)):
            run = subprocess.run([sys.executable, __file__, "--device", args.device, "--cap-gib", str(args.cap_gib),
                                  "--child", str(frames), str(clip), str(args.steps)], capture_output=True, text=True)
            lines = run.stdout.strip().splitlines()
            if run.returncode == 0 and lines:
                row = {"frames": frames, "sampler": name, **json.loads(lines[-1])}
                print(f"| {frames} | {name} | {row['peak_mib']:.0f} | {row['seconds_per_step']:.2f} |", flush=True)
            else:
                reason = "out of memory" if "memory" in run.stderr.lower() else f"failed (exit {run.returncode})"
                row = {"frames": frames, "sampler": name, "error": reason, "stderr_tail": run.stderr[-400:]}
                print(f"| {frames} | {name} | {reason} | - |", flush=True)
            results.append(row)
    if args.out:
        with open(args.out, "w") as file:
            json.dump({"device": args.device, "steps": args.steps, "clip_length": args.clip_length, "rows": results},
                      file, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
