"""Forward time and peak memory: minivdm's from-scratch U-Net vs diffusers', same weights, same inputs.

    .venv/bin/python bench/unet_forward.py                 # mid-size SD-layout config on CPU
    .venv/bin/python bench/unet_forward.py --config sd15 --device cuda --dtype fp16   # full scale on a GPU

Random weights are written once in the published layout; each implementation loads them in its own
subprocess (ours through minivdm's loader on the meta device, diffusers' through from_pretrained), so
peak memory (RSS on CPU, max allocated on CUDA) is its own. Prints both and the ratio ours / diffusers (target: <= 1.0).
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

from minivdm.configs.stable_diffusion import CONFIGS, SD15

MID = replace(SD15, name="mid", block_out_channels=(128, 256, 256, 256), attention_head_dim=4, cross_attention_dim=384,
              sample_size=32)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def config_for(name: str):
    return MID if name == "mid" else CONFIGS[name]


def write_weights(config_name: str, folder: str) -> None:
    """Random weights (seed 0) in the published layout: both implementations load this same folder."""
    from diffusers import UNet2DConditionModel as DiffusersUNet

    torch.manual_seed(0)
    kwargs = {k: v for k, v in config_for(config_name).to_diffusers().items() if k != "_class_name"}
    DiffusersUNet(**kwargs).save_pretrained(folder)


def measure(implementation: str, config_name: str, folder: str, device: str, dtype: str, batch: int, repeats: int,
            clock: str = "wall") -> dict:
    from diffusers import UNet2DConditionModel as DiffusersUNet

    from minivdm.models.unet_2d_condition import UNet2DConditionModel

    config = config_for(config_name)
    if implementation == "ours":
        model = UNet2DConditionModel.from_pretrained(folder, subfolder=None, dtype=DTYPES[dtype], device=device)
    else:
        model = DiffusersUNet.from_pretrained(folder, torch_dtype=DTYPES[dtype]).to(device).eval()
    g = torch.Generator().manual_seed(1)
    sample = torch.randn(batch, config.in_channels, config.sample_size, config.sample_size, generator=g).to(device, DTYPES[dtype])
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
    run()  # warm-up
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
    parser.add_argument("--config", default="mid", help="mid (default), sd15, sd2-depth ...")
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
        print(json.dumps(measure(args.worker, args.config, args.folder, args.device, args.dtype, args.batch, args.repeats, args.clock)))
        return
    runs = {"diffusers": [], "ours": []}
    with tempfile.TemporaryDirectory() as folder:
        write_weights(args.config, folder)
        for round_index in range(args.rounds):
            order = ("diffusers", "ours") if round_index % 2 == 0 else ("ours", "diffusers")
            for implementation in order:
                command = [sys.executable, __file__, "--worker", implementation, "--folder", folder, "--config", args.config,
                           "--device", args.device, "--dtype", args.dtype, "--batch", str(args.batch), "--repeats", str(args.repeats),
                           "--clock", args.clock]
                output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                runs[implementation].append(json.loads(output.strip().splitlines()[-1]))
    results = {name: {key: statistics.median(run[key] for run in worker_runs) for key in ("seconds", "peak_bytes")}
               for name, worker_runs in runs.items()}
    rounds = (f" rounds={args.rounds}" if args.rounds > 1 else "") + (" clock=cpu" if args.clock == "cpu" else "")
    print(f"config={args.config} device={args.device} dtype={args.dtype} batch={args.batch} threads={torch.get_num_threads()}{rounds}")
    for name, result in results.items():
        print(f"{name:>10}: forward {result['seconds'] * 1000:8.1f} ms   peak memory {result['peak_bytes'] / 2**20:8.1f} MiB")
    ours, theirs = results["ours"], results["diffusers"]
    print(f"ratio ours/diffusers: time {ours['seconds'] / theirs['seconds']:.3f}x   peak memory {ours['peak_bytes'] / theirs['peak_bytes']:.3f}x")


if __name__ == "__main__":
    main()
