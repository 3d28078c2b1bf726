"""Runner, grid, profiles, aggregation, plots and performance benchmarks."""
