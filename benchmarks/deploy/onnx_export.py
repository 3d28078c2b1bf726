"""A run's network (its default prediction) as an ONNX file, and beside it what a runtime needs to use it.

``<out>.onnx`` takes ``images`` float32 (N, C, S, S), already resized and normalised, and gives
``logits`` float32 (N, classes, S, S); N is free, S is the run's training size. ``<out>.json``
says how to get there and back: the class names, the input channels (grey or RGB), the resize
(to S x S, aspect ratio not kept, by the run's ``train.resize``: as in training) and the normalisation
((pixel / 255 - mean) / std per channel), and how ``run_all.py predict`` reads the output (logits
resized to the image's size, bilinear, then the argmax over classes). The same description is
stored in the ONNX file's metadata (key ``defectseg``).

The export traces the network with torch's TorchScript-based exporter (``dynamo=False``): it needs
only the ``onnx`` package, works offline and writes the same bytes for the same weights.
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from defectseg.datasets.atomic import atomic_open
from defectseg.datasets.transforms import normalization_constants
from defectseg.methods import ConfigError, Method

from defectseg.benchmarks.deploy.network import Network

OPSET = 17
METADATA_KEY = "defectseg"
INPUT, OUTPUT = "images", "logits"
RESIZE_HOW = {  # train.resize -> how a runtime reproduces it (datasets.cache.resize_image)
    "bilinear": "PIL Image.resize((size, size), Image.Resampling.BILINEAR)",
    "nearest": "OpenCV cv2.resize(image, (size, size), interpolation=cv2.INTER_NEAREST)",
}


class _DefaultPrediction(nn.Module):
    """The method's ``predict`` as a module's ``forward``, for tracing."""

    def __init__(self, method: Method) -> None:
        super().__init__()
        self.method = method

    def forward(self, images: Tensor) -> Tensor:
        return self.method.predict(images)


def export_onnx(network: Network, out: Path) -> tuple[Path, Path]:
    """Write ``out`` (suffix .onnx) and its description (.json); returns both paths."""
    try:
        import onnx
    except ImportError as error:
        raise ConfigError("export needs the onnx package: pip install -r requirements.txt (it pins onnx and onnxruntime)") from error
    model_path, description_path = Path(out).with_suffix(".onnx"), Path(out).with_suffix(".json")
    description = describe(network, model_path.name)
    example = torch.zeros(1, network.in_channels, network.image_size, network.image_size, device=network.device)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated, not removed
        torch.onnx.export(
            _DefaultPrediction(network.method).eval(), (example,), buffer, dynamo=False, opset_version=OPSET,
            input_names=[INPUT], output_names=[OUTPUT], dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
        )
    model = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(description, sort_keys=True)})
    onnx.checker.check_model(model)
    with atomic_open(model_path) as file:
        file.write(model.SerializeToString())
    with atomic_open(description_path, "w") as file:
        file.write(json.dumps(description, indent=2) + "\n")
    return model_path, description_path


def describe(network: Network, model_name: str) -> dict[str, Any]:
    """What a runtime needs beside the ONNX file (module docstring)."""
    size, channels, config = network.image_size, network.in_channels, network.config
    mean, std = normalization_constants(network.normalization, channels)
    return {
        "model": model_name,
        "run": {key: config[key] for key in ("profile", "dataset", "ratio", "method", "seed")},
        "prediction": network.method.default_prediction,
        "classes": list(network.class_names),
        "input": {
            "name": INPUT, "dtype": "float32", "shape": ["batch", channels, size, size], "layout": "NCHW",
            "channels": "grey" if channels == 1 else "RGB",
            "resize": {"width": size, "height": size, "method": network.resize, "as": RESIZE_HOW[network.resize], "keep_aspect_ratio": False},
            "normalization": {"name": network.normalization, "formula": "(pixel / 255 - mean) / std", "mean": list(mean), "std": list(std)},
        },
        "output": {
            "name": OUTPUT, "dtype": "float32", "shape": ["batch", len(network.class_names), size, size],
            "to_mask": "resize the logits to the image's size (bilinear), then take the argmax over axis 1: class ids, 0 background",
        },
        "opset": OPSET,
    }
