"""`python -m defectseg.benchmarks.perf`: the speed benchmark's command line."""
import sys

from defectseg.benchmarks.perf.benchmark import main

sys.exit(main())
