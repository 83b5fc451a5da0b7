# HandyPriors-ROS developer entry points. `make help` lists them.
#
# Every target runs inside .venv, which `make setup` creates or updates (scripts/setup_env.sh).
# Setup is skipped while its stamp is newer than the requirement files and scripts; the stamp's
# name carries the mode (ROS wheels or a sourced distro), so sourcing a distro triggers a new setup.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
ifeq ($(strip $(ROS_DISTRO)),)
SETUP_MODE := wheels-jazzy
else
SETUP_MODE := system-$(ROS_DISTRO)
endif
STAMP := $(VENV)/.handypriors-setup-$(SETUP_MODE).stamp
SETUP_INPUTS := requirements.txt constraints.txt setup.py setup.cfg $(shell find scripts -type f ! -name '*.pyc' ! -path '*/__pycache__/*')

# pytest: two xdist workers (the machines have two cores); PYTEST_XDIST= runs in one process.
PYTEST_XDIST ?= -n 2 --dist loadfile
PYTEST_ARGS ?= -q
PYTEST_PATHS ?= test
LINT_DIRS := $(wildcard handypriors_core handypriors_ros test bench launch)

.PHONY: help setup test lint bench demo clean

help:
	@echo "make setup   create/update $(VENV): pinned Python deps, ROS 2 Jazzy wheels + tf2_msgs (no distro sourced)"
	@echo "make test    setup, then python -m pytest test (PYTEST_PATHS=... for a subset)"
	@echo "make lint    ruff check over $(LINT_DIRS)"
	@echo "make bench   run every bench/bench_*.py (results in bench/results/)"
	@echo "make demo    run the demo (handypriors demo)"
	@echo "make clean   remove build outputs and caches (keeps $(VENV))"

setup: $(STAMP)

$(STAMP): $(SETUP_INPUTS)
	@VENV="$(VENV)" STAMP="$(STAMP)" bash scripts/setup_env.sh

test: setup
	$(PY) -m pytest $(PYTEST_PATHS) $(PYTEST_XDIST) $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check $(LINT_DIRS)

bench: setup
	$(PY) bench/run_all.py

demo: setup
	$(PY) -m handypriors_core.cli demo

clean:
	rm -rf build install log out .pytest_cache .ruff_cache *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
