# mlaudit developer tasks.
#
#   make demo    build the demo dataset + models (examples/make_demo.py) and scan them
#   make test    ruff, mypy --strict, rule-page sync check, pytest (PYTEST_ARGS="-x -k foo")
#   make clean   remove build/test/demo outputs (keeps the virtual environment)
#   make distclean   clean + remove the virtual environment
#
# The virtual environment lives in .venv and is created from $(PYTHON) when missing.
# `pip install -e '.[all,dev]'` reruns only when pyproject.toml changes (stamp file).

PYTHON ?= python3
PYTEST_ARGS ?=
# Extra flags for the install step, e.g. PIP_INSTALL_FLAGS="--no-build-isolation" offline.
PIP_INSTALL_FLAGS ?=
DEMO ?= demo

VENV := .venv
BIN := $(VENV)/bin
VENV_PYTHON := $(BIN)/python
INSTALL_STAMP := $(VENV)/.mlaudit-install.stamp
MLAUDIT := $(BIN)/mlaudit
# The example service's code and pinned requirements, matched offline against examples/osv.
CODE_AND_DEPS := --source examples/loan_service --requirements examples/requirements.txt \
	--vuln-db examples/osv
ALL_FORMATS := --format json --format html --format sarif --format junit --format md \
	--format cyclonedx

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

.PHONY: help venv install browser demo sample test lint typecheck docs-check pytest clean distclean

help:
	@echo "targets: demo test clean distclean (install, lint, typecheck, docs-check, pytest)"

# --------------------------------------------------------------------------- environment

$(VENV_PYTHON):
	$(PYTHON) -m venv $(VENV)

venv: $(VENV_PYTHON)

# The stamp lives inside the venv, so recreating the venv also forces a reinstall.
$(INSTALL_STAMP): pyproject.toml constraints.txt | $(VENV_PYTHON)
	$(VENV_PYTHON) -m pip install $(PIP_INSTALL_FLAGS) -c constraints.txt -e '.[all,dev]'
	@touch $@

install: $(INSTALL_STAMP)

# The HTML report is tested in a real headless Chromium; tests/reports/chromium.py says which
# browsers count (chromium, chromium-browser, google-chrome, Playwright's own). When none is
# found, Debian's chromium is installed, but only where that asks for no password: apt-get as
# root or through passwordless sudo. Anywhere else make test still runs, announces loudly that
# the browser tests are skipped and why, and pytest skips them (the reason shows in its summary).
FIND_CHROMIUM := $(VENV_PYTHON) -m tests.reports.chromium

browser: $(INSTALL_STAMP)
	@if found=$$($(FIND_CHROMIUM) 2>/dev/null); then echo "browser tests: $$found"; exit 0; fi; \
	why=; \
	if ! command -v apt-get >/dev/null 2>&1; then why="no Chromium found, and no apt-get to install one"; \
	elif [ "$$(id -u)" = 0 ]; then sudo=; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	else why="no Chromium found; installing one with apt-get needs root or passwordless sudo"; fi; \
	if [ -z "$$why" ]; then \
		echo "installing Debian's chromium for the HTML report tests"; \
		{ $$sudo apt-get update -qq && \
		  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| why="no Chromium found, and apt-get install chromium failed"; \
	fi; \
	if [ -z "$$why" ]; then \
		found=$$($(FIND_CHROMIUM) 2>/dev/null) && { echo "browser tests: $$found"; exit 0; }; \
		why="apt-get install chromium ran, yet no Chromium is on PATH"; \
	fi; \
	{ echo; \
	  echo "######################################################################"; \
	  echo "#  HTML REPORT BROWSER TESTS WILL BE SKIPPED"; \
	  echo "#  why: $$why."; \
	  echo "#  fix: install chromium (or chromium-browser, google-chrome), or run"; \
	  echo "#       $(BIN)/playwright install chromium, then make test again."; \
	  echo "######################################################################"; \
	  echo; } >&2

# --------------------------------------------------------------------------- demo

# $(call scan,LABEL,REPORT DIR,MLAUDIT SCAN ARGS,ALLOWED EXIT CODES as a case pattern like 0|1)
# Prints the exit code of the scan and fails the recipe unless it is one of the allowed ones.
# An uncaught Python exception also exits 1, so a scan only counts when it left a report in
# REPORT DIR (the -o directory); a crash that happens to exit 1 fails the demo.
define scan
rc=0; $(MLAUDIT) scan $(3) || rc=$$?; \
echo "demo: scan $(1): exit $$rc"; \
case "$$rc" in \
  $(4)) ;; \
  *) echo "demo: scan $(1) exited $$rc; expected $(4)" >&2; exit 1 ;; \
esac; \
if [ -z "$$(ls -A $(2) 2>/dev/null)" ]; then \
  echo "demo: scan $(1) wrote no report to $(2) (crashed?)" >&2; exit 1; \
fi
endef

# $(call expect,REPORT DIR,RULE ID,STATUS): fail the demo unless the rule ended in STATUS.
define expect
$(VENV_PYTHON) -c 'import json, sys; \
report, rule, wanted = sys.argv[1:]; \
status = {r["rule_id"]: r["status"] for r in json.load(open(report))["results"]}.get(rule); \
print("demo:", rule, "in", report, status, "" if status == wanted else "(expected " + wanted + ")"); \
sys.exit(status != wanted)' $(1)/report.json $(2) $(3)
endef

