# `make demo` and `make test` set up .venv on first use (again only when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup demo test check bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/painsearch demo --out demo-out

test: setup
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider --durations=25 tests

# the fast tier, for the edit loop: no Ray cluster, S3 server or training beyond one step
check: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider -m "not slow" tests

bench: setup
	$(VENV)/bin/python benchmarks/preprocess.py
	$(VENV)/bin/python benchmarks/input_pipeline.py
	$(VENV)/bin/python benchmarks/epoch_input.py
	$(VENV)/bin/python benchmarks/checkpoint_bytes.py
	$(VENV)/bin/python benchmarks/trial_overhead.py
	$(VENV)/bin/python benchmarks/search_efficiency.py
	$(VENV)/bin/python benchmarks/paper_estimate.py
	$(VENV)/bin/python benchmarks/reliability.py
	$(VENV)/bin/python benchmarks/predict_throughput.py
	$(VENV)/bin/python benchmarks/scenario_gap.py
	$(VENV)/bin/python benchmarks/label_issues.py

clean:
	rm -rf $(VENV) demo-out smoke-out
