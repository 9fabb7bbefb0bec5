# mmrec: two commands do everything on a fresh machine.
#   make quickstart   set up .venv, install mmrec + data sources, run the main job
#   make test         same set-up, then the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mmrec-installed
RECBOLE := recbole==1.2.1

.PHONY: setup fashion-mnist postgresql quickstart test test-slow clean

setup: $(STAMP) fashion-mnist postgresql

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,parquet,scann]'
	@# MovieLens-100K ships inside this wheel; its own dependencies (PyTorch, Ray) are not needed.
	$(BIN)/python -m pip install --quiet --no-deps $(RECBOLE)
	touch $(STAMP)

# Fashion-MNIST images for the shop data set, from Debian where we can install packages.
fashion-mnist:
	@if [ -d /usr/share/datasets/fashion-mnist ] || [ -n "$$MMREC_FASHION_MNIST_DIR" ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing the Debian package dataset-fashion-mnist"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else \
	  echo "note: no Fashion-MNIST here; install dataset-fashion-mnist, set MMREC_FASHION_MNIST_DIR," \
	       "or set MMREC_ALLOW_DOWNLOAD=1 to let the shop data set download it"; \
	fi

# PostgreSQL for the feedback store's tests and benchmark (a private server per test
# run, started as the unprivileged 'postgres' user the package creates), from Debian
# where we can install packages. The package's own cluster is not used.
postgresql:
	@if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || [ -n "$$MMREC_POSTGRES_BIN" ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing the Debian package postgresql"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	else \
	  echo "note: no PostgreSQL server binaries here; the feedback store's PostgreSQL tests" \
	       "will be skipped (failed under CI=true): install postgresql or set MMREC_POSTGRES_BIN"; \
	fi

QUICKSTART_RUN := runs/quickstart

# Describe the data, train on MovieLens-100K, evaluate beside the baselines,
# export version N+1 and recommend with explanations for one user.
quickstart: setup
	$(BIN)/mmrec data describe --dataset movielens-100k
	rm -rf $(QUICKSTART_RUN)
	$(BIN)/mmrec train --dataset movielens-100k --out $(QUICKSTART_RUN) --epochs 4
	$(BIN)/mmrec bench quality --dataset movielens-100k --seeds 1 --cold-item-share 0 \
	  --systems "most popular,EASE,TFRS two-tower" --run $(QUICKSTART_RUN)
	$(BIN)/mmrec export --run $(QUICKSTART_RUN) --model-dir saved_models/mmrec
	$(BIN)/mmrec recommend --user 196 -k 10 --model-dir saved_models/mmrec

# --durations lists the slowest tests, to keep the 10-minute budget honest.
test: setup
	$(BIN)/python -m pytest -q --durations=25 tests

# Long checks (more training runs) kept out of `make test`'s 10 minutes.
test-slow: setup
	$(BIN)/python -m pytest -q --durations=10 tests -m slow

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
