"""Checkpoints in the diffusers layout, loaded into minivdm's from-scratch modules.

A published pipeline is a folder with one sub-folder per component::

    model_index.json        which class each component is
    unet/   config.json + diffusion_pytorch_model.safetensors
    vae/    config.json + diffusion_pytorch_model.safetensors
    text_encoder/ tokenizer/ scheduler/ ...

Loading follows nanoGPT's ``from_pretrained``, with nothing left implicit:

1. build the architecture on the meta device, so no memory or time is spent on a random init::

       with torch.device("meta"):
           model = Model(config)

2. read the weights (safetensors; pickle files are refused unless asked for, since unpickling can
   run arbitrary code) and rename published keys onto ours with an explicit ``key_map``;
3. compare names and shapes *before* copying anything: a missing, unexpected or mis-shaped key is
   reported by name, and with ``strict=True`` (the default) nothing is loaded;
4. hand the tensors to the model (``load_state_dict(..., assign=True)``), cast to the dtype and
   device asked for.

``save_component`` writes the same layout, so minivdm models are saved in the format they load.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from minivdm.io.atomic_files import write_atomically

# Weight files of one diffusers component, in the order they are preferred.
WEIGHTS_NAMES = (
    "diffusion_pytorch_model.safetensors",
    "model.safetensors",
    "diffusion_pytorch_model.safetensors.index.json",
    "model.safetensors.index.json",
    "diffusion_pytorch_model.bin",
    "pytorch_model.bin",
    "diffusion_pytorch_model.bin.index.json",
    "pytorch_model.bin.index.json",
)
SAFETENSORS_WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
CONFIG_NAME = "config.json"
MODEL_INDEX_NAME = "model_index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
# How many keys of each kind an error message lists before it only counts the rest.
MAX_LISTED_KEYS = 20

# dict old -> new | None, callable old -> new | None, or a list of (regex, replacement | None) rules
KeyMap = Mapping[str, str | None] | Callable[[str], str | None] | list[tuple[str, str | None]]


class CheckpointMismatchError(ValueError):
    """The checkpoint's keys or shapes do not match the model's; the message lists them by name."""


def _listing(title: str, lines: list[str]) -> str:
    if not lines:
        return ""
    shown = lines[:MAX_LISTED_KEYS]
    more = f"\n    ... and {len(lines) - len(shown)} more" if len(lines) > len(shown) else ""
    return f"\n  {title} ({len(lines)}):\n" + "\n".join(f"    {line}" for line in shown) + more


@dataclass
class LoadReport:
    """What a load did: keys the checkpoint lacked, keys the model lacked, shapes that differ."""

    missing: list[str] = field(default_factory=list)  # model keys not filled by the checkpoint
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys (after mapping) the model lacks
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (key, checkpoint, model)
    loaded: int = 0  # tensors copied into the model

    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        summary = (f"loaded {self.loaded} tensors; {len(self.missing)} missing, {len(self.unexpected)} "
                   f"unexpected, {len(self.mismatched)} mis-shaped")
        return (summary
                + _listing("missing from the checkpoint (model keys)", self.missing)
                + _listing("unexpected in the checkpoint (not in the model)", self.unexpected)
                + _listing("mis-shaped (key: checkpoint shape vs model shape)",
                           [f"{key}: {checkpoint} vs {model}" for key, checkpoint, model in self.mismatched]))


# ----------------------------------------------------------------------------------------------
# Reading files


def _as_path(path, name: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or pathlib.Path, got {type(path).__name__}")
    return Path(path)


def _folder_contents(folder: Path) -> str:
    names = sorted(entry.name + ("/" if entry.is_dir() else "") for entry in folder.iterdir())
    return ", ".join(names) if names else "nothing"


def _check_state_dict(state_dict, source: str) -> dict[str, torch.Tensor]:
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"{source} must be a state dict (a dict of str -> torch.Tensor), "
                        f"got {type(state_dict).__name__}")
    for key, value in state_dict.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            hint = (" (original Stable Diffusion .ckpt files nest the weights under 'state_dict': "
                    "pass that entry)" if key == "state_dict" else "")
            raise TypeError(f"{source} must map str -> torch.Tensor, got {key!r} -> "
                            f"{type(value).__name__}{hint}")
    return dict(state_dict)


def _read_sharded(index_path: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    """Read every shard named by a ``*.index.json`` file and check each key is where the index says."""
    index = json.loads(index_path.read_text())
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{index_path} must hold a non-empty 'weight_map' of key -> shard file name")
    state_dict: dict[str, torch.Tensor] = {}
    for shard_name in sorted(set(weight_map.values())):
        shard = read_state_dict(index_path.parent / shard_name, allow_pickle=allow_pickle)
        listed = {key for key, name in weight_map.items() if name == shard_name}
        if set(shard) != listed:
            raise ValueError(f"shard {shard_name} does not hold the keys {index_path.name} lists for it: "
                             f"absent {sorted(listed - set(shard))[:MAX_LISTED_KEYS]}, "
                             f"not listed {sorted(set(shard) - listed)[:MAX_LISTED_KEYS]}")
        state_dict.update(shard)
    return state_dict


class CorruptCheckpointError(ValueError):
    """A weights file that exists but cannot be read (truncated, or not the format its suffix says)."""


def _corrupt(path: Path, error: BaseException) -> CorruptCheckpointError:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return CorruptCheckpointError(f"cannot read {path} ({path.stat().st_size} bytes): {reason}. The file is probably "
                                  f"truncated (an interrupted download, copy or save) or not a {path.suffix} file: "
                                  f"copy it again from its source (a shipped file: `git checkout -- {path.name}` in "
                                  f"its folder) or retrain it")


def read_safetensors(path) -> dict[str, torch.Tensor]:
    """Every tensor of one .safetensors file; a truncated or corrupt file is an error naming it."""
    path = _as_path(path, "path")
    try:
        return load_file(path)
    except (SafetensorError, OSError) as error:
        raise _corrupt(path, error) from None


def write_safetensors(path, state: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """Write tensors (moved to the CPU, made contiguous) and string metadata as one .safetensors file,
    atomically: an interrupted write leaves the previous file, never half of one."""
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in state.items()}
    return write_atomically(_as_path(path, "path"),
                            lambda temporary: save_file(state, str(temporary), metadata=metadata))


def read_safetensors_metadata(path) -> dict[str, str]:
    """The string metadata of one .safetensors file (minivdm records the command that made it there)."""
    path = _as_path(path, "path")
    if not path.is_file():
        raise FileNotFoundError(f"no safetensors file at {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError) as error:
        raise _corrupt(path, error) from None


def read_state_dict(path, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read a state dict from a ``.safetensors`` file, a sharded ``*.index.json``, or a component folder.

    Pickle files (``.bin``, ``.pt``, ``.pth``, ``.ckpt``) are refused unless ``allow_pickle=True``:
    unpickling can run arbitrary code. Even then they are read with ``torch.load(weights_only=True)``.
    """
    path = _as_path(path, "path")
    if path.is_dir():
        path = find_weights_file(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    if path.name.endswith(".index.json"):
        return _read_sharded(path, allow_pickle)
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    if path.suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise ValueError(f"refusing to read {path}: it is a pickle file, and unpickling can run arbitrary "
                             f"code. Prefer a .safetensors copy; if you trust its source, pass "
                             f"allow_pickle=True (it is then read with torch.load(weights_only=True))")
        try:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, OSError) as error:  # what a torn zip or pickle raises
            raise _corrupt(path, error) from None
        return _check_state_dict(state_dict, f"the contents of {path}")
    raise ValueError(f"cannot read {path}: expected .safetensors, a sharded *.index.json, or a pickle "
                     f"file ({', '.join(PICKLE_SUFFIXES)})")


