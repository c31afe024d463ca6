# metalearn-sep: two commands for students (`make lab`, `make test`) and a few for maintainers.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: lab test notebooks benchmarks results checkpoints student student-test lock clean-venv

# Create .venv when missing and install the pinned dependencies plus the package (editable).
$(STAMP): pyproject.toml requirements.lock scripts/ensure_system.sh
	@sh scripts/ensure_system.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --constraint requirements.lock --editable .
	@touch $(STAMP)

# JupyterLab refuses to start as root unless told; root is common in containers and lab servers.
USER_ID  ?= $(shell id -u)
LAB_ARGS ?=
lab: $(STAMP)
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(USER_ID)),--allow-root) $(LAB_ARGS) notebooks/

# Unit tests, every notebook executed by nbval and every chapter of the student edition, in the ci profile.
# TEST_JOBS workers (one per core, at most 4) share the cores; a notebook's cells stay on one worker (loadscope).
TEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)
test: $(STAMP)
	METALEARN_SEP_PROFILE=ci $(PY) -m pytest -n $(TEST_JOBS) --dist loadscope

# Re-execute every notebook in place (ci profile by default; PROFILE=cpu for the full run).
PROFILE ?= ci
notebooks: $(STAMP)
	METALEARN_SEP_PROFILE=$(PROFILE) $(PY) scripts/execute_notebooks.py notebooks/*.ipynb

# Runs every benchmark, even after one misses its target; fails at the end, naming the ones that missed.
benchmarks: $(STAMP)
	@failed=""; for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || failed="$$failed $$b"; done; \
	if [ -n "$$failed" ]; then echo "missed a target or failed:$$failed"; exit 1; fi

# Every chapter's experiment at cpu scale, 3 seeds, into results/ (about 3 h on 2 cores; resumable: a rerun skips
# recorded runs; ARGS="--chapters 03 --minutes 60" does a slice).
results: $(STAMP)
	$(PY) benchmarks/results.py $(ARGS)

# The shipped models in assets/checkpoints/ from the recorded results (about 45 min on 2 cores; prints its time).
checkpoints: $(STAMP)
	$(PY) scripts/make_checkpoints.py $(ARGS)

# The student edition: every solution replaced by `raise NotImplementedError`.
student: $(STAMP)
	$(PY) scripts/student_edition.py notebooks/*.ipynb --out student/

# Builds the student edition and runs every chapter whole (about 6 minutes on 2 cores; part of `make test` too).
student-test: $(STAMP)
	METALEARN_SEP_PROFILE=ci $(PY) -m pytest tests/test_student_edition.py

lock: $(STAMP)
	@echo "# Exact versions that CI installs (pip constraints file). Regenerate with \`make lock\` after a tested upgrade." > requirements.lock
	$(PY) -m pip freeze --exclude-editable | grep -v '^metalearn' >> requirements.lock

clean-venv:
	rm -rf $(VENV)
