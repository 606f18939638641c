"""One small training loop shared by every chapter: seeded, with a progress bar, EMA weights and
resumable, atomically written checkpoints.

A run is described by a ``TrainConfig`` and two functions the chapter supplies:

    batch = next_batch(step, generator)          # the data for this step
    loss  = loss_fn(model, batch, generator)     # a scalar tensor

Every ``checkpoint_every`` steps the model, its EMA copy, the optimizer and both random generators
are written to ``<checkpoint_dir>/last.pt`` via a temporary file and ``os.replace``, so an
interrupted run never leaves a broken checkpoint, and ``train`` called again with the same
directory continues from the last step it saved, reproducing the uninterrupted run exactly. A finished
run can be extended by calling it again with a larger ``steps``.

The same loop runs unchanged on several processes or GPUs under ``accelerate launch`` (data
parallel): every process draws the same global batch, keeps its own contiguous shard of it
(a ``batch_size / num_processes`` slice along dim 0 of every tensor), and gradients are averaged
across processes before each step. A ``loss_fn`` that draws no random numbers itself (noise and
times drawn in ``next_batch``) therefore gives the same weights on any number of processes as on
one. Only the main process shows progress and writes checkpoints.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from minivdm.validation import check_in_range, check_positive_int


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    learning_rate: float = 5e-4
    warmup_steps: int = 100
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 200
    log_every: int = 50
    # "constant" after warmup, or "cosine": decay to zero at the last step (annealing a model at the
    # end of training sharpens it; the decay depends on ``steps``, so such a run cannot be extended)
    decay: str = "constant"
    # (name part, factor): parameters whose name contains the part train at learning_rate * factor, the
    # first match counting; e.g. layers just added to a trained model, which start from zero
    lr_multipliers: tuple[tuple[str, float], ...] = ()

    def __post_init__(self):
        check_positive_int(self.steps, "steps")
        check_positive_int(self.checkpoint_every, "checkpoint_every")
        check_positive_int(self.log_every, "log_every")
        check_in_range(self.ema_decay, "ema_decay", 0.0, 1.0)
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.decay not in ("constant", "cosine"):
            raise ValueError(f"decay must be 'constant' or 'cosine', got {self.decay!r}")
        for entry in self.lr_multipliers:
            if len(entry) != 2 or not isinstance(entry[0], str) or not entry[1] > 0:
                raise ValueError(f"lr_multipliers must hold (name part, factor > 0) pairs, got {self.lr_multipliers!r}")

    def parameter_groups(self, model: torch.nn.Module) -> list[dict]:
        """The optimizer's parameter groups: one per learning rate, in the model's parameter order."""
        groups: dict[float, list] = {}
        for name, parameter in model.named_parameters():
            factor = next((f for part, f in self.lr_multipliers if part in name), 1.0)
            groups.setdefault(factor, []).append(parameter)
        return [{"params": params, "lr": self.learning_rate * factor} for factor, params in groups.items()]

    def learning_rate_factor(self, step: int) -> float:
        """Multiplier of ``learning_rate`` at ``step``: linear warmup, then constant or cosine decay."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.decay == "constant":
            return 1.0
        progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class TrainResult:
    model: torch.nn.Module
    ema_model: torch.nn.Module
    losses: list[float]  # the mean loss of each logging window
    seconds: float  # training time of all segments of a resumed run, not only the last
    resumed_from: int  # 0 for a fresh run
    is_main_process: bool = True  # under a multi-process launch, the one process that writes files