def find_weights_file(folder) -> Path:
    """The weights file of one diffusers component folder (e.g. ``unet/``), safetensors first."""
    folder = _as_path(folder, "folder")
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder at {folder}")
    for name in WEIGHTS_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"no weights file in {folder}: looked for {', '.join(WEIGHTS_NAMES)}; the folder "
                            f"holds {_folder_contents(folder)}. A variant such as "
                            f"diffusion_pytorch_model.fp16.safetensors can be read with read_state_dict(path)")


def read_model_index(root) -> dict:
    """``model_index.json`` of a diffusers pipeline folder: which class each component is."""
    root = _as_path(root, "root")
    index_path = root / MODEL_INDEX_NAME
    if not index_path.is_file():
        contents = _folder_contents(root) if root.is_dir() else "(no such folder)"
        raise FileNotFoundError(f"{root} is not a diffusers pipeline folder: no {MODEL_INDEX_NAME} "
                                f"(it holds {contents})")
    return json.loads(index_path.read_text())


def read_component(root, subfolder: str | None = None, *,
                   allow_pickle: bool = False) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(config, state_dict)`` of a component folder, or of ``root/subfolder`` in a pipeline folder."""
    root = _as_path(root, "root")
    if subfolder is not None and not isinstance(subfolder, str):
        raise TypeError(f"subfolder must be a str such as 'unet' or 'vae', got {type(subfolder).__name__}")
    folder = root / subfolder if subfolder else root
    if not folder.is_dir():
        if subfolder and (root / MODEL_INDEX_NAME).is_file():
            components = sorted(key for key in read_model_index(root) if not key.startswith("_"))
            raise FileNotFoundError(f"no component {subfolder!r} in {root}; model_index.json lists {components}")
        raise FileNotFoundError(f"no folder at {folder}")
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(f"no {CONFIG_NAME} in {folder} (it holds {_folder_contents(folder)}); "
                                f"a pipeline folder needs subfolder=, e.g. read_component(root, 'unet')")
    config = json.loads(config_path.read_text())
    return config, read_state_dict(find_weights_file(folder), allow_pickle=allow_pickle)


# ----------------------------------------------------------------------------------------------
# Renaming keys


def _rename_with_rules(key: str, rules: list[tuple[str | re.Pattern, str | None]]) -> str | None:
    for pattern, replacement in rules:
        if replacement is None:
            if re.search(pattern, key):
                return None
        else:
            key = re.sub(pattern, replacement, key)
    return key


def _renaming_function(key_map: KeyMap, state_dict: dict) -> Callable[[str], str | None]:
    """The three forms of ``key_map`` as one function old -> new | None, after checking the form."""
    if isinstance(key_map, Mapping):
        unused = sorted(set(key_map) - set(state_dict))
        if unused:
            raise ValueError(f"key_map renames {len(unused)} keys the checkpoint does not have: "
                             f"{unused[:MAX_LISTED_KEYS]}")
        return lambda key: key_map.get(key, key)
    if isinstance(key_map, (list, tuple)):
        for rule in key_map:
            if not (isinstance(rule, tuple) and len(rule) == 2 and isinstance(rule[0], (str, re.Pattern))
                    and isinstance(rule[1], (str, type(None)))):
                raise TypeError(f"each key_map rule must be a (regex, replacement or None) pair, got {rule!r}")
        return lambda key: _rename_with_rules(key, key_map)
    if callable(key_map):
        return key_map
    raise TypeError(f"key_map must be a dict old -> new, a callable old -> new | None, or a list of "
                    f"(regex, replacement) rules, got {type(key_map).__name__}")


def map_keys(state_dict: Mapping[str, torch.Tensor], key_map: KeyMap) -> dict[str, torch.Tensor]:
    """Rename checkpoint keys onto the model's names; a new name of ``None`` drops the key on purpose.

    ``key_map`` is one of
    - a dict ``{old: new}``: keys it does not mention keep their names; an entry whose old key is not
      in the checkpoint is an error (a typo would otherwise go unnoticed);
    - a callable ``old -> new`` (or ``None``);
    - a list of ``(regex, replacement)`` rules, each applied with ``re.sub`` in order, the output of one
      the input of the next; a rule with replacement ``None`` drops every key it matches.
    Two checkpoint keys that end up with the same name are an error.
    """
    state_dict = _check_state_dict(state_dict, "state_dict")
    rename = _renaming_function(key_map, state_dict)
    renamed: dict[str, torch.Tensor] = {}
    source_of: dict[str, str] = {}
    for old, tensor in state_dict.items():
        new = rename(old)
        if new is None:
            continue
        if not isinstance(new, str):
            raise TypeError(f"key_map must give a str or None for {old!r}, got {type(new).__name__}")
        if new in source_of:
            raise ValueError(f"key_map maps two checkpoint keys onto {new!r}: {source_of[new]!r} and {old!r}")
        source_of[new] = old
        renamed[new] = tensor
    return renamed


# ----------------------------------------------------------------------------------------------
# Loading into a model


def _check_load_arguments(model, dtype, device) -> torch.device | None:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if dtype is not None and dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be None (keep the model's) or one of {FLOAT_DTYPES}, got {dtype!r}")
    if device is None:
        return None
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be None, a str such as 'cpu' or 'cuda', or a torch.device, "
                        f"got {type(device).__name__}")
    device = torch.device(device)
    if device.type == "meta":
        raise ValueError("device='meta' holds no values; load onto 'cpu', 'cuda', ...")
    return device


def _compare(model_state: Mapping[str, torch.Tensor], checkpoint: Mapping[str, torch.Tensor]) -> LoadReport:
    """Names and shapes of a checkpoint against a model's ``state_dict()``; copies nothing."""
    mismatched = [(key, tuple(checkpoint[key].shape), tuple(model_state[key].shape))
                  for key in model_state
                  if key in checkpoint and checkpoint[key].shape != model_state[key].shape]
    return LoadReport(missing=[key for key in model_state if key not in checkpoint],
                      unexpected=[key for key in checkpoint if key not in model_state],
                      mismatched=mismatched)


