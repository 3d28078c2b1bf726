"""Batched tensor ops of the training loop; they run on whatever device the tensors are on.

Two normalisations (``train.normalization``): ``half`` maps [0, 255] to [-1, 1] in every channel
(the unified recipe); ``imagenet`` uses ImageNet's per-channel mean and std, as the UAPS and simEps
code does (``utilities/dataloaders.py``); a one-channel image gets the mean of the three channels'
values (the released code reads every image as RGB, so its network sees three equal channels).

Two augmentations (``train.augmentation``): ``flips_rot90`` (``random_flip_rot90``, the unified
recipe) and ``authors`` (``authors_augment``, the released code's albumentations pipeline).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

MEAN, STD = 0.5, 0.5  # "half": every dataset, every channel: uint8 [0, 255] -> float [-1, 1]
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NORMALIZATIONS = ("half", "imagenet")
AUGMENTATIONS = ("flips_rot90", "authors")
_OPS = (  # horizontal flip, vertical flip, rot90 over the last two dimensions
    lambda x: x.flip(-1),
    lambda x: x.flip(-2),
    lambda x: x.rot90(1, (-2, -1)),
)


def to_float(images: torch.Tensor, normalization: str = "half") -> torch.Tensor:
    """uint8 (or float in [0, 255]) (B, C, H, W) -> float32 (x / 255 - mean) / std, in the input's memory format.

    ``half`` is written as one conversion and two in-place ops: each fresh full-size temporary of
    the plain expression costs page faults (~20x slower for 8 x 3 x 128 x 128 images).
    """
    if normalization == "half":
        return images.float().div_(255.0 * STD).sub_(MEAN / STD)
    mean, std = normalization_constants(normalization, images.shape[1])
    mean_t = torch.tensor(mean, device=images.device).view(1, -1, 1, 1)
    scale_t = torch.tensor([255.0 * v for v in std], device=images.device).view(1, -1, 1, 1)
    return images.float().div_(scale_t).sub_(mean_t / (scale_t / 255.0))


def normalization_constants(normalization: str, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) of ``normalization``: ``to_float`` gives (x / 255 - mean) / std."""
    if normalization == "half":
        return (MEAN,) * channels, (STD,) * channels
    if normalization != "imagenet":
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    if channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return (sum(IMAGENET_MEAN) / 3,) * channels, (sum(IMAGENET_STD) / 3,) * channels


def random_flip_rot90(
    images: torch.Tensor,
    masks: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per sample, independently: horizontal flip, vertical flip, rot90, each with probability 1/2.

    ``images`` (B, C, H, W) and ``masks`` (B, H, W) get the same transform; H must equal W.
    The coin flips are drawn with ``generator`` (on its device) in one call, so a seeded
    generator reproduces them.
    """
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"random_flip_rot90 needs square images, got {tuple(images.shape)}")
    device = generator.device if generator is not None else images.device
    coins = (torch.rand((3, images.shape[0]), generator=generator, device=device) < 0.5).to(images.device)
    for coin, op in zip(coins, _OPS):
        images = _where(coin, op(images), images)
        if masks is not None:
            masks = _where(coin, op(masks), masks)
    return images, masks


def _where(per_sample: torch.Tensor, changed: torch.Tensor, unchanged: torch.Tensor) -> torch.Tensor:
    """``changed`` for the samples flagged in the (B,) bool ``per_sample``, else ``unchanged``."""
    return torch.where(per_sample.view(-1, *[1] * (changed.dim() - 1)), changed, unchanged)


def authors_augment(
    images: torch.Tensor,
    masks: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The UAPS/simEps code's training augmentation, per sample, batched; float32 images in [0, 255] out.

    In the released code's order (albumentations in ``utilities/dataloaders.py``): horizontal flip
    p 0.4, vertical flip p 0.4, brightness/contrast p 0.5 (x * (1 + a) + 255 b, a, b ~ U(0, 0.5),
    clipped), box blur p 0.3 (kernel 3, 5 or 7, reflected border), rot90 p 0.3 (k ~ {0, 1, 2, 3}),
    Gaussian noise p 0.3 (variance ~ U(10, 50) in pixel units, independent per pixel and channel,
    clipped). Masks get the flips and rotations. Every value stays an integer as in albumentations on
    uint8 images: brightness/contrast and noise truncate (``astype(uint8)`` after clipping), the blur
    rounds (``cv2.blur``). All draws come from ``generator``, so a seeded generator reproduces them.
    """
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"authors_augment needs square images, got {tuple(images.shape)}")
    batch, device = images.shape[0], images.device
    gen_device = generator.device if generator is not None else device

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=generator, device=gen_device).to(device)

    coins = uniform(6, batch)
    x = images.float()
    for coin, p, op in ((coins[0], 0.4, _OPS[0]), (coins[1], 0.4, _OPS[1])):
        x = _where(coin < p, op(x), x)
        if masks is not None:
            masks = _where(coin < p, op(masks), masks)
    contrast, brightness = 1 + 0.5 * uniform(batch), 255.0 * 0.5 * uniform(batch)
    adjusted = (x * contrast.view(-1, 1, 1, 1) + brightness.view(-1, 1, 1, 1)).clamp_(0, 255).floor_()
    x = _where(coins[2] < 0.5, adjusted, x)
    kernel = 3 + 2 * torch.randint(0, 3, (batch,), generator=generator, device=gen_device).to(device)
    for size in (3, 5, 7):
        chosen = (coins[3] < 0.3) & (kernel == size)
        if chosen.any():
            x = _where(chosen, _box_blur(x, size).round_(), x)
    turns = torch.randint(0, 4, (batch,), generator=generator, device=gen_device).to(device)
    for k in (1, 2, 3):
        chosen = (coins[4] < 0.3) & (turns == k)
        x = _where(chosen, x.rot90(k, (-2, -1)), x)
        if masks is not None:
            masks = _where(chosen, masks.rot90(k, (-2, -1)), masks)
    sigma = (10 + 40 * uniform(batch)).sqrt()
    noise = torch.randn(x.shape, generator=generator, device=gen_device).to(device) * sigma.view(-1, 1, 1, 1)
    x = _where(coins[5] < 0.3, (x + noise).clamp_(0, 255).floor_(), x)
    return x, masks


def _box_blur(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over a size x size window with a reflected border (cv2.blur's default BORDER_REFLECT_101)."""
    pad = size // 2
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    return F.avg_pool2d(padded, size, stride=1)
