"""Reporting: from completed runs to what a reader sees. `aggregate` collects runs,
`statistics` computes intervals, paired tests and ranks, `paper` holds what comes from the UAPS
paper (published numbers, ablation definitions), `tables`, `plots` and `report` write them,
`pictures` draws per-image figures, `regenerate` derives the command that reproduces a run."""
