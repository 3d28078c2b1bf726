"""Feature perturbations for auxiliary decoders (CCT, UAPS) and the shared-encoder network.

Each perturbation acts on one feature map (B, C, H, W) and is applied to every encoder level
before an auxiliary decoder sees it. Perturbations are active in training mode only: in eval mode
every decoder sees the clean features, so an ensemble prediction costs one encoder pass plus one
pass per decoder. (The UAPS and SSL4MIS CCT code perturb at test time too; docs/fidelity.md.)

* ``feature_noise``: x + x * n with n ~ U(-0.3, 0.3), one draw shared by the batch (CCT, SSL4MIS,
  UAPS code).
* ``dropout``: with ``dropout_mode`` "channel" (default), channel dropout (``dropout2d``): whole
  channels zeroed; with "element", element-wise dropout (``methods.dropout.GapDropout``, the
  released code's ``F.dropout``): every element kept with probability 1 − p and scaled by
  1 / (1 − p). ``dropout_p`` 0.5 by default (UAPS code 0.5, SSL4MIS CCT 0.3, SSL4MIS URPC 0.5).
* ``feature_dropout``: zero the positions whose channel-mean activation exceeds a threshold drawn
  in [0.7, 0.9] x the per-sample maximum of that mean (CCT); ``feature_dropout_draw`` "sample"
  (default) draws that fraction per sample, "batch" once per call for the whole batch, as the
  released code's ``np.random.uniform(0.7, 0.9)``.
* ``feature_cutout``: zero one random rectangle per sample covering ``area`` (default 25%) of the
  map, at the same relative place on every level (drawn once per forward). Used by UAPS's fourth
  auxiliary decoder; our choice, as the UAPS paper uses only three perturbations.

The three settings are method options of UAPS, CCT and URPC (``PERTURBATION_OPTIONS``, read by
``perturbation_settings``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from defectseg.options import Option, choice, number

from .dropout import GapDropout
from .networks import Backbone, is_channels_last

DROPOUT_MODES = ("channel", "element")
FEATURE_DROPOUT_DRAWS = ("sample", "batch")


class PerturbationSettings(NamedTuple):
    """How ``dropout`` and ``feature_dropout`` perturb; the defaults are this benchmark's (unified) ones."""

    dropout_mode: str = "channel"
    dropout_p: float = 0.5
    feature_dropout_draw: str = "sample"


# method options of every method built on these perturbations (UAPS, CCT, URPC)
_DEFAULT_SETTINGS = PerturbationSettings()
PERTURBATION_OPTIONS: dict[str, Option] = {
    "dropout_mode": choice(_DEFAULT_SETTINGS.dropout_mode, DROPOUT_MODES),
    "dropout_p": number(_DEFAULT_SETTINGS.dropout_p, maximum=0.99),
    "feature_dropout_draw": choice(_DEFAULT_SETTINGS.feature_dropout_draw, FEATURE_DROPOUT_DRAWS),
}


def perturbation_settings(options: Mapping[str, Any]) -> PerturbationSettings:
    """The perturbation options (keys of ``PERTURBATION_OPTIONS``) of a method's resolved options."""
    return PerturbationSettings(**{key: options[key] for key in PERTURBATION_OPTIONS})


def scale_in_layout(x: Tensor, factor: Tensor) -> Tensor:
    """``x * factor`` for a ``factor`` of shape (1 or B, 1 or C, H, W), with the same values.

    In channels-last layout torch's CPU multiply is slow when the factor broadcasts over the
    innermost (channel) dimension or is stored channels-first (about 2.7x slower at the paper
    U-Net's first level), so there the
    factor is expanded over the channels and stored channels-last before multiplying.
    """
    if is_channels_last(x):
        factor = factor.expand(-1, x.shape[1], -1, -1).contiguous(memory_format=torch.channels_last)
    return x * factor


class FeatureNoise(nn.Module):
    def __init__(self, uniform_range: float = 0.3) -> None:
        super().__init__()
        self.uniform_range = uniform_range

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        noise = torch.empty(x.shape[1:], device=x.device, dtype=x.dtype).uniform_(-self.uniform_range, self.uniform_range)
        return scale_in_layout(x, (1 + noise).unsqueeze(0))  # = x + x * noise, one full-size operation fewer


