# Every target that needs Python depends on the venv, so each works alone on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= quick
RESULTS ?= results
JOBS ?= 2
# profiles for tables/plots/report, e.g. PROFILES="cpu quick"; empty: every profile under $(RESULTS)/runs
PROFILES ?=
PROFILE_ARGS = $(if $(strip $(PROFILES)),--profile $(PROFILES))
# methods to test every method against besides supervised, e.g. BASELINE="mean_teacher"
BASELINE ?=
OUTPUT_ARGS = $(PROFILE_ARGS) $(if $(strip $(BASELINE)),--baseline $(BASELINE))

.PHONY: setup test benchmark study study-ablations data clean-results tables plots report perf

setup: $(STAMP)

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $(STAMP)

# pytest exits 5 when it collected no test: that is a failure here, not a pass.
test: setup
	@$(PY) -m pytest -q tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

benchmark: setup
	$(PY) run_all.py benchmark --profile $(PROFILE) --results-dir $(RESULTS) --jobs $(JOBS)

# the label-scarcity study (benchmarks/configs/label_scarcity.yaml): ~33 core-hours, resumable
study: setup
	$(PY) run_all.py benchmark --profile label_scarcity --results-dir $(RESULTS) --jobs $(JOBS)

# the UAPS ablations at CPU scale (benchmarks/configs/label_scarcity_ablations.yaml): ~11.5 core-hours
study-ablations: setup
	$(PY) run_all.py benchmark --profile label_scarcity_ablations --results-dir $(RESULTS) --jobs $(JOBS)

# tables -> $(RESULTS)/tables, figures -> $(RESULTS)/figures, report (with both) -> $(RESULTS)/report/index.md
tables: setup
	$(PY) run_all.py tables --results-dir $(RESULTS) $(OUTPUT_ARGS)

plots: setup
	$(PY) run_all.py plots --results-dir $(RESULTS) $(OUTPUT_ARGS)

report: setup
	$(PY) run_all.py report --results-dir $(RESULTS) $(OUTPUT_ARGS)

# training speed, reference vs fast path -> $(RESULTS)/perf (options: PERF_ARGS="--configs 128:8:8 --variants bf16+cl")
perf: setup
	$(PY) -m benchmarks.perf --out $(RESULTS)/perf $(PERF_ARGS)

# make data                      download NEU-Seg and MTiles into $DEFECTSEG_DATA_ROOT (or data/)
# make data FROM=../shared/data  link them from a local copy instead
data: setup
	$(PY) -m datasets.download $(if $(FROM),--from-dir $(FROM))

clean-results:
	rm -rf $(RESULTS)/runs $(RESULTS)/cache
