# Every target that needs Python depends on the venv, so each works alone on a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= quick
RESULTS ?= results

.PHONY: setup test benchmark data clean-results

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
	$(PY) run_all.py benchmark --profile $(PROFILE) --results-dir $(RESULTS)

data: setup
	$(PY) -m datasets.download

clean-results:
	rm -rf $(RESULTS)/runs $(RESULTS)/cache
