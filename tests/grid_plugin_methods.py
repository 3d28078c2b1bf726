"""Method plugins for the grid tests, loaded with ``methods.load_plugin`` / ``--plugin``.

* ``grid_tiny``: a two-conv network (fast); every construction (also of ``grid_stateful``) appends a line to the file named by
  $GRID_TEST_MARKER (pid and torch CPU threads), so tests can count training starts; with
  $GRID_TEST_BARRIER = "<dir>:<n>" the first construction in a process waits until n processes
  got there (forces two benchmark processes to overlap).
* ``grid_nan``: its loss is NaN. ``grid_raise``: raises in its first training step.
* ``grid_stateful``: an EMA teacher (a submodule, so in ``state_dict``) and a loss drawing from
  torch, numpy and Python RNGs, to check that a resumed run equals an uninterrupted one.

$GRID_TEST_STEP_SECONDS (default 0) makes every training step of ``grid_tiny`` and
``grid_stateful`` sleep that long, so that fault tests can kill a run in the middle.
"""
from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from defectseg.methods import LabeledBatch, Method, number, register_method
from defectseg.methods.losses import segmentation_loss, softmax_mse

_waited = False


def _tiny_net(in_channels: int, num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout2d(0.2), nn.Conv2d(8, num_classes, 1)
    )


def _mark_start() -> None:
    global _waited
    marker = os.environ.get("GRID_TEST_MARKER")
    if marker:
        with open(marker, "a") as handle:
            handle.write(f"{os.getpid()} {torch.get_num_threads()}\n")
    barrier = os.environ.get("GRID_TEST_BARRIER")
    if barrier and not _waited:
        _waited = True
        folder, count = barrier.rsplit(":", 1)
        (Path(folder) / str(os.getpid())).touch()
        deadline = time.monotonic() + 60
        while len(list(Path(folder).iterdir())) < int(count) and time.monotonic() < deadline:
            time.sleep(0.05)


def _pace() -> None:
    time.sleep(float(os.environ.get("GRID_TEST_STEP_SECONDS", 0)))


@register_method("grid_tiny")
class GridTiny(Method):
    def __init__(self, options, in_channels: int, num_classes: int) -> None:
        super().__init__(options, in_channels, num_classes)
        self.net = _tiny_net(in_channels, num_classes)
        _mark_start()

    def training_step(self, labeled: LabeledBatch, unlabeled: Tensor, step: int, total_steps: int) -> dict[str, Tensor]:
        _pace()
        loss = segmentation_loss(self.net(labeled.images), labeled.masks)
        return {"loss": loss}

    def named_predictions(self, images: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        return {name: self.net(images) for name in names}


@register_method("grid_nan")
class GridNaN(GridTiny):
    def training_step(self, labeled: LabeledBatch, unlabeled: Tensor, step: int, total_steps: int) -> dict[str, Tensor]:
        loss = super().training_step(labeled, unlabeled, step, total_steps)["loss"]
        return {"loss": loss * float("nan")}


@register_method("grid_raise")
class GridRaise(GridTiny):
    def training_step(self, labeled: LabeledBatch, unlabeled: Tensor, step: int, total_steps: int) -> dict[str, Tensor]:
        raise RuntimeError("grid_raise fails on purpose")


@register_method("grid_stateful")
class GridStateful(Method):
    option_specs = {"ema_decay": number(0.9, maximum=1.0)}

    def __init__(self, options, in_channels: int, num_classes: int) -> None:
        super().__init__(options, in_channels, num_classes)
        self.student = _tiny_net(in_channels, num_classes)
        self.teacher = _tiny_net(in_channels, num_classes)
        self.teacher.load_state_dict(self.student.state_dict())
        self.teacher.requires_grad_(False)
        _mark_start()

    def training_step(self, labeled: LabeledBatch, unlabeled: Tensor, step: int, total_steps: int) -> dict[str, Tensor]:
        _pace()
        supervised = segmentation_loss(self.student(labeled.images), labeled.masks)
        noise = float(np.random.uniform(0.05, 0.2)) * random.random()
        with torch.no_grad():
            teacher_logits = self.teacher(unlabeled + noise * torch.randn_like(unlabeled))
        consistency = softmax_mse(self.student(unlabeled), teacher_logits)
        return {"loss": supervised + self.rampup(step, total_steps) * consistency, "loss_sup": supervised}

    @torch.no_grad()
    def on_step_end(self, step: int) -> None:
        decay = self.options["ema_decay"]
        for teacher, student in zip(self.teacher.parameters(), self.student.parameters()):
            teacher.mul_(decay).add_(student, alpha=1 - decay)

    def named_predictions(self, images: Tensor, names: Sequence[str]) -> dict[str, Tensor]:
        return {name: self.teacher(images) for name in names}
