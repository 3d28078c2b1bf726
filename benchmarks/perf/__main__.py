"""`python -m benchmarks.perf`: the speed benchmark's command line."""
import sys

from benchmarks.perf.benchmark import main

sys.exit(main())
