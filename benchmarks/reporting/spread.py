"""How much it matters which images are labelled: the labelled-subset spread apart from the seed spread.

A unit of a ``split_seed: per_seed`` profile is a (labelled subset, training seed) pair, so the spread
of its units mixes two sources: which images were labelled and how training went. Runs that share a
labelled subset and differ only in their training seed (a companion profile with a fixed
``split_seed``, in the same results folder) measure the second alone. Per method, with one run per
subset (the unit run, seed = split seed, where there is one) and the replicates on shared subsets:

* ``sd_units``: the standard deviation over subsets (``units`` of them);
* ``sd_seeds``: the pooled within-subset standard deviation (``seed_df`` degrees of freedom);
* ``variance_ratio`` = sd_units² / sd_seeds², whose expectation is (σ²_subset + σ²_seed) / σ²_seed, with its
  95 % interval from the F distribution and the one-sided p-value of "the subset adds nothing"
  (ratio = 1);
* ``sd_subset``: the subset component, sqrt(max(0, sd_units² - sd_seeds²)).

Runs are grouped across the profiles of the folder by their hashed config without profile, seed and
split seed, so only runs trained identically but for those are pooled.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import scipy.stats

from defectseg.benchmarks.engine.config import config_key
from defectseg.benchmarks.reporting.table_format import (
    MISSING, PROTOCOLS, Table, dataset_label, number, ordered_cells, ordered_methods, profile_setup, ratio_label,
)

CONFIDENCE = 0.95
UNPOOLED = ("profile", "seed", "split_seed", "config_hash")  # what may differ between pooled runs
SPREAD_COLUMNS = ["sd_units", "units", "sd_seeds", "seed_df", "shared_subsets", "sd_subset", "variance_ratio", "ratio_low", "ratio_high", "p_value"]


def _training_and_split(config: dict) -> tuple[str, int]:
    """(the run's hashed config without ``UNPOOLED`` keys, as canonical JSON; its split seed)."""
    return config_key(config, UNPOOLED), int(config["split_seed"])


def spread_statistics(values: pd.DataFrame) -> dict[str, float]:
    """The spread statistics (module doc) of one method's runs: columns ``split_seed``, ``seed``, ``value``."""
    by_subset = values.groupby("split_seed")
    one_per_subset = [
        group.loc[group["seed"] == split, "value"].iloc[0] if (group["seed"] == split).any() else group.sort_values("seed")["value"].iloc[0]
        for split, group in by_subset
    ]
    replicated = [group["value"].to_numpy(dtype=float) for _, group in by_subset if len(group) >= 2]
    units, seed_df = len(one_per_subset), sum(len(g) - 1 for g in replicated)
    result = dict.fromkeys(SPREAD_COLUMNS, math.nan) | {"units": units, "seed_df": seed_df, "shared_subsets": len(replicated)}
    if units >= 2:
        result["sd_units"] = float(np.std(one_per_subset, ddof=1))
    if seed_df >= 1:
        result["sd_seeds"] = math.sqrt(sum(((g - g.mean()) ** 2).sum() for g in replicated) / seed_df)
    if units >= 2 and seed_df >= 1 and result["sd_seeds"] > 0:
        between, within = result["sd_units"] ** 2, result["sd_seeds"] ** 2
        ratio, tail = between / within, (1 - CONFIDENCE) / 2
        result |= {
            "sd_subset": math.sqrt(max(0.0, between - within)),
            "variance_ratio": ratio,
            "ratio_low": ratio / scipy.stats.f.ppf(1 - tail, units - 1, seed_df),
            "ratio_high": ratio / scipy.stats.f.ppf(tail, units - 1, seed_df),
            "p_value": float(scipy.stats.f.sf(ratio, units - 1, seed_df)),
        }
    return result


def spread_points(runs: pd.DataFrame, profile: str) -> pd.DataFrame:
    """The runs pooled for each (dataset, ratio, method) of ``profile``: its own and those of any profile in
    ``runs`` trained identically but for profile, seed and split seed, with ``split_seed`` and ``shared`` (the
    run's subset has other seeds too); only cells of at least two subsets of ``profile``'s own and one shared subset."""
    runs = runs[runs["config"].map(bool)]  # only what can be matched
    if runs.empty:
        return pd.DataFrame()
    training, split_seeds = zip(*(_training_and_split(config) for config in runs["config"]))
    keyed = runs.assign(training=list(training), split_seed=list(split_seeds))
    cells = []
    for (dataset, ratio, method), cell in keyed[keyed["profile"] == profile].groupby(["dataset", "ratio", "method"], sort=False):
        if cell["split_seed"].nunique() < 2:
            continue
        pooled = keyed[keyed["training"].isin(cell["training"].unique())].drop_duplicates(["split_seed", "seed"])
        sizes = pooled.groupby("split_seed")["seed"].transform("size")
        if sizes.max() >= 2:
            cells.append(pooled.assign(dataset=dataset, ratio=ratio, method=method, shared=sizes >= 2))
    return pd.concat(cells, ignore_index=True) if cells else pd.DataFrame()


def spread_records(points: pd.DataFrame, profile: str) -> pd.DataFrame:
    """Per (dataset, ratio, method, protocol) of ``spread_points``: the spread statistics (module doc)."""
    rows = []
    for (dataset, ratio, method), pooled in points.groupby(["dataset", "ratio", "method"], sort=False) if not points.empty else ():
        for protocol, column in (("standard", "miou"), ("paper", "paper_miou")):
            values = pooled[["split_seed", "seed"]].assign(value=pooled[column].to_numpy())
            rows.append({"profile": profile, "dataset": dataset, "ratio": ratio, "method": method, "protocol": protocol,
                         "profiles": " ".join(sorted(pooled["profile"].unique())), **spread_statistics(values)})
    return pd.DataFrame(rows)


def _ratio_text(row: pd.Series) -> str:
    if math.isnan(row["variance_ratio"]):
        return MISSING
    return f"{number(row['variance_ratio'])} [{number(row['ratio_low'])}, {number(row['ratio_high'])}], p = {row['p_value']:.2g}"


def spread_table(records: pd.DataFrame, runs: pd.DataFrame, profile: str, protocol: str) -> Table | None:
    """(dataset, ratio, method): the spread over labelled subsets beside the spread over seeds on one subset."""
    if records.empty:
        return None
    data = records[records["protocol"] == protocol]
    indexed = data.set_index(["dataset", "ratio", "method"])
    rows = []
    for dataset, ratio in ordered_cells(data):
        for method in ordered_methods(data.loc[(data["dataset"] == dataset) & (data["ratio"] == ratio), "method"]):
            row = indexed.loc[(dataset, ratio, method)]
            rows.append([
                dataset_label(dataset), ratio_label(ratio), method,
                f"{number(row['sd_units'])} (n={int(row['units'])})",
                f"{number(row['sd_seeds'])} (df={int(row['seed_df'])}, {int(row['shared_subsets'])} subset(s))",
                number(row["sd_subset"]), _ratio_text(row),
            ])
    _, description = PROTOCOLS[protocol]
    caption = (
        f"Does it matter which images are labelled? mIoU (%), {description}: the standard deviation over units, each with "
        f"its own labelled subset, beside the standard deviation over training seeds on one shared subset (pooled), the "
        f"subset's own part sqrt(max(0, SD units² - SD seeds²)), and the variance ratio SD units² / SD seeds² with its "
        f"{CONFIDENCE:.0%} F interval and the p-value of 'the subset adds nothing' (ratio 1). Seed replicates come from the "
        f"folder's runs trained identically on a shared subset (profiles in the CSV). Profile {profile} ({profile_setup(runs)})."
    )
    header = ["Dataset", "Labels", "Method", "SD over subsets", "SD over seeds (one subset)", "subset part (SD)", "variance ratio [95 % CI]"]
    return Table(f"spread_{protocol}", caption, header, rows, data.drop(columns="protocol"), label_columns=3)
