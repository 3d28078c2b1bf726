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

# units (seeds) of study-units; empty: each profile's own seeds
UNITS ?=

.PHONY: setup test test-fast lint benchmark study study-units status publish study-ablations study-ablations-fp32 doc-tables data clean-results tables plots report perf device-wheels docs-figures

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

# everyday work: leaves out the tests marked slow (training, grids, simulations) or process (kills, races,
# Dask clusters); make test (CI) runs everything
test-fast: setup
	@$(PY) -m pytest -q -m "not slow and not process" tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# ruff with the rules in pyproject.toml ([tool.ruff]); reports, changes nothing
lint: setup
	$(VENV)/bin/ruff check .

benchmark: setup
	$(PY) run_all.py benchmark --profile $(PROFILE) --results-dir $(RESULTS) --jobs $(JOBS)

# the label-scarcity study (benchmarks/configs/label_scarcity.yaml): ~32 core-hours, resumable
study: setup
	$(PY) run_all.py benchmark --profile label_scarcity --results-dir $(RESULTS) --jobs $(JOBS)

# the study's second edition, its profiles in order of priority (NEU-Seg 1 % units, seed replicates, MTiles 10 %,
# 128 px), each unit by unit so a unit's methods run on one machine; resumable (rerun to continue).
# STUDY_PROFILES="label_scarcity_units" for one profile, UNITS="3 4" for some units of each
STUDY_PROFILES ?= label_scarcity_units label_scarcity_units_seeds label_scarcity_units_mtiles label_scarcity_units_128
study-units: setup
	for profile in $(STUDY_PROFILES); do \
	  units="$(UNITS)"; [ -n "$$units" ] || units=$$($(PY) -c "from defectseg.benchmarks.engine.config import load_profile; print(*load_profile('$$profile')['seeds'])"); \
	  for unit in $$units; do \
	    $(PY) run_all.py benchmark --profile $$profile --results-dir $(RESULTS) --jobs $(JOBS) --seeds $$unit || exit 1; \
	  done; \
	done

# how far $(PROFILE)'s grid is in $(RESULTS) (completed, running, interrupted, failed, pending); starts nothing
status: setup
	$(PY) run_all.py status --profile $(PROFILE) --results-dir $(RESULTS)

# copy $(RESULTS)'s completed runs (no checkpoints) into $(TO), e.g. TO=results/reference/label_scarcity
publish: setup
	$(if $(TO),,$(error publish needs TO=<results folder to copy into>))
	$(PY) run_all.py publish --results-dir $(RESULTS) --to $(TO)

# the UAPS ablations at CPU scale in bf16 (benchmarks/configs/label_scarcity_ablations.yaml: losses, λ1, λ2): ~6.5 core-hours
study-ablations: setup
	$(PY) run_all.py benchmark --profile label_scarcity_ablations --results-dir $(RESULTS) --jobs $(JOBS)

# the same ablations' missing groups (mixing, D; λ2 = 1.0; λ1 = 0.5 and ℓ_seg again) in float32, for CPUs without bf16 units: ~28 core-hours
study-ablations-fp32: setup
	$(PY) run_all.py benchmark --profile label_scarcity_ablations_fp32 --results-dir $(RESULTS) --jobs $(JOBS)

# the result tables in README.md and docs/*.md <- the committed tables they name (after their report is rebuilt)
doc-tables: setup
	$(PY) -m defectseg.benchmarks.docs_tools.doc_tables

# tables -> $(RESULTS)/tables, figures -> $(RESULTS)/figures, report (with both) -> $(RESULTS)/report/index.md
tables: setup
	$(PY) run_all.py tables --results-dir $(RESULTS) $(OUTPUT_ARGS)

plots: setup
	$(PY) run_all.py plots --results-dir $(RESULTS) $(OUTPUT_ARGS)

report: setup
	$(PY) run_all.py report --results-dir $(RESULTS) $(OUTPUT_ARGS)

# training speed, reference vs fast path -> $(RESULTS)/perf (options: PERF_ARGS="--configs 128:8:8 --variants bf16+cl")
perf: setup
	$(PY) -m defectseg.benchmarks.perf --out $(RESULTS)/perf $(PERF_ARGS)

# wheels a lent GPU machine's image lacks (Python 3.12, no internet) for benchmarks/perf/device_session.sh -> .whl/,
# at the versions requirements.txt pins
DEVICE_WHEELS = $(shell grep -E '^(segmentation-models-pytorch|scikit-posthocs)==' requirements.txt)
device-wheels: setup
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux2014_x86_64 -d .whl $(DEVICE_WHEELS)

# make data                      download NEU-Seg and MTiles into $DEFECTSEG_DATA_ROOT (or data/)
# make data FROM=../shared/data  link them from a local copy instead
data: setup
	$(PY) -m datasets.download $(if $(FROM),--from-dir $(FROM))

# the pictures in docs/results.md, rebuilt into docs/figures: trains seed 0 of UAPS and simEps on NEU-Seg at 10%
# labels with the cpu profile into $(RESULTS) (a run done there is not retrained, but its best.pt must be there),
# draws the pictures into $(RESULTS)/pictures and copies the PNGs. Needs NEU-Seg (in $DEFECTSEG_DATA_ROOT, or make data).
# Not timed end to end: the two runs trained in 264 s and 287 s on one core each (the reference runs' metrics.json),
# one after the other here, so with decoding the data and drawing expect about 10-12 minutes on an idle machine.
DOCS_FIGURES = uaps_uncertainty_neu uaps_predictions_neu uaps_similarity_neu simeps_similarity_neu
DOCS_RUN = $(PY) run_all.py train --profile cpu --dataset neu --ratio 0.1 --seed 0 --results-dir $(RESULTS)
DOCS_PICTURE = $(PY) run_all.py $(1) --run-dir "$$(sed -n 's/^results: //p' $(RESULTS)/pictures/$(2).log)" \
	--results-dir $(RESULTS) --out $(RESULTS)/pictures/$(3)

docs-figures: setup
	mkdir -p $(RESULTS)/pictures
	$(DOCS_RUN) --method uaps > $(RESULTS)/pictures/uaps.log
	$(DOCS_RUN) --method simeps > $(RESULTS)/pictures/simeps.log
	$(call DOCS_PICTURE,uncertainty,uaps,uaps_uncertainty_neu)
	$(call DOCS_PICTURE,predictions,uaps,uaps_predictions_neu)
	$(call DOCS_PICTURE,similarity,uaps,uaps_similarity_neu)
	$(call DOCS_PICTURE,similarity,simeps,simeps_similarity_neu)
	cp $(foreach name,$(DOCS_FIGURES),$(RESULTS)/pictures/$(name).png) docs/figures/

# everything run_all.py and make write under $(RESULTS); refuses the committed reference results
RESULTS_OUTPUTS = runs splits cache tables figures report perf pictures
clean-results:
	$(if $(findstring /results/reference/,$(abspath $(RESULTS))/),$(error RESULTS=$(RESULTS) holds committed reference results; clean-results deletes nothing there))
	rm -rf $(addprefix $(RESULTS)/,$(RESULTS_OUTPUTS))
