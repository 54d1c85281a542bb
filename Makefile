# Two commands for a new user: `make run` and `make test` (README.md).
# Both create .venv and install the pinned requirements the first time, and again
# only when a requirements file changes (stamp files record what is installed).
# The shell tools run with .venv's python through `make train|backtest|api ARGS="…"`,
# so a command pasted right after `make run` finds torch (a bare `python` does not).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --disable-pip-version-check --quiet
HOST   ?= 127.0.0.1
PORT   ?= 5000
ARGS   ?=

.PHONY: run train backtest api test lint bench bench-ppo sample clean

run: $(VENV)/.runtime
	$(PY) Main.py --host $(HOST) --port $(PORT) $(ARGS)

# make train ARGS="--csv_path sample.csv --model ppo --mode smoke"
train: $(VENV)/.runtime
	$(PY) Utilities/run_training.py $(ARGS)

# make backtest ARGS="--model-dir Models/PPO_demo --csv_path sample.csv"
backtest: $(VENV)/.runtime
	$(PY) Utilities/run_backtest.py $(ARGS)

# The standalone prediction server: make api ARGS="--model-dir Models/PPO_demo --port 8001"
api: $(VENV)/.runtime
	$(PY) Api_Loader.py $(ARGS)

test: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

# Each benchmark prints one JSON object. backtest_speed compares with backtesting.py,
# a dev requirement, hence .dev.
bench: $(VENV)/.dev
	$(PY) bench/logger_overhead.py
	$(PY) bench/store_writes.py
	$(PY) bench/backtest_speed.py
	$(PY) bench/predict_latency.py
	$(PY) bench/model_types.py
	$(PY) bench/upload_memory.py
	$(PY) bench/training_threads.py
	$(PY) bench/monitor_overhead.py
	$(PY) bench/store_reads.py
	$(PY) bench/flush_cost.py
	$(PY) bench/live_latency.py

# Our PPO against stable-baselines3's (a bench-only dependency) on the same trading env;
# prints JSON. Options: make bench-ppo BENCH_PPO_ARGS="--steps 131072 --repeats 5 --sb3-vec"
bench-ppo: $(VENV)/.bench
	$(PY) bench/ppo_throughput.py $(BENCH_PPO_ARGS)

$(VENV)/.bench: requirements-bench.txt $(VENV)/.runtime
	$(PIP) -r requirements-bench.txt
	touch $@

# Rebuilds sample.csv from ../shared/data (only needed if the recipe changes).
sample: $(VENV)/.runtime
	$(PY) tools/make_sample_csv.py

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed, found " + sys.version.split()[0] + "; run: make PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements.txt | $(PY)
	$(PIP) -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(PIP) -r requirements-dev.txt
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-artifacts
