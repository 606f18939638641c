"""Forward time and peak memory: minivdm's from-scratch U-Net vs diffusers', same weights, same inputs.

    .venv/bin/python bench/unet_forward.py                 # mid-size SD-layout config on CPU
    .venv/bin/python bench/unet_forward.py --config sd15 --device cuda --dtype fp16   # full scale on a GPU
    .venv/bin/python bench/unet_forward.py --config modelscope-mid --frames 4          # mid-size ModelScope 3D U-Net on CPU
    .venv/bin/python bench/unet_forward.py --config modelscope --device cuda --dtype fp16   # ModelScope t2v, 16 frames at 256 px

``--config modelscope`` / ``modelscope-mid`` time the text-to-video 3D U-Net (minivdm.models.unet_3d_condition
against diffusers' UNet3DConditionModel) on a video latent (B, 4, F, H, W), F = ``--frames`` (default 16) and
H = W = the config's sample size (32x32 latents for the full model, i.e. 256 px, ModelScope's native size).

Random weights are written once in the published layout; each implementation loads them in its own
subprocess (ours through minivdm's loader on the meta device, diffusers' through from_pretrained), so
peak memory (RSS on CPU, max allocated on CUDA) is its own. Prints both and the ratio ours / diffusers (target: <= 1.0),
and the largest absolute difference between the two outputs (same weights, same inputs: it should be at the level of
the dtype's rounding). For the 3D U-Net the zero-initialised temporal projections get random weights too, so that
the comparison covers the temporal layers.
On a noisy machine, ``--rounds N`` runs both workers N times, alternating which goes first, and reports the
median over rounds of each worker's median time and of its peak memory. ``--clock cpu`` times with the
process's CPU time (user + sys) instead of the wall clock: with one thread (OMP_NUM_THREADS=1) it counts the
forward's own work and not the time other processes hold the core (CPU only).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace

import torch

from minivdm.configs.modelscope import MODELSCOPE_T2V
from minivdm.configs.stable_diffusion import CONFIGS, SD15
from minivdm.models.unet_3d_condition import UNet3DConditionConfig

MID = replace(SD15, name="mid", block_out_channels=(128, 256, 256, 256), attention_head_dim=4, cross_attention_dim=384,
              sample_size=32)
# ModelScope's layout with reduced widths (attention_head_dim is the head width here: 4 / 8 heads per block)
MODELSCOPE_MID = replace(MODELSCOPE_T2V, name="modelscope-mid", block_out_channels=(128, 256, 256, 256),
                         attention_head_dim=32, cross_attention_dim=384, sample_size=32)
VIDEO_CONFIGS = {"modelscope": MODELSCOPE_T2V, "modelscope-mid": MODELSCOPE_MID}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def config_for(name: str):
    return MID if name == "mid" else VIDEO_CONFIGS[name] if name in VIDEO_CONFIGS else CONFIGS[name]


def is_video(config) -> bool:
    return isinstance(config, UNet3DConditionConfig)


def classes_for(config):
    """(minivdm's class, diffusers' class) for a config."""
    if is_video(config):
        from diffusers import UNet3DConditionModel as DiffusersUNet

        from minivdm.models.unet_3d_condition import UNet3DConditionModel as OurUNet
    else:
        from diffusers import UNet2DConditionModel as DiffusersUNet

        from minivdm.models.unet_2d_condition import UNet2DConditionModel as OurUNet
    return OurUNet, DiffusersUNet


def write_weights(config_name: str, folder: str) -> None:
    """Random weights (seed 0) in the published layout: both implementations load this same folder."""
    config = config_for(config_name)
    _, DiffusersUNet = classes_for(config)
    torch.manual_seed(0)
    kwargs = {k: v for k, v in config.to_diffusers().items() if k != "_class_name"}
    model = DiffusersUNet(**kwargs)
    if is_video(config):
        # the temporal layers' last projections start at zero (identity); random values make them do something
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if ".conv4." in name or "proj_out" in name:
                    parameter.normal_(0.0, 0.05)
    model.save_pretrained(folder)


def measure(implementation: str, config_name: str, folder: str, device: str, dtype: str, batch: int, repeats: int,
            clock: str = "wall", frames: int = 16) -> dict:
    config = config_for(config_name)
    OurUNet, DiffusersUNet = classes_for(config)
    if implementation == "ours":
        model = OurUNet.from_pretrained(folder, subfolder=None, dtype=DTYPES[dtype], device=device)
    else:
        model = DiffusersUNet.from_pretrained(folder, torch_dtype=DTYPES[dtype]).to(device).eval()
    g = torch.Generator().manual_seed(1)
    # image (B, C, H, W) or video (B, C, F, H, W) latent
    shape = (batch, config.in_channels) + ((frames,) if is_video(config) else ()) + (config.sample_size, config.sample_size)
    sample = torch.randn(*shape, generator=g).to(device, DTYPES[dtype])
    context = torch.randn(batch, 77, config.cross_attention_dim, generator=g).to(device, DTYPES[dtype])
    timestep = torch.tensor([500] * batch, device=device)

    def run():
        with torch.inference_mode():
            out = model(sample, timestep, context)
            out = out if implementation == "ours" else out.sample
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    now = time.perf_counter if clock == "wall" else time.process_time
    output = run()  # warm-up
    torch.save(output.float().cpu(), f"{folder}/output_{implementation}.pt")
    del output
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = now()
        run()
        times.append(now() - start)
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": statistics.median(times), "peak_bytes": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="mid", choices=["mid", *CONFIGS, *VIDEO_CONFIGS],
                        help="mid (default), sd15, sd2-depth ...: SD's 2D U-Net; modelscope, modelscope-mid: the 3D U-Net")
    parser.add_argument("--frames", type=int, default=16,
                        help="F of the video latent (B, 4, F, H, W) for the modelscope configs (default 16); H = W = the "
                             "config's sample size, 32x32 latents for modelscope, i.e. 256 px, ModelScope's native size")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed forward passes per worker (median)")
    parser.add_argument("--rounds", type=int, default=1, help="worker runs per implementation, alternating order (median)")
    parser.add_argument("--clock", default="wall", choices=["wall", "cpu"], help="wall clock, or process CPU time (CPU device only)")
    parser.add_argument("--worker", choices=["ours", "diffusers"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clock == "cpu" and args.device != "cpu":
        parser.error("--clock cpu measures CPU work; use the wall clock on a GPU")
    if args.worker:
        print(json.dumps(measure(args.worker, args.config, args.folder, args.device, args.dtype, args.batch, args.repeats, args.clock,
                                 args.frames)))
        return
    video = is_video(config_for(args.config))
    runs = {"diffusers": [], "ours": []}
    with tempfile.TemporaryDirectory() as folder:
        write_weights(args.config, folder)
        for round_index in range(args.rounds):
            order = ("diffusers", "ours") if round_index % 2 == 0 else ("ours", "diffusers")
            for implementation in order:
                command = [sys.executable, __file__, "--worker", implementation, "--folder", folder, "--config", args.config,
                           "--device", args.device, "--dtype", args.dtype, "--batch", str(args.batch), "--repeats", str(args.repeats),
                           "--clock", args.clock, "--frames", str(args.frames)]
                output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                runs[implementation].append(json.loads(output.strip().splitlines()[-1]))
        outputs = {name: torch.load(f"{folder}/output_{name}.pt") for name in ("ours", "diffusers")}
    difference = (outputs["ours"] - outputs["diffusers"]).abs().max().item()
    results = {name: {key: statistics.median(run[key] for run in worker_runs) for key in ("seconds", "peak_bytes")}
               for name, worker_runs in runs.items()}
    rounds = (f" rounds={args.rounds}" if args.rounds > 1 else "") + (" clock=cpu" if args.clock == "cpu" else "")
    frames = f" frames={args.frames}" if video else ""
    print(f"config={args.config} device={args.device} dtype={args.dtype} batch={args.batch}{frames} "
          f"threads={torch.get_num_threads()}{rounds}")
    for name, result in results.items():
        print(f"{name:>10}: forward {result['seconds'] * 1000:8.1f} ms   peak memory {result['peak_bytes'] / 2**20:8.1f} MiB")
    ours, theirs = results["ours"], results["diffusers"]
    print(f"ratio ours/diffusers: time {ours['seconds'] / theirs['seconds']:.3f}x   peak memory {ours['peak_bytes'] / theirs['peak_bytes']:.3f}x")
    print(f"max abs difference of outputs: {difference:.3g}   (output max abs {outputs['diffusers'].abs().max().item():.3g})")


if __name__ == "__main__":
    main()
