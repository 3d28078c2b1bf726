"""The experiment engine: one run from its configuration to its results.

`config` loads and checks profiles and resolves one run's configuration, `recipes` holds the
training recipes, `runner` trains a run (data, optimiser, schedule, validation, checkpoints)
and writes its results, `evaluate` and `metrics` score predictions, `per_image` keeps the
per-image counts every metric is computed from, `environment` describes the machine and
`io` writes result files atomically.
"""