# Scans of the honest models may pass (0) or be blocked by the gate on findings (1), but a
# usage/input error or crash (2 or more) fails the demo. The hostile pickle must be blocked
# by the gate (exactly 1) without ever being loaded, i.e. $(DEMO)/PWNED must not appear.
demo: $(INSTALL_STAMP)
	$(VENV_PYTHON) examples/make_demo.py --out $(DEMO)
	rm -rf $(DEMO)/PWNED $(DEMO)/report-overfit $(DEMO)/report-regularised-skops \
		$(DEMO)/report-regularised-onnx $(DEMO)/report-hostile $(DEMO)/report-leaky $(DEMO)/keys
	$(MLAUDIT) keygen --out $(DEMO)/keys
	@$(MLAUDIT) --help >/dev/null || { echo "demo: '$(MLAUDIT) --help' failed" >&2; exit 1; }
	@$(call scan,model-overfit.joblib,$(DEMO)/report-overfit,$(DEMO)/model-overfit.joblib \
		--train $(DEMO)/train.csv --holdout $(DEMO)/holdout.csv --target approved \
		--config examples/mlaudit-demo.toml \
		$(CODE_AND_DEPS) -o $(DEMO)/report-overfit $(ALL_FORMATS),0|1)
	@$(call scan,model-regularised.skops,$(DEMO)/report-regularised-skops, \
		$(DEMO)/model-regularised.skops \
		--train $(DEMO)/train.csv --holdout $(DEMO)/holdout.csv --target approved \
		--current $(DEMO)/current.csv --config examples/mlaudit-demo.toml \
		$(CODE_AND_DEPS) -o $(DEMO)/report-regularised-skops $(ALL_FORMATS),0|1)
	@$(call scan,model-regularised.onnx,$(DEMO)/report-regularised-onnx, \
		$(DEMO)/model-regularised.onnx \
		--train $(DEMO)/train.csv --holdout $(DEMO)/holdout.csv --target approved \
		--config examples/mlaudit-demo.toml \
		--sign-key $(DEMO)/keys/mlaudit.key \
		-o $(DEMO)/report-regularised-onnx $(ALL_FORMATS),0|1)
	@$(call scan,model-hostile.pkl,$(DEMO)/report-hostile,$(DEMO)/model-hostile.pkl \
		--data $(DEMO)/holdout.csv --target approved -o $(DEMO)/report-hostile,1)
	@$(call scan,model-leaky.skops,$(DEMO)/report-leaky,$(DEMO)/model-leaky.skops \
		--train $(DEMO)/train-leaky.csv --holdout $(DEMO)/holdout-leaky.csv --target approved \
		--select MLA1 --select MLA7 -o $(DEMO)/report-leaky $(ALL_FORMATS),1)
	@$(call expect,$(DEMO)/report-overfit,MLA302,failed)
	@$(call expect,$(DEMO)/report-regularised-skops,MLA302,passed)
	@# Drift: the skops scan's current data is the holdout after a shift.
	@$(call expect,$(DEMO)/report-regularised-skops,MLA704,failed)
	@# Serving: the profile, measured in the worker, within the demo's thresholds.
	@$(call expect,$(DEMO)/report-regularised-skops,MLA801,passed)
	@$(call expect,$(DEMO)/report-leaky,MLA703,failed)
	@# The signed ONNX report verifies against its model and data, and not against another model.
	$(MLAUDIT) verify $(DEMO)/report-regularised-onnx/report.intoto.json \
		--key $(DEMO)/keys/mlaudit.pub --report $(DEMO)/report-regularised-onnx/report.json \
		--model $(DEMO)/model-regularised.onnx --data $(DEMO)/train.csv \
		--data $(DEMO)/holdout.csv --max-age 1d
	@rc=0; $(MLAUDIT) verify $(DEMO)/report-regularised-onnx/report.intoto.json \
		--key $(DEMO)/keys/mlaudit.pub --model $(DEMO)/model-overfit.joblib >/dev/null || rc=$$?; \
	if [ "$$rc" != 1 ]; then echo "demo: verify accepted another model (exit $$rc)" >&2; exit 1; fi; \
	echo "demo: the signature does not verify for another model (exit 1), as it must"
	@if [ -e $(DEMO)/PWNED ]; then \
		echo "demo: $(DEMO)/PWNED exists -- the hostile pickle was executed!" >&2; exit 1; \
	fi
	@echo "demo: ok (hostile pickle blocked and not loaded; reports in $(DEMO)/report-*)"

# The sample audit in reports/: the demo's overfit-model report, as JSON and HTML.
sample: demo
	mkdir -p reports/sample
	cp $(DEMO)/report-overfit/report.json $(DEMO)/report-overfit/report.html reports/sample/

# --------------------------------------------------------------------------- checks

# lint-imports checks the layer contract in pyproject.toml: imports only point down the pipeline.
lint: $(INSTALL_STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(INSTALL_STAMP)
	$(BIN)/mypy --strict mlaudit examples/plugin/src

docs-check: $(INSTALL_STAMP)
	$(VENV_PYTHON) -m mlaudit.reports.rule_pages --check rules

pytest: $(INSTALL_STAMP) browser
	$(VENV_PYTHON) -m pytest $(PYTEST_ARGS)

# Sequential on purpose (one failure stops the rest, output stays readable under make -j).
test: $(INSTALL_STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy --strict mlaudit examples/plugin/src
	$(VENV_PYTHON) -m mlaudit.reports.rule_pages --check rules
	$(VENV_PYTHON) -m pytest $(PYTEST_ARGS)

# --------------------------------------------------------------------------- cleanup

clean:
	rm -rf $(DEMO) build dist mlaudit-report test-artifacts \
		.pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	find . -path ./$(VENV) -prune -o -name '*.egg-info' -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
