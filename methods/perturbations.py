"""Feature perturbations for auxiliary decoders (CCT, UAPS) and the shared-encoder network.

Each perturbation acts on one feature map (B, C, H, W) and is applied to every encoder level
before an auxiliary decoder sees it. Perturbations are active in training mode only: in eval mode
every decoder sees the clean features, so an ensemble prediction costs one encoder pass plus one
pass per decoder.

* ``feature_noise``: x + x * n with n ~ U(-0.3, 0.3), one draw shared by the batch (CCT, SSL4MIS).
* ``dropout``: channel dropout (``dropout2d``), p = 0.5.
* ``feature_dropout``: zero the positions whose channel-mean activation exceeds a threshold drawn
  in [0.7, 0.9] x the per-sample maximum of that mean (CCT).
* ``feature_cutout``: zero one random rectangle per sample covering ``area`` (default 25%) of the
  map, at the same relative place on every level (drawn once per forward). Used by UAPS's fourth
  auxiliary decoder; our choice, as the UAPS paper uses only three perturbations.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .networks import Backbone, is_channels_last


def scale_in_layout(x: Tensor, factor: Tensor) -> Tensor:
    """``x * factor`` for a ``factor`` of shape (1 or B, 1 or C, H, W), with the same values.

    In channels-last layout torch's CPU multiply is slow when the factor broadcasts over the
    innermost (channel) dimension or is stored channels-first (measured on 8 x 16 x 128 x 128
    bf16: 1.31 ms, against 0.49 ms with the factor first written out channels-last), so there the
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
    def __init__(self, low: float = 0.7, high: float = 0.9) -> None:
        super().__init__()
        self.low, self.high = low, high

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        attention = x.mean(dim=1, keepdim=True)  # (B, 1, H, W)
        max_value = attention.amax(dim=(2, 3), keepdim=True)
        fraction = torch.empty_like(max_value).uniform_(self.low, self.high)
        keep = (attention < max_value * fraction).to(x.dtype)
        return scale_in_layout(x, keep)


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


PERTURBATIONS: dict[str, type[nn.Module]] = {
    "feature_noise": FeatureNoise,
    "dropout": ChannelDropout,
    "feature_dropout": FeatureDropout,
    "feature_cutout": FeatureCutout,
}
DEFAULT_ORDER = ("feature_noise", "dropout", "feature_dropout", "feature_cutout")


def build_perturbations(names: Sequence[str]) -> list[nn.Module]:
    unknown = [name for name in names if name not in PERTURBATIONS]
    if unknown:
        raise ValueError(f"unknown perturbation(s) {unknown}; valid: {sorted(PERTURBATIONS)}")
    return [PERTURBATIONS[name]() for name in names]


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
