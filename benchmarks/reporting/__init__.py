"""Reporting: from completed runs to what a reader sees. `aggregate` collects runs,
`statistics` computes intervals, paired tests and ranks, `tables`, `plots` and `report` write
them, `pictures` draws per-image figures, `regenerate` derives the command that reproduces a
run."""
