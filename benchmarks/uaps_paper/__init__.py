"""The UAPS paper (Sime et al., Computers in Industry 2023) in the reports: its published numbers beside ours
and its ablations. `published` reads the authors' numbers (`paper_reference.yaml`), `ablations` defines the
ablation studies and finds their runs, `tables` and `figures` build the comparison and ablation tables and
figures, and `section` hands them to the generic reporting (`benchmarks.reporting.sections`) as one report
section; `run_all.py` adds it to its tables, plots and report commands."""
