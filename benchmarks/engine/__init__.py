"""The experiment engine: one run from its configuration to its results.

`config` loads and checks profiles and resolves one run's configuration, `recipes` holds the
training recipes, `layout` says where every result file lives, `runner` runs one run top to bottom
(config -> `run_data` -> `trainer` -> test -> results), `trainer` holds the training loop and the
`TrainState` a checkpoint saves, `run_folder` tells whether a run is done, conflicts or failed,
`run_lock` keeps a run to one process, `folders` words filesystem errors, `split_store` keeps one
file per split, `evaluate` and `metrics` score predictions, `per_image` keeps the per-image counts
every metric is computed from, `trajectory` those counts along training and the
checkpoint-selection policies computed from them, `environment` describes the machine and `io`
writes result files atomically.
"""