class ChannelDropout(nn.Module):
    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout2d(x, self.p, training=self.training)


class FeatureDropout(nn.Module):
    def __init__(self, low: float = 0.7, high: float = 0.9, draw: str = "sample") -> None:
        super().__init__()
        self.low, self.high, self.draw = low, high, draw

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        attention = x.mean(dim=1, keepdim=True)  # (B, 1, H, W)
        max_value = attention.amax(dim=(2, 3), keepdim=True)
        fraction = self.draw_fraction(max_value)
        keep = (attention < max_value * fraction).to(x.dtype)
        return scale_in_layout(x, keep)

    def draw_fraction(self, max_value: Tensor) -> Tensor:
        """The threshold's fraction of the maximum, U(low, high): one per sample, or one for the batch."""
        shape = max_value.shape if self.draw == "sample" else (1, 1, 1, 1)
        return torch.empty(shape, dtype=max_value.dtype, device=max_value.device).uniform_(self.low, self.high)


class FeatureCutout(nn.Module):
    def __init__(self, area: float = 0.25) -> None:
        super().__init__()
        self.side = area**0.5
        self._box: Tensor | None = None

    def new_draw(self, batch: int, device: torch.device) -> None:
        """Draw one rectangle per sample (relative corners), reused by every level until the next draw."""
        corner = torch.rand(batch, 2, device=device) * (1 - self.side)
        self._box = torch.cat([corner, corner + self.side], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        if self._box is None or self._box.shape[0] != x.shape[0]:
            self.new_draw(x.shape[0], x.device)
        h, w = x.shape[-2:]
        ys = (torch.arange(h, device=x.device) + 0.5) / h
        xs = (torch.arange(w, device=x.device) + 0.5) / w
        box = self._box
        inside_y = (ys[None] >= box[:, 0:1]) & (ys[None] < box[:, 2:3])  # (B, H)
        inside_x = (xs[None] >= box[:, 1:2]) & (xs[None] < box[:, 3:4])  # (B, W)
        inside = inside_y[:, :, None] & inside_x[:, None, :]
        return scale_in_layout(x, (~inside).unsqueeze(1).to(x.dtype))


PERTURBATIONS = ("feature_noise", "dropout", "feature_dropout", "feature_cutout")  # also UAPS's decoder order


def build_perturbation(name: str, settings: PerturbationSettings) -> nn.Module:
    """A fresh perturbation module ``name`` with ``settings``."""
    if name == "feature_noise":
        return FeatureNoise()
    if name == "dropout":
        dropout = GapDropout if settings.dropout_mode == "element" else ChannelDropout
        return dropout(settings.dropout_p)
    if name == "feature_dropout":
        return FeatureDropout(draw=settings.feature_dropout_draw)
    if name == "feature_cutout":
        return FeatureCutout()
    raise ValueError(f"unknown perturbation {name!r}; valid: {sorted(PERTURBATIONS)}")


def build_perturbations(names: Sequence[str], settings: PerturbationSettings = PerturbationSettings()) -> list[nn.Module]:
    return [build_perturbation(name, settings) for name in names]


class MultiDecoderNet(nn.Module):
    """One encoder, a main decoder on clean features and one auxiliary decoder per perturbation."""

    def __init__(self, backbone: Backbone, perturbations: Sequence[nn.Module]) -> None:
        super().__init__()
        self.encoder = backbone.encoder
        self.main_decoder = backbone.make_decoder()
        self.perturbations = nn.ModuleList(perturbations)
        self.aux_decoders = nn.ModuleList(backbone.make_decoder() for _ in perturbations)

    def forward(self, x: Tensor, with_aux: bool = True) -> list[Tensor]:
        """Logits of the main decoder, then of each auxiliary decoder (the encoder runs once)."""
        features = self.encoder(x)
        outputs = [self.main_decoder(features)]
        if with_aux:
            for perturb, decoder in zip(self.perturbations, self.aux_decoders):
                if isinstance(perturb, FeatureCutout) and self.training:
                    perturb.new_draw(x.shape[0], x.device)
                outputs.append(decoder([perturb(f) for f in features]))
        return outputs
