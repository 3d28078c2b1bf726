"""Versioning of the results format: configs written by older code keep their identity.

A run is identified by the hash of its resolved config (``config.config_hash``); a finished run whose
hash matches is reused rather than trained again, and the committed results under
``results/reference/`` are checked against their stored hashes. Every config key added since the
first committed results changes the resolved config, so without this module every old run would get
a new hash and every old ``config.yaml`` would lack keys the code reads. Instead, a key added later
has a **neutral** value, the one that reproduces the behaviour from before it existed:

* ``hashed_config`` leaves a key out of the hash while it holds its neutral value, so a new run with
  the old behaviour hashes as the old run did;
* ``with_neutral_train`` gives an old run's ``train`` the neutral value of every train key it lacks,
  which is what that run trained with.

Add a key's neutral value here whenever a new config key or method option must not change old runs.
"""
from __future__ import annotations

import copy
from typing import Any

# Config keys added after the first committed results, by path, with their neutral value.
HASH_NEUTRAL: dict[tuple[str, ...], Any] = {
    ("recipe",): "unified",
    ("train", "augmentation"): "flips_rot90",
    ("train", "normalization"): "half",
    ("train", "lr_schedule"): "constant",
    ("train", "lr_patience"): 2950,
    ("train", "lr_factor"): 0.1,
    ("train", "min_lr"): 1e-8,
    ("train", "record_every"): None,
    ("train", "resize"): "bilinear",
}
# Method options added after the first committed results, matched by option name in any method: the
# options recipe "authors" switches (docs/fidelity.md), at the value of the behaviour from before.
METHOD_OPTION_NEUTRAL: dict[str, Any] = {
    "dice_form": "ssl4mis",
    "detach_confidence": True,
    "lambda2_rampup": True,
    "dropout_mode": "channel",
    "dropout_p": 0.5,
    "feature_dropout_draw": "sample",
    "pseudo_label_ensemble": "max",
    "student_noise": True,
    "consistency_start": 0.0,
    "mask_normaliser": "classes",
    "detach_target": True,
    "aux_upsampling": "bilinear",
    "data_parallel": 1,
}


def hashed_config(run_config: dict[str, Any]) -> dict[str, Any]:
    """The part of a run config its hash covers: all of it but keys at their neutral value."""
    config = copy.deepcopy(run_config)
    for keys, neutral in HASH_NEUTRAL.items():
        *parents, last = keys
        holder = config
        for key in parents:
            holder = holder.get(key, {})
        if last in holder and holder[last] == neutral:
            del holder[last]
    options = config.get("method_options", {})
    for key, neutral in METHOD_OPTION_NEUTRAL.items():
        if key in options and options[key] == neutral:
            del options[key]
    return config


def with_neutral_train(run_config: dict[str, Any]) -> dict[str, Any]:
    """``run_config`` with every train key its code did not know yet at its neutral value, the value it trained with."""
    neutral = {keys[1]: value for keys, value in HASH_NEUTRAL.items() if keys[0] == "train"}
    return {**run_config, "train": {**neutral, **run_config["train"]}}
