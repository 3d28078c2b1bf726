"""Segmentation networks, kept as encoder + decoder so methods can share one encoder.

The paper U-Net is the network of the UAPS/simEps papers and of SSL4MIS (Luo et al.): five
encoder levels with 16-32-64-128-256 channels, two 3x3 conv + BatchNorm + LeakyReLU per block,
dropout 0.05/0.1/0.2/0.3/0.5 by level and a 3x3 output conv. Dropout is ``methods.dropout.GapDropout``:
``nn.Dropout``'s distribution with a faster CPU mask (a different random stream).

Upsampling: backbone ``"unet"`` uses a 1x1 conv + bilinear x2 upsampling, which is what the
SSL4MIS ``UpBlock`` the authors use does by default (its ``Decoder`` never passes
``bilinear=False``): 1.81 M parameters at 3 input channels and 4 classes and 0.63 M per extra
decoder, matching the UAPS paper's 1.82/2.45/3.08/3.72/4.35 M for D = 0..4. Backbone
``"unet-tconv"`` uses 2x2 transposed convolutions instead (1.94 M parameters).

Any segmentation-models-pytorch architecture can replace it with the backbone name
``smp:<Arch>:<encoder>`` (e.g. ``smp:Unet:resnet18``), always built with ``encoder_weights=None``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .dropout import GapDropout

UNET_CHANNELS = (16, 32, 64, 128, 256)
UNET_DROPOUT = (0.05, 0.1, 0.2, 0.3, 0.5)


class ConvBlock(nn.Sequential):
    """Two 3x3 conv + BatchNorm + LeakyReLU, with dropout between them."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(),
            GapDropout(dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(),
        )


class UNetEncoder(nn.Module):
    """Five levels; returns the feature map of every level, finest first."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        channels = (in_channels, *UNET_CHANNELS)
        self.levels = nn.ModuleList()
        for level, dropout in enumerate(UNET_DROPOUT):
            block = ConvBlock(channels[level], channels[level + 1], dropout)
            self.levels.append(block if level == 0 else nn.Sequential(nn.MaxPool2d(2), block))

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for level in self.levels:
            x = level(x)
            features.append(x)
        return features


class _DenseGradient(torch.autograd.Function):
    """Identity in the forward pass; the backward pass hands on a dense copy of the gradient.

    The gradient of ``torch.cat`` along channels is a strided slice, and in channels-last layout
    ``upsample_bilinear2d``'s backward takes a slow path for strided gradients: one x2 upsampling + concatenation (8 images,
    16 channels, 64² -> 128², bf16) takes ~1.7x as long forward + backward as with the gradient
    made dense first.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.memory_format = torch.channels_last if is_channels_last(x) else torch.contiguous_format
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.contiguous(memory_format=ctx.memory_format)


def is_channels_last(x: Tensor) -> bool:
    """Whether ``x`` is a 4-D tensor stored channels-last (and not also channels-first contiguous)."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


class UpBlock(nn.Module):
    """x2 upsampling to the skip's channels, concatenation with the skip connection, ConvBlock."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, transposed: bool) -> None:
        super().__init__()
        if transposed:
            self.up = nn.ConvTranspose2d(in_channels, skip_channels, kernel_size=2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Conv2d(in_channels, skip_channels, kernel_size=1),
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            )
        self.conv = ConvBlock(2 * skip_channels, out_channels, dropout=0.0)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.conv(torch.cat([skip, _DenseGradient.apply(self.up(x))], dim=1))


class UNetDecoder(nn.Module):
    """Decodes the five encoder levels into class logits at input resolution."""

    def __init__(self, num_classes: int, transposed: bool = False) -> None:
        super().__init__()
        c = UNET_CHANNELS
        self.ups = nn.ModuleList(UpBlock(c[i + 1], c[i], c[i], transposed) for i in reversed(range(len(c) - 1)))
        self.head = nn.Conv2d(c[0], num_classes, kernel_size=3, padding=1)

    def stages(self, features: list[Tensor]) -> list[Tensor]:
        """Feature map after every up block, coarsest first (used for deep supervision)."""
        x, outputs = features[-1], []
        for up, skip in zip(self.ups, reversed(features[:-1])):
            x = up(x, skip)
            outputs.append(x)
        return outputs

    def forward(self, features: list[Tensor]) -> Tensor:
        return self.head(self.stages(features)[-1])


class DenseInterpolationGradients(TorchFunctionMode):
    """Inside this mode every ``F.interpolate`` output that needs a gradient gets ``_DenseGradient``.

    For decoders whose code we do not own (segmentation-models-pytorch) that resize features and
    concatenate them: SegFormer's decoder resizes four feature maps and concatenates them, and in
    channels-last bf16 each resize's backward is several times slower with the strided gradient slice than
    with a dense one (16 x 256 channels, 4²..32² -> 32²). Values unchanged.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        output = func(*args, **(kwargs or {}))
        if func is F.interpolate and isinstance(output, Tensor) and output.requires_grad:
            return _DenseGradient.apply(output)
        return output


class SMPDecoder(nn.Module):
    """The decoder and segmentation head of a segmentation-models-pytorch model."""

    def __init__(self, decoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.decoder, self.head = decoder, head

    def forward(self, features: list[Tensor]) -> Tensor:
        with DenseInterpolationGradients():
            return self.head(self.decoder(features))


@dataclass
class Backbone:
    """An encoder and a factory of fresh decoders that fit its features."""

    encoder: nn.Module
    make_decoder: Callable[[], nn.Module]


def _build_smp(arch: str, encoder_name: str, in_channels: int, num_classes: int) -> nn.Module:
    import segmentation_models_pytorch as smp

    if not hasattr(smp, arch):
        raise ValueError(f"backbone 'smp:{arch}:{encoder_name}': segmentation-models-pytorch has no architecture {arch!r}")
    return getattr(smp, arch)(encoder_name=encoder_name, encoder_weights=None, in_channels=in_channels, classes=num_classes)


def build_backbone(name: str, in_channels: int, num_classes: int) -> Backbone:
    """``"unet"`` (the paper U-Net), ``"unet-tconv"`` or ``"smp:<Arch>:<encoder>"``."""
    if name in ("unet", "unet-tconv"):
        transposed = name == "unet-tconv"
        return Backbone(UNetEncoder(in_channels), lambda: UNetDecoder(num_classes, transposed))
    parts = name.split(":")
    if len(parts) == 3 and parts[0] == "smp":
        _, arch, encoder_name = parts

        def make_decoder() -> nn.Module:
            model = _build_smp(arch, encoder_name, in_channels, num_classes)
            return SMPDecoder(model.decoder, model.segmentation_head)

        return Backbone(_build_smp(arch, encoder_name, in_channels, num_classes).encoder, make_decoder)
    raise ValueError(f"unknown backbone {name!r}: expected 'unet', 'unet-tconv' or 'smp:<Arch>:<encoder>' (e.g. 'smp:Unet:resnet18')")


class SegmentationNet(nn.Module):
    """Encoder + one decoder: a plain segmentation network."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.encoder, self.decoder = backbone.encoder, backbone.make_decoder()

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


def build_network(name: str, in_channels: int, num_classes: int) -> SegmentationNet:
    """A fresh, randomly initialised segmentation network."""
    return SegmentationNet(build_backbone(name, in_channels, num_classes))


def count_parameters(module: nn.Module) -> int:
    """The trainable parameters of ``module`` (``requires_grad``: what the optimiser updates; ``metrics.json``'s ``params``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
