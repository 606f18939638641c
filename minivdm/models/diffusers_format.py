"""diffusers' format for minivdm's models: config.json <-> our config dataclasses, and loading a
published component folder into our from-scratch module.

Our config fields carry diffusers' key names. Every key of a published config is either one of
them (honoured), an option fixed at the one value minivdm implements (refused by name at any other
value), or refused by name as unknown: nothing is silently ignored.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import TypeVar

import torch

Config = TypeVar("Config")


def _same(value, only_value) -> bool:
    """``value`` is ``only_value``, or a per-block list of it (diffusers accepts both)."""
    if isinstance(value, (list, tuple)) and not isinstance(only_value, (list, tuple)):
        return all(_same(v, only_value) for v in value)
    if isinstance(value, bool) or isinstance(only_value, bool):
        return value is only_value  # 0 is not False here
    return value == only_value


def _check_field_type(class_name: str, field, value) -> None:
    """A config.json value must have the type of our field (ints are fine for floats; lists for tuples)."""
    default, annotation = field.default, str(field.type)
    if isinstance(value, (list, tuple)):
        ok = "tuple" in annotation
    elif isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(default, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ValueError(f"config has {field.name}={value!r} ({type(value).__name__}); minivdm's {class_name} "
                         f"expects {annotation} like {default!r}")


def config_from_diffusers(cls: type[Config], config: dict, *, name: str, class_name: str, fixed: dict,
                          per_block_ints: tuple[str, ...] = ()) -> Config:
    """Build ``cls`` from a config.json dict. Every key is accounted for, so nothing loads as something else:

    * a field of ``cls`` is honoured (our field names are diffusers' keys);
    * a key of ``fixed`` (option -> the only value minivdm implements) is refused by name at any other value;
    * ``_``-prefixed keys are metadata (``_diffusers_version``, our ``_minivdm`` provenance);
    * any other key is refused by name: minivdm does not know what it would change.

    ``per_block_ints`` are int fields that diffusers also accepts as one value per block; a list with
    one value throughout is that int, a list of different values is refused by name.
    """
    if not isinstance(config, dict):
        raise TypeError(f"a {class_name} config must be a dict (config.json), got {type(config).__name__}")
    if config.get("_class_name", class_name) != class_name:
        raise ValueError(f"expected a {class_name} config, got _class_name={config['_class_name']!r}")
    known_fields = {f.name: f for f in fields(cls) if f.name != "name"}
    values = {}
    for key, value in config.items():
        if key.startswith("_"):
            continue
        if key in fixed:
            if not _same(value, fixed[key]):
                raise ValueError(f"config has {key}={value!r}; minivdm's {class_name} supports only {fixed[key]!r}")
        elif key in known_fields:
            if key in per_block_ints and isinstance(value, (list, tuple)):
                if len(set(value)) != 1:
                    raise ValueError(f"config has {key}={value!r}; minivdm's {class_name} supports one {key} "
                                     f"for every block (an int), not a different value per block")
                value = value[0]
            _check_field_type(class_name, known_fields[key], value)
            values[key] = tuple(value) if isinstance(value, list) else value
        else:
            raise ValueError(f"config has {key}={value!r}, an option minivdm's {class_name} does not know: "
                             f"refused rather than ignored (known options: {sorted([*known_fields, *fixed])})")
    return cls(**{**values, "name": name})


def pop_sample_size(config: dict, class_name: str) -> int | None:
    """Take ``sample_size`` out of a diffusers config dict (it changes nothing a video U-Net computes, only the
    default resolution): an int or None, anything else refused by name."""
    sample_size = config.pop("sample_size", None)
    if sample_size is not None and (isinstance(sample_size, bool) or not isinstance(sample_size, int)):
        raise ValueError(f"config has sample_size={sample_size!r}; minivdm's {class_name} expects an int or None")
    return sample_size


def config_to_diffusers(config, class_name: str) -> dict:
    """The config.json dict diffusers' ``class_name`` reads (lists for tuples, no minivdm-only ``name``)."""
    values = {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(config).items()}
    values.pop("name")
    return {"_class_name": class_name, **values}


def from_pretrained(model_class, config_class, path, subfolder: str | None, *, dtype: torch.dtype | None = None,
                    device: str | torch.device | None = None, allow_pickle: bool = False):
    """Build the published architecture from its config.json on the meta device (no memory spent on
    random weights), then fill every parameter from the checkpoint: names and shapes are compared
    first and any missing / unexpected / mis-shaped key is an error naming it. Our module names are
    diffusers', so the key map is the identity."""
    from minivdm.io.checkpoints import load_into, read_component

    path = Path(path)
    if subfolder is not None and not (path / subfolder).is_dir():
        subfolder = None  # ``path`` is the component folder itself
    config_dict, state_dict = read_component(path, subfolder, allow_pickle=allow_pickle)
    config = config_class.from_diffusers(config_dict, name=str(path))
    with torch.device("meta"):
        model = model_class(config)
    load_into(model, state_dict, key_map=None, strict=True, dtype=dtype, device=device)
    return model.eval()
