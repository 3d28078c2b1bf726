"""The experiment engine: one run from its configuration to its results.

`config` loads and checks profiles and resolves one run's configuration, `run` types a run (its
config with hash and label, its train settings, its workspace), `recipes` is the recipe registry
(names, train settings, each method's hook), `results_format` keeps the hashes of configs written
by older code stable, `layout` says where every result file lives and lists run folders, `runner` runs one run
top to bottom (config -> `run_data` -> `trainer` -> test -> results), `trainer` holds the training
loop and the `TrainState` a checkpoint saves, `run_state` tells whether a run is completed,
running, interrupted, failed or pending, `run_folder` guards a folder against another
configuration's run and records failures, `cells` keeps one configuration per table cell,
`run_lock` keeps a run to one process, `folders` words filesystem errors, `split_store` keeps one
file per split, `evaluate` and `metrics` score predictions, `per_image` keeps the per-image counts
every metric is computed from, `trajectory` those counts along training and the
checkpoint-selection policies computed from them, `pictures` draws a trained run's predictions,
uncertainty and similarity maps, `environment` describes the machine and `io` writes result files
atomically.
"""
