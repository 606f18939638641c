"""One small training loop shared by every chapter: seeded, with a progress bar, EMA weights and
resumable, atomically written checkpoints.

A run is described by a ``TrainConfig`` and two functions the chapter supplies:

    batch = next_batch(step, generator)          # the data for this step
    loss  = loss_fn(model, batch, generator)     # a scalar tensor

Every ``checkpoint_every`` steps the model, its EMA copy, the optimizer and both random generators
are written to ``<checkpoint_dir>/last.pt`` via a temporary file, ``fsync`` and ``os.replace``; the
state it replaces is kept as ``previous.pt``. ``train`` called again with the same directory continues
from the last step it saved, reproducing the uninterrupted run exactly, even after a kill -9. Should
``last.pt`` still be unreadable (cut short by a crash of the machine or a full disk), the run resumes
from ``previous.pt`` and replays the steps in between, with a warning. A finished run can be extended
by calling it again with a larger ``steps``. A run given ``max_seconds`` (a wall-clock budget) stops after
the first step that ends past it, writing a checkpoint there, so that a later call goes on from it.

A checkpoint directory belongs to one run. Its state records what defines that run, and a call whose
run differs is refused by name rather than continued: the model's parameter names, shapes and dtypes,
every ``TrainConfig`` field (only ``checkpoint_every`` may change, and ``steps`` may grow when the rate
is constant), and a ``run_description`` the caller gives for what ``train`` cannot see (the
prediction type, the data, the recipe).

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
import pickle
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from minivdm.io.checkpoints import CorruptCheckpointError, write_safetensors
from minivdm.validation import check_in_range, check_positive_int

STATE_FILE, PREVIOUS_STATE_FILE = "last.pt", "previous.pt"
# what every training state holds; a file without them is no training state
STATE_KEYS = ("config", "step", "losses", "model", "ema_model", "optimizer", "schedule", "generator", "torch_rng")
# TrainConfig fields that change no trained weight, so a resumed run may set them anew
# (``steps`` may also grow, under a constant rate: see ``_config_differences``)
RESUMABLE_CHANGES = ("checkpoint_every",)


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
    steps_done: int = 0  # the step the run reached: config.steps, or fewer when max_seconds stopped it
    stopped_early: bool = False  # max_seconds ran out before config.steps


class IncompatibleCheckpointError(ValueError):
    """A checkpoint directory written by a run other than the one asked for."""


def _write_training_state(state: dict, checkpoint_dir: Path, *, keep_last: bool) -> None:
    """Write ``last.pt`` so that a kill at any instant leaves a readable state behind: the new state
    reaches the disk under a temporary name first, and the one it replaces is kept as ``previous.pt``
    (``keep_last=False`` when ``last.pt`` is the unreadable file a resume fell back from)."""
    last, previous = checkpoint_dir / STATE_FILE, checkpoint_dir / PREVIOUS_STATE_FILE
    temporary = last.with_name(last.name + ".tmp")
    with open(temporary, "wb") as file:
        torch.save(state, file)
        file.flush()
        os.fsync(file.fileno())  # else a crash of the machine may leave the renamed file empty
    if keep_last and last.exists():
        os.replace(last, previous)
    os.replace(temporary, last)
    if os.name == "posix":  # make the renames themselves durable
        directory = os.open(checkpoint_dir, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def load_training_state(path: str | Path) -> dict:
    """One training state written by ``train``; a truncated or foreign file is a
    ``CorruptCheckpointError`` naming it, not a traceback from deep inside unpickling."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    # what torch.load raises on a cut zip (OSError, RuntimeError), an empty file or one of other bytes
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        if isinstance(error, pickle.UnpicklingError):  # torch's own text here advises weights_only=False: not ours
            reason = "its bytes are not a saved torch object"
        else:
            reason = str(error).strip().splitlines()[0].split(". ")[0] if str(error).strip() else type(error).__name__
        raise CorruptCheckpointError(
            f"cannot read the training state {path} ({path.stat().st_size} bytes): {reason}. It is probably "
            f"truncated (the machine stopped or the disk filled while it was written)") from None
    missing = [key for key in STATE_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise CorruptCheckpointError(f"{path} is not a training state written by minivdm.train: it lacks {missing}")
    return state


def _read_newest_state(checkpoint_dir: Path) -> tuple[dict, Path, bool] | None:
    """The newest readable state in ``checkpoint_dir`` (None if it holds none), the file it came
    from, and whether ``last.pt`` was unreadable."""
    candidates = [checkpoint_dir / name for name in (STATE_FILE, PREVIOUS_STATE_FILE)]
    candidates = [path for path in candidates if path.exists()]
    if not candidates:
        return None
    problems = []
    for path in candidates:
        try:
            state = load_training_state(path)
        except CorruptCheckpointError as error:
            problems.append(str(error))
            continue
        if problems:
            warnings.warn(f"{problems[0]}; resuming from the one before it, {path} (step {state['step']}), "
                          "and replaying the steps in between", RuntimeWarning, stacklevel=3)
        return state, path, bool(problems)
    raise CorruptCheckpointError(f"no readable training state in {checkpoint_dir}: {'; '.join(problems)}. "
                                 f"Delete {checkpoint_dir} to start the run over, or use a new --checkpoint-dir")


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON: tuples and lists compare equal, as in a saved state."""
    return json.loads(json.dumps(value, sort_keys=True))


def _config_differences(saved: dict, config: TrainConfig) -> list[str]:
    # a state from before a field existed ran as that field's default does now
    saved = {**_as_json(asdict(TrainConfig())), **_as_json(saved)}
    current = _as_json(asdict(config))
    differences = []
    for field, now in current.items():
        if field in RESUMABLE_CHANGES or saved[field] == now:
            continue
        if field == "steps" and config.decay == "constant" == saved["decay"]:
            continue  # nothing else depends on the total, so a run extended from N to M steps equals one of M
        note = " (a cosine decay depends on steps, so such a run cannot be extended)" if field == "steps" else ""
        differences.append(f"TrainConfig.{field}: saved {saved[field]!r}, now {now!r}{note}")
    return differences


def _architecture_differences(saved_model: dict[str, torch.Tensor], model: torch.nn.Module,
                              most: int = 5) -> list[str]:
    def layout(tensors):
        return {name: (tuple(tensor.shape), str(tensor.dtype).removeprefix("torch.")) for name, tensor in tensors.items()}

    saved, current = layout(saved_model), layout(model.state_dict())
    differences = []
    if absent := sorted(current.keys() - saved.keys()):
        differences.append(f"model: {len(absent)} tensors the checkpoint lacks, e.g. {absent[:most]}")
    if extra := sorted(saved.keys() - current.keys()):
        differences.append(f"model: {len(extra)} tensors in the checkpoint that the model lacks, e.g. {extra[:most]}")
    changed = [name for name in current.keys() & saved.keys() if current[name] != saved[name]]
    for name in sorted(changed)[:most]:
        (saved_shape, saved_dtype), (shape, dtype) = saved[name], current[name]
        differences.append(f"model.{name}: saved {list(saved_shape)} {saved_dtype}, now {list(shape)} {dtype}")
    if len(changed) > most:
        differences.append(f"and {len(changed) - most} more tensors of another shape or dtype")
    return differences


def _description_differences(saved: dict, described: dict) -> list[str]:
    def shown(description, key):
        return repr(description[key]) if key in description else "(absent)"

    return [f"run_description[{key!r}]: saved {shown(saved, key)}, now {shown(described, key)}"
            for key in sorted(saved.keys() | described.keys()) if shown(saved, key) != shown(described, key)]


def _check_same_run(state: dict, path: Path, model: torch.nn.Module, config: TrainConfig, described: dict) -> None:
    """Refuse to continue a state written by another run, naming every difference."""
    differences = _config_differences(state["config"], config) + _architecture_differences(state["model"], model)
    written_before_descriptions = "run_description" not in state
    if not written_before_descriptions:
        differences += _description_differences(state["run_description"], described)
    if differences:
        raise IncompatibleCheckpointError(
            f"refusing to resume from {path}: it was written by a different run ({'; '.join(differences)}). "
            f"To start this run over, use a new --checkpoint-dir (checkpoint_dir) or delete {path.parent}; to "
            f"continue the saved run, give its settings (only steps may grow, with decay='constant', and "
            f"checkpoint_every may change)")
    if state["step"] > config.steps:
        raise IncompatibleCheckpointError(f"{path} is already at step {state['step']}, beyond steps={config.steps}")
    if written_before_descriptions and described:
        # kept resumable: long runs checkpointed before descriptions existed should not be lost
        warnings.warn(f"{path} was written before training states recorded a run_description, so it cannot be "
                      f"checked against {described}; its TrainConfig and model match, so the run resumes. If that "
                      f"checkpoint came from another run, delete {path.parent} and start over", UserWarning, stacklevel=3)


def save_weights(model: torch.nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write a model's weights as safetensors, atomically."""
    return write_safetensors(path, model.state_dict(), metadata)


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


def _out_of_time(started: float, max_seconds: float | None, accelerator) -> bool:
    """Whether this call has run past ``max_seconds``. On several processes the clocks differ, so the
    stop is agreed on (any process out of time stops all): one stopping alone would leave the others
    waiting forever for its gradients."""
    if max_seconds is None:
        return False
    out = time.perf_counter() - started > max_seconds
    if accelerator.num_processes == 1:
        return out
    return accelerator.reduce(torch.tensor(float(out), device=accelerator.device), reduction="sum").item() > 0


def train(model: torch.nn.Module, next_batch: Callable[[int, torch.Generator], Any],
          loss_fn: Callable[[torch.nn.Module, Any, torch.Generator], torch.Tensor], config: TrainConfig,
          checkpoint_dir: str | Path | None = None, *, run_description: dict[str, Any] | None = None,
          progress: bool = True, device: str = "cpu", max_seconds: float | None = None,
          mixed_precision: str = "no") -> TrainResult:
    """Train ``model`` for ``config.steps`` steps; resume from ``checkpoint_dir`` if it holds a state.

    ``run_description`` (JSON values) names what defines the run beyond ``config`` and the model's
    layout, e.g. ``{"recipe": "chapter01-denoiser", "prediction_type": "v", "dataset_size": 20000}``:
    a checkpoint written with another description is refused.
    ``device`` is "cpu" or "cuda" (under ``accelerate launch`` each process takes its own GPU).
    ``max_seconds`` is a wall-clock budget for this call's training steps (loading and preparing not
    counted): after the first step that ends past it the state is checkpointed and the run stops, with
    ``steps_done`` < ``config.steps`` and ``stopped_early`` set. It is a stopping rule, not part of the
    run: a later call may resume with another budget, or none.
    ``mixed_precision`` ("no", "fp16" or "bf16", on a GPU) runs the forward pass under autocast with
    a scaled loss (accelerate); the weights, optimizer and checkpoints stay float32.
    """
    if max_seconds is not None and (isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float))
                                    or not max_seconds >= 0):
        raise ValueError(f"max_seconds must be a number of seconds >= 0, or None for no limit, got {max_seconds!r}")
    try:
        described = _as_json(dict(run_description or {}))
    except (TypeError, ValueError) as error:
        raise TypeError(f"run_description must be a dict of JSON values (str, numbers, lists, dicts), got "
                        f"{run_description!r}: {error}") from None
    from accelerate import Accelerator  # imported here: a plain CPU run pays for it only when training
    from accelerate.utils import send_to_device

    if mixed_precision not in ("no", "fp16", "bf16"):
        raise ValueError(f"mixed_precision must be 'no', 'fp16' or 'bf16', got {mixed_precision!r}")
    if mixed_precision != "no" and device == "cpu":
        raise ValueError(f"mixed_precision={mixed_precision!r} is for a GPU (device='cuda'); on the CPU train in float32")
    accelerator = Accelerator(cpu=device == "cpu", mixed_precision=mixed_precision)
    torch.manual_seed(config.seed)  # dropout and any module that draws from the global generator
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(config.parameter_groups(model), lr=config.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, config.learning_rate_factor)
    # ema_decay = 0 makes the EMA the weights themselves: no copy (one-shot tuning of a full-size model keeps one)
    ema_model = model if config.ema_decay == 0 else copy.deepcopy(model).requires_grad_(False)
    losses: list[float] = []
    start_step, earlier_seconds = 0, 0.0

    last_is_unreadable = False
    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        newest = _read_newest_state(checkpoint_dir)
        if newest is not None:
            state, state_path, last_is_unreadable = newest
            _check_same_run(state, state_path, model, config, described)
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
        nonlocal last_is_unreadable
        if checkpoint_dir is not None and accelerator.is_main_process:
            _write_training_state({
                "config": asdict(config), "run_description": described, "step": step, "losses": losses,
                "model": model.state_dict(), "ema_model": ema_model.state_dict(), "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(), "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                "seconds": earlier_seconds + time.perf_counter() - started,
            }, checkpoint_dir, keep_last=not last_is_unreadable)
            last_is_unreadable = False
        accelerator.wait_for_everyone()

    model.train()
    started = time.perf_counter()
    window: list[float] = []
    steps_done, stopped_early = start_step, False
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
        if ema_model is not model:
            _update_ema(ema_model, model, config.ema_decay)
        window.append(accelerator.reduce(loss.detach(), reduction="mean").item())
        if len(window) == config.log_every:
            losses.append(sum(window) / len(window))
            window = []
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        steps_done = step + 1
        checkpointed = steps_done % config.checkpoint_every == 0 or steps_done == config.steps
        if checkpointed:
            write_checkpoint(steps_done)
        if steps_done < config.steps and _out_of_time(started, max_seconds, accelerator):
            if not checkpointed:  # else the steps since the last checkpoint would be lost
                write_checkpoint(steps_done)
            stopped_early = True
            break
    bar.close()
    model.eval()
    ema_model.eval()
    accelerator.free_memory()
    return TrainResult(model, ema_model, losses, earlier_seconds + time.perf_counter() - started, start_step,
                       accelerator.is_main_process, steps_done, stopped_early)


def describe(config: TrainConfig) -> str:
    """The config as one JSON line, for a checkpoint's metadata."""
    return json.dumps(asdict(config), sort_keys=True)
