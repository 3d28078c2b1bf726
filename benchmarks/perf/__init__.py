"""The speed benchmark (`python -m defectseg.benchmarks.perf`): training-step and evaluation timings of
the reference and fast paths (`benchmark`, `paths`), its input images (`data`) and the
paper-protocol timing run (`extras`)."""
