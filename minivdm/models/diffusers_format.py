"""diffusers' format for minivdm's models: config.json <-> our config dataclasses, and loading a
published component folder into our from-scratch module.

Our config fields carry diffusers' key names, so reading is a filter over known keys; what a
published config sets but minivdm does not implement is refused by name rather than ignored.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import TypeVar

import torch

Config = TypeVar("Config")


def config_from_diffusers(cls: type[Config], config: dict, *, name: str, class_name: str, unsupported: dict) -> Config:
    """Build ``cls`` from a config.json dict; ``unsupported`` maps option -> the only value we accept."""
    if config.get("_class_name", class_name) != class_name:
        raise ValueError(f"expected a {class_name} config, got _class_name={config['_class_name']!r}")
    for key, only_value in unsupported.items():
        value = config.get(key, only_value)
        if value != only_value and not (isinstance(value, list) and all(v == only_value for v in value)):
            raise ValueError(f"config has {key}={value!r}; minivdm's {class_name} supports only {only_value!r}")
    known = {f.name for f in fields(cls)}
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in config.items() if key in known}
    return cls(**{**values, "name": name})


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
