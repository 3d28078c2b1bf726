"""Profiles (YAML in benchmarks/configs/), command-line overrides, and the resolved config of one run.

A profile is a partial override of ``PROFILE_DEFAULTS``. Every key is checked: an unknown key is a
ConfigError that names it and lists the valid ones. ``--set a.b=value`` overrides any key (the
value is parsed as YAML). Per-method options are checked against the method's own defaults.

Method variants (for ablations) name a registered method with fixed options::

    method_variants:
      uaps_d2: {method: uaps, options: {aux_decoders: 2}}
      uaps_mix_average: {method: uaps, options: {mixing: average}, ratios: [0.1, 0.3, 0.5]}

A variant name is used in ``methods:`` like a method name and names the run directory. Its options
are the base method's defaults <- ``common_method_options`` <- ``method_options.<base>`` <- the
variant's ``options``. ``ratios`` (optional) replaces the profile's ratios for that variant only
(``--ratios`` on the command line still overrides everything). The resolved run config stores
``method`` (the variant name) and ``base_method`` (the registered name; equal for plain methods).
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from methods import ConfigError, available_methods, get_method_class
from methods.base import resolve_options

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

PROFILE_DEFAULTS: dict[str, Any] = {
    "description": "",
    "methods": ["supervised"],  # names, or "all" for every registered method
    "datasets": ["synthetic"],  # names, or "available" for every dataset found under the data root
    "ratios": [0.1],
    "seeds": [0],
    "split_seed": 0,
    "train": {
        "iterations": 1000,
        "batch_size": 8,  # labelled images per step
        "unlabeled_batch_size": 8,
        "lr": 1e-3,  # Adam, as in the UAPS and simEps papers
        "weight_decay": 0.0,
        "image_size": 128,  # images are resized to image_size x image_size
        "augment": True,  # random flips and rot90, batched
        "val_every": 100,
        "val_max_images": None,  # cap on validation images (first N of the fixed val split)
        "checkpoint_every": 200,  # periodic checkpoint for resuming
        "log_every": 10,
        "eval_batch_size": 32,
        # auto | fp32 | bf16. bf16 = autocast (float32 master weights, losses and uncertainty);
        # auto = bf16 on hardware with bf16 matrix units (benchmarks.environment.native_bf16), else
        # fp32. Accuracy of bf16 against fp32: docs/performance.md. metrics.json records the choice.
        "precision": "auto",
        "channels_last": True,  # channels-last memory format for weights and images (faster in fp32 and bf16 on the CPU)
        "num_threads": None,  # torch CPU threads; None keeps torch's default
    },
    "skip_missing_datasets": False,  # drop listed datasets not found under the data root (else an error)
    "common_method_options": {},  # options given to every method (e.g. backbone)
    "method_options": {},  # {method name: {option: value}}
    "method_variants": {},  # {variant name: {method: registered name, options: {...}, ratios: [...]}}
    "dataset_options": {},  # {dataset name: {option: value}}
}
FREE_FORM = ("common_method_options", "method_options", "method_variants", "dataset_options")  # checked where used
PRECISIONS = ("auto", "fp32", "bf16")
VARIANT_KEYS = ("method", "options", "ratios")


def _check_keys(data: dict, reference: dict, where: str) -> None:
    for key, value in data.items():
        if key not in reference:
            raise ConfigError(f"unknown config key '{where}{key}'; valid keys: {sorted(reference)}")
        if isinstance(reference[key], dict) and key not in FREE_FORM:
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{where}{key}' must be a mapping, got {value!r}")
            _check_keys(value, reference[key], f"{where}{key}.")


def _merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def profile_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        candidate = path
    else:
        candidate = CONFIG_DIR / f"{name_or_path}.yaml"
    if not candidate.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"profile {name_or_path!r} not found (looked for {candidate}); known profiles: {known}")
    return candidate


def load_profile(name_or_path: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """Defaults <- profile YAML <- ``--set`` overrides, validated. Adds ``profile`` (the name)."""
    path = profile_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"profile {path} is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"profile {path} must be a mapping of config keys")
    _check_keys(data, PROFILE_DEFAULTS, "")
    config = _merge(PROFILE_DEFAULTS, data)
    for override in overrides or []:
        config = apply_override(config, override)
    if config["train"]["precision"] not in PRECISIONS:
        raise ConfigError(f"train.precision must be one of {PRECISIONS}, got {config['train']['precision']!r}")
    if not isinstance(config["train"]["channels_last"], bool):
        raise ConfigError(f"train.channels_last must be true or false, got {config['train']['channels_last']!r}")
    _check_variants(config["method_variants"])
    config["profile"] = path.stem
    return config


def _check_variants(variants: Any) -> None:
    """The shape of ``method_variants`` (registry checks happen in ``resolve_run``)."""
    if not isinstance(variants, dict):
        raise ConfigError(f"method_variants must be a mapping of variant name -> {{method, options}}, got {variants!r}")
    for name, variant in variants.items():
        where = f"method_variants.{name}"
        if not isinstance(variant, dict):
            raise ConfigError(f"{where} must be a mapping with keys {list(VARIANT_KEYS)}, got {variant!r}")
        unknown = sorted(set(variant) - set(VARIANT_KEYS))
        if unknown:
            raise ConfigError(f"unknown config key(s) {unknown} in {where}; valid keys: {list(VARIANT_KEYS)}")
        if not isinstance(variant.get("method"), str):
            raise ConfigError(f"{where}.method must name a registered method, got {variant.get('method')!r}")
        if not isinstance(variant.get("options", {}), dict):
            raise ConfigError(f"{where}.options must be a mapping of method options, got {variant['options']!r}")
        ratios = variant.get("ratios")
        if ratios is not None and (
            not isinstance(ratios, list) or not ratios or not all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in ratios)
        ):
            raise ConfigError(f"{where}.ratios must be a non-empty list of labelled fractions, got {ratios!r}")


def method_base(profile: dict[str, Any], method: str) -> tuple[str, dict[str, Any]]:
    """(registered method name, the variant's options) of a method or variant name."""
    variants = profile["method_variants"]
    if method not in variants:
        get_method_class(method)  # ConfigError naming the registered methods
        return method, {}
    if method in available_methods():
        raise ConfigError(f"method_variants.{method}: the variant name clashes with the registered method {method!r}; rename the variant")
    base = variants[method]["method"]
    if base not in available_methods():
        raise ConfigError(f"method_variants.{method}.method: unknown method {base!r}; registered methods: {available_methods()}")
    return base, variants[method].get("options", {})


def method_ratios(profile: dict[str, Any], method: str) -> list[float]:
    """The labelled ratios of a method: its variant's ``ratios`` if it has some, else the profile's."""
    variant = profile["method_variants"].get(method, {})
    return variant.get("ratios") or profile["ratios"]


def apply_override(config: dict, assignment: str) -> dict:
    """Apply ``a.b.c=value`` (value parsed as YAML) to a copy of ``config``."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like key.subkey=value")
    dotted, raw = assignment.split("=", 1)
    keys = dotted.strip().split(".")
    value = yaml.safe_load(raw)
    update: dict = {keys[-1]: value}
    for key in reversed(keys[:-1]):
        update = {key: update}
    _check_keys(update, PROFILE_DEFAULTS, "")
    return _merge(config, update)


def resolve_run(profile: dict[str, Any], dataset: str, ratio: float, method: str, seed: int) -> dict[str, Any]:
    """The complete config of one run, with every method option resolved and checked.

    ``method`` is a registered method or a variant from the profile's ``method_variants``.
    """
    unknown_methods = sorted(set(profile["method_options"]) - set(available_methods()))
    if unknown_methods:
        raise ConfigError(
            f"method_options names unknown method(s) {unknown_methods}; registered: {available_methods()} "
            "(options of a variant go under method_variants.<name>.options)"
        )
    base, variant_options = method_base(profile, method)
    options = {**profile["common_method_options"], **profile["method_options"].get(base, {}), **variant_options}
    label = method if base == method else f"{method} (variant of {base})"
    return {
        "profile": profile["profile"],
        "dataset": dataset,
        "ratio": float(ratio),
        "method": method,
        "base_method": base,
        "seed": int(seed),
        "split_seed": int(profile["split_seed"]),
        "train": copy.deepcopy(profile["train"]),
        "method_options": resolve_options(label, get_method_class(base).all_defaults(), options),
        "dataset_options": copy.deepcopy(profile["dataset_options"].get(dataset, {})),
    }


def config_hash(run_config: dict[str, Any]) -> str:
    """Stable hash of a resolved run config (independent of machine paths)."""
    canonical = json.dumps(run_config, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def run_dir(results_dir: Path, run_config: dict[str, Any]) -> Path:
    c = run_config
    return Path(results_dir) / "runs" / c["profile"] / c["dataset"] / f"{c['ratio']:g}" / c["method"] / f"seed{c['seed']}"
