# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= configs/demo.yaml
STAMP  := $(VENV)/.installed

# Nothing downloads models or data at run time: every model here is built or exported locally.
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1

.PHONY: install run test bench compile sample recipes clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(STAMP)

run: $(STAMP)  ## the whole pipeline on the bundled sample, locally through kfp.local
	$(BIN)/f2llm run --config $(CONFIG)

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)  ## benchmarks; JSON results with machine info in benchmarks/results/
	$(BIN)/python benchmarks/bench_validation.py
	$(BIN)/python benchmarks/bench_mining.py
	$(BIN)/python benchmarks/bench_trainer.py
	$(BIN)/python benchmarks/bench_kernels.py

compile: $(STAMP)  ## the pipeline as KFP YAML, for a cluster
	$(BIN)/f2llm compile --config $(CONFIG) --output build/pipeline.yaml

sample: $(STAMP)  ## rebuild data/sample from data/raw (hand-written facts + CLDR via Babel)
	$(BIN)/python data/build_sample.py

recipes: $(STAMP)  ## configs/recipes/*.yaml: one ready-made run config per F2LLM-v2 size
	for size in 80M 160M 330M 0.6B 1.7B 4B 8B 14B; do \
		$(BIN)/f2llm recipe $$size > configs/recipes/$$(echo $$size | tr 'A-Z.' 'a-z-').yaml; done

clean:
	rm -rf $(VENV) build runs local_outputs