def _tied_parameter_names(model: torch.nn.Module) -> list[list[str]]:
    """Groups of names under which one Parameter is shared (e.g. tied input and output embeddings)."""
    names_of: dict[int, list[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        names_of.setdefault(id(parameter), []).append(name)
    return [names for names in names_of.values() if len(names) > 1]


def _tie(model: torch.nn.Module, names: list[str]) -> None:
    """Make every name in ``names`` refer to the Parameter under the first name again."""
    shared = model.get_parameter(names[0])
    for name in names[1:]:
        module_name, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(module_name), attribute, shared)


def load_into(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, key_map: KeyMap | None = None,
              strict: bool = True, dtype: torch.dtype | None = None, device=None) -> LoadReport:
    """Load ``state_dict`` into ``model`` after checking every name and shape; return a ``LoadReport``.

    With ``strict=True`` any missing, unexpected or mis-shaped key raises ``CheckpointMismatchError``
    and the model is left untouched. ``strict=False`` is an explicit partial load: the keys that
    match are loaded and the report lists the rest.

    A model built on the meta device receives the checkpoint's tensors themselves
    (``load_state_dict(assign=True)``), so no memory goes to a random init. The model then shares
    memory with ``state_dict`` (pass one read from a file, or clone one taken from a live model).
    Every parameter and buffer must come from the checkpoint: rather than leave a tensor on meta or
    fill it with uninitialised memory, this raises and names them (a non-persistent buffer is never
    in a checkpoint: build such a model on the CPU, or compute the buffer in ``forward``).

    ``dtype`` casts floating tensors (``None`` keeps the model's dtypes); ``device`` defaults to the
    model's device (the CPU for a meta model).
    """
    device = _check_load_arguments(model, dtype, device)
    checkpoint = _check_state_dict(state_dict, "state_dict")
    if key_map is not None:
        checkpoint = map_keys(checkpoint, key_map)

    model_state = model.state_dict()
    report = _compare(model_state, checkpoint)
    if strict and not report.ok():
        raise CheckpointMismatchError(f"checkpoint does not match {type(model).__name__}; nothing was "
                                      f"loaded.\n{report}\nRename keys with key_map=, or pass strict=False "
                                      f"to load only what matches")
    to_load = {key: tensor for key, tensor in checkpoint.items()
               if key in model_state and tensor.shape == model_state[key].shape}
    tied_groups = _tied_parameter_names(model)
    for names in tied_groups:
        present = [name for name in names if name in to_load]
        for name in present[1:]:
            if not torch.equal(to_load[present[0]], to_load[name]):
                raise CheckpointMismatchError(f"{type(model).__name__} ties {names}, but the checkpoint "
                                              f"holds different values for {present[0]!r} and {name!r}")

    on_meta = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()] if tensor.is_meta]
    if on_meta:
        left_on_meta = [name for name in on_meta if name not in to_load]
        if left_on_meta:
            raise ValueError(f"{len(left_on_meta)} tensors of the meta-device model would get no values "
                             f"(missing from the checkpoint, or non-persistent buffers): "
                             f"{left_on_meta[:MAX_LISTED_KEYS]}; nothing was loaded. Build the model on "
                             f"the CPU to keep its initial values for them")

    prepared = {}
    for key, tensor in to_load.items():
        current = model_state[key]
        target_device = device or (torch.device("cpu") if current.is_meta else current.device)
        # floating tensors take the requested dtype (else the model's); integer buffers keep theirs
        floating = tensor.is_floating_point() and current.is_floating_point()
        target_dtype = (dtype or current.dtype) if floating else tensor.dtype
        prepared[key] = tensor.to(device=target_device, dtype=target_dtype)

    if on_meta:
        model.load_state_dict(prepared, strict=strict, assign=True)
        for names in tied_groups:  # assign=True gives each name its own Parameter
            _tie(model, names)
        if dtype is not None or device is not None:  # parameters of a partly-meta model not in the checkpoint
            model.to(device=device, dtype=dtype)
    else:
        if dtype is not None or device is not None:
            model.to(device=device, dtype=dtype)
        model.load_state_dict(prepared, strict=strict)
    report.loaded = len(prepared)
    return report


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters (a shared parameter counted once); works on meta-device models."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return sum(parameter.numel() for parameter in model.parameters())


# ----------------------------------------------------------------------------------------------
# Saving


def save_component(model: torch.nn.Module, folder, config: dict) -> Path:
    """Write ``config.json`` and ``diffusion_pytorch_model.safetensors`` into ``folder``; return the folder.

    This is the diffusers layout: ``read_component(folder)`` reads it back, and so does the matching
    diffusers class's ``from_pretrained`` when the state dict uses diffusers' names.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict (written as config.json), got {type(config).__name__}")
    folder = _as_path(folder, "folder")
    try:
        config_text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    except TypeError as error:
        raise TypeError(f"config must hold only JSON values (str, numbers, bools, None, lists, dicts): "
                        f"{error}") from error
    state = model.state_dict()
    on_meta = [key for key, tensor in state.items() if tensor.is_meta]
    if on_meta:
        raise ValueError(f"cannot save a model with tensors on the meta device: {on_meta[:MAX_LISTED_KEYS]}")
    folder.mkdir(parents=True, exist_ok=True)
    # metadata format=pt is what diffusers and transformers write and expect
    write_safetensors(folder / SAFETENSORS_WEIGHTS_NAME, state, {"format": "pt"})
    write_atomically(folder / CONFIG_NAME, lambda path: path.write_text(config_text))
    return folder
