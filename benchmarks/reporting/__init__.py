"""Reporting: from completed runs to what a reader sees, knowing no particular method or paper. `aggregate`
collects runs, `statistics` computes intervals, paired tests and ranks (`selection`: under each
checkpoint-selection policy; `spread`: over labelled subsets against seeds; `calibration` checks them),
`results_view` holds one results folder's runs and statistics, each computed once per command, `sections`
says what a study adds (the UAPS paper's: `benchmarks.uaps_paper`), `table_format` and `figure_style` are
the table model and the figures' look, `tables`, `plots` and `report` write them, and `regenerate` derives
the commands that reproduce the runs."""
