"""How the tiny VDM's cost grows with frames and resolution, and why autoregressive extension bounds memory.

    OMP_NUM_THREADS=1 .venv/bin/python bench/vdm_scale.py --quick     # a few minutes on one CPU thread
    .venv/bin/python bench/vdm_scale.py --device cuda --repeats 5

Video Diffusion Models (Ho, Salimans et al., 2022, arXiv:2204.03458): every frame adds per-frame
activations and temporal attention is quadratic in T, so one sampling step costs more the longer the
clip; Sec. 3.1 makes long videos by extending a short window instead (``minivdm.methods.video_extension``).
The model is the toy config (``minivdm.configs.vdm.TINY_VDM``) with random weights and a random text
context (B, 16, 64); one video (B = 1), so a sampling step is

    forward:  one model call at batch 2 (classifier-free guidance runs both branches together)
    guided:   the same call plus the backward pass to z_t that reconstruction guidance needs

Table 1 varies the frames at 32x32, table 2 the resolution at 16 frames. Table 3 samples a 64-frame
video in one window and by extension (window 16, overlap 8, the first 16 frames sampled as one window),
each with ``--steps`` DDIM steps. Every measurement runs in its own subprocess, so its peak memory is its
own: peak RSS on CPU (resource.getrusage maxrss; "added" is the peak minus the RSS once the model is
built), torch.cuda.max_memory_allocated on CUDA ("added" minus the weights).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

from minivdm.configs.vdm import TINY_VDM
from minivdm.diffusion import guided_model, sample
from minivdm.diffusion.reconstruction_guidance import reconstruction_guided_extension_model
from minivdm.methods.video_extension import extend_video
from minivdm.models.vdm_unet import VDMUNet
from minivdm.toy.vdm import TOY_VDM_SCHEDULE

TEXT_TOKENS = 16
GUIDANCE_SCALE = 3.0
W_R = 2.0


def current_memory(device: str) -> int:
    """Bytes in use now: resident set on CPU (Linux /proc), allocated tensors on CUDA."""
    if device == "cuda":
        return torch.cuda.memory_allocated()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory(device: str) -> int:
    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def build_model_fn(device: str):
    """CFG-wrapped tiny VDM with random weights: model_fn(z_t (1, 3, T, H, W), t (1,)) -> v_hat."""
    torch.manual_seed(0)
    vdm = VDMUNet(TINY_VDM).to(device).eval()
    # the output conv is zero at init (v_hat = 0 everywhere): give it random weights so gradients are real
    torch.nn.init.normal_(vdm.conv_out.weight, std=0.02)
    # sampling differentiates x_hat with respect to z_t only, never the weights
    vdm.requires_grad_(False)
    context = torch.randn(1, TEXT_TOKENS, TINY_VDM.cross_attention_dim, device=device)
    null_context = torch.zeros_like(context)

    def model(z_t, t, text):
        return vdm(z_t, TOY_VDM_SCHEDULE.log_snr(t).to(device), text)

    return guided_model(model, context, null_context, GUIDANCE_SCALE)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure_step(device: str, mode: str, frames: int, size: int, repeats: int) -> dict:
    """Median seconds of one sampling step's model call ("forward" or "guided") and its peak memory."""
    model_fn = build_model_fn(device)
    generator = torch.Generator().manual_seed(1)
    z_t = torch.randn(1, TINY_VDM.in_channels, frames, size, size, generator=generator).to(device)
    t = torch.full((1,), 0.5, device=device)
    if mode == "guided":
        x_a = torch.randn(1, TINY_VDM.in_channels, frames // 2, size, size, generator=generator).to(device)
        model_fn = reconstruction_guided_extension_model(model_fn, TOY_VDM_SCHEDULE, x_a, W_R, prediction_type="v")

    def step():
        with torch.no_grad():  # as inside sample(); the guided model turns gradients on for itself
            model_fn(z_t, t)
        synchronize(device)

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    baseline = current_memory(device)
    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = peak_memory(device)
    return {"seconds": statistics.median(times), "peak_bytes": peak, "added_bytes": peak - baseline}


def measure_video(device: str, mode: str, total_frames: int, size: int, window: int, overlap: int, steps: int) -> dict:
    """Seconds and peak memory to sample one video of ``total_frames``: in one window ("direct") or by extension."""
    model_fn = build_model_fn(device)
    generator = torch.Generator(device).manual_seed(2)
    times = TOY_VDM_SCHEDULE.uniform_times(steps)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    baseline = current_memory(device)
    start = time.perf_counter()
    first_frames = total_frames if mode == "direct" else window
    z_1 = torch.randn(1, TINY_VDM.in_channels, first_frames, size, size, generator=generator, device=device)
    video = sample(model_fn, z_1, TOY_VDM_SCHEDULE, times, prediction_type="v", progress=False)
    if mode != "direct":
        video = extend_video(model_fn, video, total_frames, TOY_VDM_SCHEDULE, window=window, overlap=overlap,
                             method=mode, w_r=W_R if mode == "reconstruction" else None, num_steps=steps,
                             prediction_type="v", generator=generator)
    synchronize(device)
    seconds = time.perf_counter() - start
    peak = peak_memory(device)
    assert video.shape[2] == total_frames
    return {"seconds": seconds, "peak_bytes": peak, "added_bytes": peak - baseline}


def run_worker(args, **spec) -> dict:
    """One measurement in a fresh interpreter, so that its peak memory is its own."""
    command = [sys.executable, __file__, "--worker", json.dumps(spec), "--device", args.device,
               "--repeats", str(args.repeats), "--steps", str(args.steps)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def mib(value: float) -> str:
    return f"{value / 2**20:8.1f}"


def step_table(args, title: str, settings: list[tuple[int, int]]) -> None:
    print(f"\n{title}")
    print(f"{'frames':>6} {'size':>5} | {'forward ms':>10} {'peak MiB':>8} {'added':>8} | "
          f"{'guided ms':>10} {'peak MiB':>8} {'added':>8} | {'guided/fwd':>10}")
    for frames, size in settings:
        forward = run_worker(args, kind="step", mode="forward", frames=frames, size=size)
        guided = run_worker(args, kind="step", mode="guided", frames=frames, size=size)
        print(f"{frames:>6} {size:>5} | {forward['seconds'] * 1000:10.1f} {mib(forward['peak_bytes'])} "
              f"{mib(forward['added_bytes'])} | {guided['seconds'] * 1000:10.1f} {mib(guided['peak_bytes'])} "
              f"{mib(guided['added_bytes'])} | {guided['seconds'] / forward['seconds']:9.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3, help="timed model calls per step measurement (median)")
    parser.add_argument("--steps", type=int, default=3, help="DDIM steps per window in table 3")
    parser.add_argument("--quick", action="store_true", help="one timed call and 2 DDIM steps")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.steps = 1, 2
    if args.worker:
        spec = json.loads(args.worker)
        if spec.pop("kind") == "step":
            result = measure_step(args.device, spec["mode"], spec["frames"], spec["size"], args.repeats)
        else:
            result = measure_video(args.device, spec["mode"], spec["total_frames"], spec["size"], spec["window"],
                                   spec["overlap"], args.steps)
        print(json.dumps(result))
        return

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"tiny VDM ({sum(p.numel() for p in VDMUNet(TINY_VDM).parameters()) / 1e6:.2f}M parameters), random weights, "
          f"B=1 video with CFG (model batch 2), text (1, {TEXT_TOKENS}, {TINY_VDM.cross_attention_dim}); "
          f"device: {device_name}; repeats={args.repeats}")
    memory = "peak RSS" if args.device == "cpu" else "max allocated"
    print(f"memory: {memory}; 'added' = peak minus the memory once the model is built")
    step_table(args, "1. one sampling step vs frames (32x32)", [(frames, 32) for frames in (8, 16, 32, 64)])
    step_table(args, "2. one sampling step vs resolution (16 frames)", [(16, size) for size in (32, 64)])

    total, window, overlap = 64, 16, 8
    print(f"\n3. a {total}-frame video at 32x32, {args.steps} DDIM steps per window "
          f"(extension: window {window}, overlap {overlap}, first {window} frames as one window)")
    print(f"{'how':<40} | {'model sees':>10} {'seconds':>8} {'peak MiB':>8} {'added':>8}")
    for mode, label, frames_seen in [("direct", f"one window of {total} frames", total),
                                     ("replacement", "extension, replacement", window),
                                     ("reconstruction", f"extension, reconstruction (w_r={W_R})", window)]:
        result = run_worker(args, kind="video", mode=mode, total_frames=total, size=32, window=window, overlap=overlap)
        print(f"{label:<40} | {frames_seen:>10} {result['seconds']:8.1f} {mib(result['peak_bytes'])} "
              f"{mib(result['added_bytes'])}", flush=True)


if __name__ == "__main__":
    main()
