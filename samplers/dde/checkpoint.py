"""Save and load DDE coordinators: one safetensors file, the config in its metadata."""

from __future__ import annotations

import json
import os

import torch

from .coordinator import Coordinator, CoordinatorConfig

_CONFIG_KEY = "dde_coordinator_config"


def save_coordinator(coordinator: Coordinator, path: str, extra: dict | None = None) -> None:
    """Write weights + config (+ ``extra`` strings such as the training summary) to ``path``."""
    from safetensors.torch import save_file

    metadata = {_CONFIG_KEY: json.dumps(coordinator.config.to_dict())}
    metadata.update({k: str(v) for k, v in (extra or {}).items()})
    state = {k: v.detach().contiguous().cpu() for k, v in coordinator.state_dict().items()}
    save_file(state, path, metadata=metadata)


def load_coordinator(path: str, device: torch.device | str = "cpu") -> Coordinator:
    """Rebuild the coordinator saved by ``save_coordinator``; clear errors for wrong or foreign files."""
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise FileNotFoundError(f"DDE coordinator checkpoint not found: {path!r}")
    if not path.endswith(".safetensors"):
        raise ValueError(f"DDE coordinator checkpoints are .safetensors files, got {path!r}")
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata() or {}
        if _CONFIG_KEY not in metadata:
            raise ValueError(f"{path!r} is not a DDE coordinator checkpoint (no {_CONFIG_KEY!r} metadata)")
        state = {k: f.get_tensor(k) for k in f.keys()}
    config = CoordinatorConfig(**json.loads(metadata[_CONFIG_KEY]))
    coordinator = Coordinator(config)
    missing, unexpected = coordinator.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path!r} does not match its config: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return coordinator.to(device).eval()