def _atomic_torch_save(obj: Any, path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    torch.save(obj, temporary)
    os.replace(temporary, path)


def save_weights(model: torch.nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write a model's weights as safetensors, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()}
    save_file(state, str(temporary), metadata=metadata)
    os.replace(temporary, path)
    return path


@torch.no_grad()
def _update_ema(ema_model: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for ema_param, param in zip(ema_model.parameters(), model.parameters()):
        ema_param.lerp_(param, 1 - decay)


def shard_batch(batch: Any, index: int, count: int) -> Any:
    """The ``index``-th of ``count`` contiguous slices (dim 0) of every tensor in a (nested) batch."""
    if count == 1:
        return batch
    if isinstance(batch, torch.Tensor):
        if batch.shape[0] % count:
            raise ValueError(f"a batch of {batch.shape[0]} cannot be split evenly over {count} processes; "
                             "make the batch size a multiple of the number of processes")
        return batch.chunk(count)[index]
    if isinstance(batch, (tuple, list)):
        return type(batch)(shard_batch(part, index, count) for part in batch)
    if isinstance(batch, dict):
        return {key: shard_batch(part, index, count) for key, part in batch.items()}
    raise TypeError(f"a batch must be tensors in tuples, lists or dicts to be split over processes, got {type(batch).__name__}")


def _loss_generator(generator: torch.Generator, seed: int, step: int, process_index: int,
                    num_processes: int) -> torch.Generator:
    """On one process, the shared generator itself. On several, each process gets its own, fixed by
    (seed, step, process), so shards get different noise, the shared generator (and so the next
    batch) is untouched, and a resumed run draws the same numbers without saving per-process state."""
    if num_processes == 1:
        return generator
    return torch.Generator().manual_seed((seed << 40) + (step << 10) + process_index)


def train(model: torch.nn.Module, next_batch: Callable[[int, torch.Generator], Any],
          loss_fn: Callable[[torch.nn.Module, Any, torch.Generator], torch.Tensor], config: TrainConfig,
          checkpoint_dir: str | Path | None = None, *, progress: bool = True, device: str = "cpu") -> TrainResult:
    """Train ``model`` for ``config.steps`` steps; resume from ``checkpoint_dir/last.pt`` if present.

    ``device`` is "cpu" or "cuda" (under ``accelerate launch`` each process takes its own GPU).
    """
    from accelerate import Accelerator  # imported here: a plain CPU run pays for it only when training
    from accelerate.utils import send_to_device

    accelerator = Accelerator(cpu=device == "cpu")
    torch.manual_seed(config.seed)  # dropout and any module that draws from the global generator
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(config.parameter_groups(model), lr=config.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, config.learning_rate_factor)
    ema_model = copy.deepcopy(model).requires_grad_(False)
    losses: list[float] = []
    start_step, earlier_seconds = 0, 0.0

    checkpoint_path = None
    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        checkpoint_path = checkpoint_dir / "last.pt"
        if checkpoint_path.exists():
            state = torch.load(checkpoint_path, weights_only=True)
            # with a constant rate only ``steps`` may change: nothing else depends on the total, so a
            # run extended from N to M steps is identical to one started with M
            saved = {"lr_multipliers": (), **state["config"]}  # checkpoints from before that field had none
            if config.decay == "constant":
                saved["steps"] = config.steps
            if json.dumps(saved, sort_keys=True) != describe(config):  # JSON: tuples and lists compare equal
                raise ValueError(f"{checkpoint_path} was written by a different TrainConfig: {state['config']}; "
                                 "use a new checkpoint_dir or the same config (only steps may grow, and only with decay='constant')")
            if state["step"] > config.steps:
                raise ValueError(f"{checkpoint_path} is already at step {state['step']}, beyond steps={config.steps}")
            model.load_state_dict(state["model"])
            ema_model.load_state_dict(state["ema_model"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            losses, start_step = list(state["losses"]), int(state["step"])
            earlier_seconds = float(state.get("seconds", 0.0))

    # wrapped for data parallelism when launched on several processes; ``model`` stays the plain module
    ema_model.to(accelerator.device)
    parallel_model, optimizer = accelerator.prepare(model, optimizer)
    model = accelerator.unwrap_model(parallel_model)
    rank, world = accelerator.process_index, accelerator.num_processes

    def write_checkpoint(step: int) -> None:
        if checkpoint_path is not None and accelerator.is_main_process:
            _atomic_torch_save({
                "config": asdict(config), "step": step, "losses": losses, "model": model.state_dict(),
                "ema_model": ema_model.state_dict(), "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(), "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                "seconds": earlier_seconds + time.perf_counter() - started,
            }, checkpoint_path)
        accelerator.wait_for_everyone()

    model.train()
    started = time.perf_counter()
    window: list[float] = []
    bar = tqdm(range(start_step, config.steps), initial=start_step, total=config.steps, desc="train",
               disable=not (progress and accelerator.is_main_process))
    for step in bar:
        batch = send_to_device(shard_batch(next_batch(step, generator), rank, world), accelerator.device)
        loss = loss_fn(parallel_model, batch, _loss_generator(generator, config.seed, step, rank, world))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower learning_rate or check the data")
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)  # averages the gradients over processes
        accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        schedule.step()
        _update_ema(ema_model, model, config.ema_decay)
        window.append(accelerator.reduce(loss.detach(), reduction="mean").item())
        if len(window) == config.log_every:
            losses.append(sum(window) / len(window))
            window = []
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
            write_checkpoint(step + 1)
    model.eval()
    ema_model.eval()
    accelerator.free_memory()
    return TrainResult(model, ema_model, losses, earlier_seconds + time.perf_counter() - started, start_step,
                       accelerator.is_main_process)


def describe(config: TrainConfig) -> str:
    """The config as one JSON line, for a checkpoint's metadata."""
    return json.dumps(asdict(config), sort_keys=True)
