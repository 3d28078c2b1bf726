"""Profiles (YAML in benchmarks/configs/), command-line overrides, and the resolved config of one run.

A profile is a partial override of ``PROFILE_DEFAULTS``. Every key is checked: an unknown key is a
ConfigError that names it and lists the valid ones. ``--set a.b=value`` overrides any key (the
value is parsed as YAML). Per-method options are checked against the method's own defaults.

Method variants (for ablations) name a registered method with fixed options::

    method_variants:
      uaps_d2: {method: uaps, options: {aux_decoders: 2}}
      uaps_mix_average: {method: uaps, options: {mixing: average}, ratios: [0.1, 0.3, 0.5]}

``ratios_per_dataset: {mtiles: [0.1]}`` replaces the profile's ratios for one dataset.

A variant name is used in ``methods:`` like a method name and names the run directory. Its options
are the base method's defaults <- the recipe's options for it (``Recipe.method_options``) <-
``common_method_options`` <- ``method_options.<base>`` <- the variant's ``options``. ``ratios``
(optional) replaces the profile's ratios for that variant only (``--ratios`` on the command line
still overrides everything). The resolved run config stores
``method`` (the variant name) and ``base_method`` (the registered name; equal for plain methods).
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

import yaml

from defectseg.datasets import DATASETS, option_specs as dataset_option_specs
from defectseg.datasets.cache import RESIZES
from defectseg.datasets.transforms import AUGMENTATIONS, NORMALIZATIONS
from defectseg.methods import available_methods, get_method_class
from defectseg.options import ConfigError, Option, check_section, choice, flag, integer, number, text

from defectseg.benchmarks.engine.recipes import RECIPES
from defectseg.benchmarks.engine.results_format import hashed_config

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

PRECISIONS = ("auto", "fp32", "bf16")
LR_SCHEDULES = ("constant", "plateau")
MAX_SEED = 2**32 - 1  # numpy's global seed is a 32-bit unsigned integer
SEED = integer(0, 0, MAX_SEED)
# every train setting: its default and the values it accepts
TRAIN_OPTIONS: dict[str, Option] = {
    "iterations": integer(1000, 1),
    "batch_size": integer(8, 1),  # labelled images per step
    "unlabeled_batch_size": integer(8, 1),
    "lr": number(1e-3),  # Adam, as in the UAPS and simEps papers
    "weight_decay": number(0.0),
    "image_size": integer(128, 8),  # images are resized to image_size x image_size
    "resize": choice("bilinear", RESIZES),  # bilinear (masks nearest) | nearest: OpenCV's, images and masks (datasets.cache)
    "augment": flag(True),  # augment training batches (labelled and unlabelled) with ``augmentation``
    "augmentation": choice("flips_rot90", AUGMENTATIONS),  # flips_rot90 | authors (datasets.transforms)
    "normalization": choice("half", NORMALIZATIONS),  # half ([-1, 1]) | imagenet (datasets.transforms)
    "lr_schedule": choice("constant", LR_SCHEDULES),  # constant | plateau (ReduceLROnPlateau on validation mean Dice)
    "lr_patience": integer(2950, 1),  # plateau: iterations without a better validation score before the cut
    "lr_factor": number(0.1, 0, 1),  # plateau: the learning rate is multiplied by this at each cut
    "min_lr": number(1e-8),  # plateau: the learning rate never goes below this
    "val_every": integer(100, 1),
    "val_max_images": integer(None, 1, nullable=True),  # cap on validation images (first N of the fixed val split)
    "record_every": integer(None, 1, nullable=True),  # per-image val and test counts every N steps (a multiple of val_every): trajectory.npz
    "checkpoint_every": integer(200, 1),  # periodic checkpoint for resuming
    "log_every": integer(10, 1),
    "eval_batch_size": integer(32, 1),
    # auto | fp32 | bf16. bf16 = autocast (float32 master weights, losses and uncertainty);
    # auto = bf16 on hardware with bf16 matrix units where bf16 measures faster than fp32 (measured once
    # per machine and kept: benchmarks.engine.environment.native_bf16), else fp32.
    # Accuracy of bf16 against fp32: docs/performance.md. metrics.json records the choice.
    "precision": choice("auto", PRECISIONS),
    "channels_last": flag(True),  # channels-last memory format for weights and images (faster in fp32 and bf16 on the CPU)
    "num_threads": integer(None, 1, nullable=True),  # torch CPU threads; None keeps torch's default
}
# the scalar profile-level keys (the lists are checked by check_run_level)
# ``split_seed: per_seed``: each training seed draws its own split (split seed = training seed), so a
# seed names a unit of replication, a (labelled subset, training seed) pair; see ``resolve_split_seed``
PER_SEED = "per_seed"
RUN_OPTIONS: dict[str, Option] = {
    "description": text(""),
    "recipe": choice("unified", RECIPES),  # unified | authors (benchmarks.engine.recipes, docs/fidelity.md)
    "split_seed": dataclasses.replace(SEED, note=f"or {PER_SEED!r}: each seed its own labelled subset"),  # PER_SEED: check_run_level
    "skip_missing_datasets": flag(False),  # drop listed datasets not found under the data root (else an error)
}

PROFILE_DEFAULTS: dict[str, Any] = {
    "description": RUN_OPTIONS["description"].default,
    "recipe": RUN_OPTIONS["recipe"].default,
    "methods": ["supervised"],  # names, or "all" for every registered method
    "datasets": ["synthetic"],  # names, or "available" for every dataset found under the data root
    "ratios": [0.1],
    "seeds": [0],
    "split_seed": RUN_OPTIONS["split_seed"].default,
    "train": {key: option.default for key, option in TRAIN_OPTIONS.items()},
    "skip_missing_datasets": RUN_OPTIONS["skip_missing_datasets"].default,
    "common_method_options": {},  # options given to every method (e.g. backbone)
    "method_options": {},  # {method name: {option: value}}
    "method_variants": {},  # {variant name: {method: registered name, options: {...}, ratios: [...]}}
    "dataset_options": {},  # {dataset name: {option: value}}
    "train_per_dataset": {},  # {dataset name: {train key: value}}, on top of ``train`` for that dataset
    "ratios_per_dataset": {},  # {dataset name: [ratios]}, instead of ``ratios`` for that dataset
}
# checked where used
FREE_FORM = ("common_method_options", "method_options", "method_variants", "dataset_options", "train_per_dataset", "ratios_per_dataset")
VARIANT_KEYS = ("method", "options", "ratios")
SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
ABSENT = "(absent)"  # the value differing_keys reports for a key a config lacks
# Key of a loaded profile (``load_profile``), not of a profile file: the train keys the profile or its
# overrides set, which the recipe's per-run loop settings (``run_train``) leave as they are.
TRAIN_KEYS_SET = "train_keys_set"


def check_train(train: dict[str, Any], where: str = "train") -> None:
    """ConfigError naming the key, the value and what is expected, for any ill-typed train setting."""
    check_section(TRAIN_OPTIONS, train, where)


def check_run_level(config: dict[str, Any]) -> None:
    """ConfigError naming the key, the value and what is expected, for an ill-typed profile-level key
    (``RUN_OPTIONS``, and ``methods``, ``datasets``, ``ratios``, ``seeds``: a name or list of names,
    fractions in (0, 1], seeds)."""
    check_section(RUN_OPTIONS, {key: config[key] for key in RUN_OPTIONS if not (key == "split_seed" and config[key] == PER_SEED)})
    for key in ("methods", "datasets"):
        names = config[key]
        if not isinstance(names, str) and not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
            raise ConfigError(f"{key} must be a name or a non-empty list of names, got {names!r}")
    _check_ratios(config["ratios"], "ratios")
    seeds = config["seeds"]
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError(f"seeds must be a non-empty list of integers from 0 to {MAX_SEED}, got {seeds!r}")
    for index, seed in enumerate(seeds):
        SEED.check_at(f"seeds[{index}]", seed)


def check_dataset_options(options: Any) -> None:
    """ConfigError naming the key, the value and what is expected for ``dataset_options``: known
    datasets, and their options (``datasets.option_specs``)."""
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise ConfigError(f"dataset_options must be a mapping of dataset name -> {{option: value}}, got {options!r}")
    for dataset, settings in options.items():
        if dataset not in DATASETS:
            raise ConfigError(f"dataset_options names unknown dataset {dataset!r}; valid names: {sorted(DATASETS)}")
        check_section(dataset_option_specs(dataset), settings, f"dataset_options.{dataset}")


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


def yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where (line and column, counted from 1)."""
    problem = getattr(error, "problem", None) or " ".join(str(error).split())
    mark = getattr(error, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def load_profile(name_or_path: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """Defaults <- recipe <- profile YAML <- ``--set`` overrides, validated. Adds ``profile`` (the name)
    and ``TRAIN_KEYS_SET``; the recipe's per-run settings are added per run (``run_train``)."""
    path = profile_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"profile {path} is not valid YAML: {yaml_problem(error)}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"profile {path} must be a mapping of config keys")
    _check_keys(data, PROFILE_DEFAULTS, "")
    user = data
    for override in overrides or []:
        user = apply_override(user, override)
    check_run_level({**PROFILE_DEFAULTS, **user})
    recipe = RECIPES[user.get("recipe", PROFILE_DEFAULTS["recipe"])]
    config = _merge(_merge(PROFILE_DEFAULTS, {"train": recipe.train}), user)
    check_train(config["train"])
    _check_train_per_dataset(config["train_per_dataset"])
    check_dataset_options(config["dataset_options"])
    for dataset, ratios in config["ratios_per_dataset"].items():
        _check_ratios(ratios, f"ratios_per_dataset.{dataset}")
    _check_variants(config["method_variants"])
    config["profile"] = path.stem
    config[TRAIN_KEYS_SET] = sorted(user.get("train", {}))
    return config


def _check_train_per_dataset(per_dataset: Any) -> None:
    if not isinstance(per_dataset, dict) or not all(isinstance(v, dict) for v in per_dataset.values()):
        raise ConfigError(f"train_per_dataset must be a mapping of dataset name -> {{train key: value}}, got {per_dataset!r}")
    for dataset, settings in per_dataset.items():
        check_train(settings, f"train_per_dataset.{dataset}")


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
        if variant.get("ratios") is not None:
            _check_ratios(variant["ratios"], f"{where}.ratios")


def _check_ratios(ratios: Any, where: str) -> None:
    if not isinstance(ratios, list) or not ratios or not all(isinstance(r, (int, float)) and not isinstance(r, bool) and 0 < r <= 1 for r in ratios):
        raise ConfigError(f"{where} must be a non-empty list of labelled fractions in (0, 1], e.g. [0.1, 0.5], got {ratios!r}")


def resolve_variant(profile: dict[str, Any], method: str) -> tuple[str, dict[str, Any]]:
    """(registered method name, the variant's options) of a method or variant name of ``profile``."""
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


def method_ratios(profile: dict[str, Any], method: str, dataset: str) -> list[float]:
    """The labelled ratios of a method on a dataset: its variant's ``ratios``, else ``ratios_per_dataset``'s, else the profile's."""
    variant = profile["method_variants"].get(method, {})
    return variant.get("ratios") or profile["ratios_per_dataset"].get(dataset) or profile["ratios"]


def apply_override(config: dict, assignment: str) -> dict:
    """Apply ``a.b.c=value`` (value parsed as YAML) to a copy of ``config`` (a whole or partial profile)."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like key.subkey=value")
    dotted, raw = assignment.split("=", 1)
    keys = dotted.strip().split(".")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as error:
        raise ConfigError(f"override {assignment!r}: the value is not valid YAML ({yaml_problem(error)})") from error
    if isinstance(value, str) and SCIENTIFIC.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads 5e-4 (no dot) as a string
    update: dict = {keys[-1]: value}
    for key in reversed(keys[:-1]):
        update = {key: update}
    _check_keys(update, PROFILE_DEFAULTS, "")
    return _merge(config, update)


def resolve_run(profile: dict[str, Any], dataset: str, ratio: float, method: str, seed: int) -> dict[str, Any]:
    """The complete config of one run, with every method option resolved and checked.

    ``method`` is a registered method or a variant from the profile's ``method_variants``.
    """
    check_run_keys(dataset, ratio, seed)
    unknown_methods = sorted(set(profile["method_options"]) - set(available_methods()))
    if unknown_methods:
        raise ConfigError(
            f"method_options names unknown method(s) {unknown_methods}; registered: {available_methods()} "
            "(options of a variant go under method_variants.<name>.options)"
        )
    base, variant_options = resolve_variant(profile, method)
    method_class = get_method_class(base)
    recipe_options = RECIPES[profile["recipe"]].method_options(method_class, dataset)
    options = {**recipe_options, **profile["common_method_options"], **profile["method_options"].get(base, {}), **variant_options}
    label = method if base == method else f"{method} (variant of {base})"
    train, method_options = run_train(profile, base, dataset), method_class.checked_options(options, label)
    check_image_size(train["image_size"], method_options.get("backbone"), dataset)
    return {
        "profile": profile["profile"],
        "recipe": profile["recipe"],
        "dataset": dataset,
        "ratio": float(ratio),
        "method": method,
        "base_method": base,
        "seed": int(seed),
        "split_seed": resolve_split_seed(profile["split_seed"], seed),
        "train": train,
        "method_options": method_options,
        "dataset_options": copy.deepcopy(profile["dataset_options"].get(dataset, {})),
    }


def network_stride(backbone: str | None) -> int:
    """What a network's input size must be a multiple of: 16 for the paper U-Nets (four 2x2 poolings), 32 for
    segmentation-models-pytorch backbones (encoders of depth 5)."""
    return 32 if str(backbone).startswith("smp:") else 16


def check_image_size(image_size: int, backbone: str | None, dataset: str) -> None:
    """ConfigError unless ``image_size`` is a multiple of the network's stride: else the decoder's upsampled
    features would not match the encoder's, and training would crash at its first step."""
    stride = network_stride(backbone)
    if image_size % stride:
        lower, upper = max(stride, image_size // stride * stride), (image_size // stride + 1) * stride
        raise ConfigError(
            f"train.image_size ({image_size}, for {dataset}) must be a multiple of {stride}, the stride of backbone "
            f"{backbone or 'unet'!r}; e.g. {lower} or {upper}"
        )


def run_train(profile: dict[str, Any], method: str, dataset: str) -> dict[str, Any]:
    """The train settings of a run of registered ``method`` on ``dataset``: the profile's ``train``, the recipe's
    loop settings for the run (``Recipe.loop``) where the profile sets no value of its own, then the profile's
    ``train_per_dataset`` entry."""
    loop = {key: value for key, value in RECIPES[profile["recipe"]].loop(method, dataset).items() if key not in profile[TRAIN_KEYS_SET]}
    return _merge(_merge(profile["train"], loop), profile["train_per_dataset"].get(dataset, {}))


def resolve_split_seed(split_seed: int | str, seed: int) -> int:
    """The split seed of a run: the profile's ``split_seed``, or the run's own seed under ``per_seed``.

    Under ``per_seed`` the unit of replication is the (labelled subset, training seed) pair: within a
    seed every method sees the same split, and each seed draws its own. A run at seed 0 resolves to
    split seed 0, so its config (and hash) equals a fixed-``split_seed: 0`` profile's run at seed 0.
    """
    return int(seed) if split_seed == PER_SEED else int(split_seed)


def check_run_keys(dataset: str, ratio: float, seed: int) -> None:
    """ConfigError naming the value unless the dataset is known, 0 < ratio <= 1 and 0 <= seed <= MAX_SEED."""
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; valid names: {sorted(DATASETS)}")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not (math.isfinite(ratio) and 0 < ratio <= 1):
        raise ConfigError(f"the labelled ratio must be a fraction in (0, 1], e.g. 0.1; got {ratio!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"the seed must be an integer from 0 to {MAX_SEED}; got {seed!r}")


def config_hash(run_config: dict[str, Any]) -> str:
    """Stable hash of a resolved run config (independent of machine paths; see ``hashed_config``)."""
    canonical = json.dumps(hashed_config(run_config), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def comparable_config(run_config: dict[str, Any], ignore: tuple[str, ...] = ("config_hash",)) -> dict[str, Any]:
    """The hashed parts of a run config (``hashed_config``) by dotted key, without the keys in ``ignore``: a dotted
    key (``"train.image_size"``) drops that key, a top-level name drops it and everything under it."""
    flat = _flatten(hashed_config(run_config))
    return {key: value for key, value in flat.items() if not any(key == i or key.startswith(f"{i}.") for i in ignore)}


def config_key(run_config: dict[str, Any], ignore: tuple[str, ...]) -> str:
    """``comparable_config`` as canonical JSON: equal for two run configs exactly when ``differing_keys`` finds nothing."""
    return json.dumps(comparable_config(run_config, ignore), sort_keys=True, default=str)


def differing_keys(
    first: dict[str, Any], second: dict[str, Any], ignore: tuple[str, ...] = ("config_hash",)
) -> list[tuple[str, Any, Any]]:
    """(dotted key, first's value, second's value) wherever the hashed parts (``hashed_config``) of
    two run configs differ, keys in ``ignore`` aside (``comparable_config``); a missing key's value is ``ABSENT``."""
    flat = [comparable_config(config, ignore) for config in (first, second)]
    keys = sorted(set(flat[0]) | set(flat[1]))
    values = [(key, flat[0].get(key, ABSENT), flat[1].get(key, ABSENT)) for key in keys]
    return [(key, a, b) for key, a, b in values if a != b]


def config_differences(
    first: dict[str, Any], second: dict[str, Any], labels: tuple[str, str], ignore: tuple[str, ...] = ("config_hash",)
) -> list[str]:
    """``key: value (label) / value (label)`` for every key of ``differing_keys``."""
    return [f"{key}: {a!r} ({labels[0]}) / {b!r} ({labels[1]})" for key, a, b in differing_keys(first, second, ignore)]


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def registered_method(run_config: dict[str, Any]) -> str:
    """The registered method a resolved run config builds (its ``method`` may name a variant)."""
    return run_config.get("base_method", run_config["method"])
