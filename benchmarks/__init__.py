"""Everything around a method: `engine` (one run), `grid` (many runs), `reporting` (tables,
plots, report, pictures), `perf` (the speed benchmark) and `configs` (the YAML profiles)."""
