"""A finished run's resolved config and its network with the best checkpoint (``best.pt``) loaded."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from defectseg.methods import Method, build_method

from defectseg.benchmarks.engine import layout
from defectseg.benchmarks.engine.config import registered_method
from defectseg.benchmarks.engine.io import ResultsError, load_torch, read_yaml
from defectseg.benchmarks.engine.results_format import with_neutral_train


def read_run_config(run_directory: Path) -> dict[str, Any]:
    """The resolved config of a run folder holding ``config.yaml`` and ``best.pt``; a ResultsError naming what is missing."""
    for name in (layout.CONFIG, layout.BEST):
        if not (Path(run_directory) / name).exists():
            raise ResultsError(f"{Path(run_directory) / name} not found: expected a run directory written by 'run_all.py train'")
    run_config = read_yaml(Path(run_directory) / layout.CONFIG)
    run_config.pop("config_hash", None)
    return with_neutral_train(run_config)


def load_best(run_directory: Path, run_config: dict[str, Any], in_channels: int, num_classes: int, device: torch.device) -> Method:
    """The run's method with the weights of its ``best.pt``, on ``device``, in eval mode."""
    method = build_method(registered_method(run_config), run_config["method_options"], in_channels, num_classes)
    method.load_state_dict(load_torch(Path(run_directory) / layout.BEST, map_location=device, weights_only=True))
    return method.to(device).eval()
