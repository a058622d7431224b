# TorchServe deployment kit: trained models -> verified artifacts -> .mar archives -> TorchServe.
# `make serve` does everything from a fresh clone; `make test` proves it. `make` lists targets.

PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
# The models directory (KIT_MODELS_DIR overrides it, as for `python -m export`): each folder with a spec.yaml.
MODELS_DIR  := $(or $(KIT_MODELS_DIR),models)
# Artifact format for export / archive / serve: empty = each model's primary format (the first its
# spec.yaml lists; torchscript for a model.py), or torchscript, onnx, aoti, exported, or all (every
# format a spec lists). A model is served as <model> in its primary format, <model>_<format> in others.
FORMAT      ?=
# Every served name as <served name>:<model>:<1 if FORMAT selects it, else 0>, from one Python call
# (export/paths.py, standard library only: it runs with the system python3 before the venv exists).
SERVED_TABLE := $(shell KIT_MODELS_DIR=$(MODELS_DIR) $(PYTHON) -m export.paths served $(FORMAT))
field        = $(word $(2),$(subst :, ,$(1)))
MODELS      := $(sort $(foreach w,$(SERVED_TABLE),$(call field,$(w),2)))
SERVED      := $(foreach w,$(filter %:1,$(SERVED_TABLE)),$(call field,$(w),1))
# The model a served name belongs to: digits_onnx -> digits, else the name itself.
model_of     = $(or $(call field,$(filter $(1):%,$(SERVED_TABLE)),2),$(1))
# Arguments of register / unregister / predict.
MODEL       ?=
VERSION     ?=
INPUT       ?=
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.SECONDEXPANSION:
.PHONY: help venv train export archive serve stop register unregister predict status restart test test-unit lint clean kserve \
	new-model reload

## help: list the targets (this text)
help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed -e 's/^## /  /' -e 's/: / -- /'

$(VENV)/.installed: requirements.txt requirements-runtime.txt
	@command -v java >/dev/null || [ -n "$$JAVA_HOME" ] || { echo "TorchServe needs Java 17; installing it"; \
	  apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

## venv: create .venv with the pinned runtime (requirements-runtime.txt) and development dependencies
venv: $(VENV)/.installed

## train: retrain every model from its script (needs scikit-learn; rewrites the committed weights)
train: venv
	$(PY) -m pip install --quiet -r requirements-train.txt
	@for m in $(MODELS); do echo "== train $$m"; $(PY) -m models.$$m.train || exit 1; done

model_files  = $(VENV)/.installed $(wildcard $(MODELS_DIR)/$(1)/*) $(wildcard $(MODELS_DIR)/$(1)/samples/*) $(wildcard handlers/*.py export/*.py)
build/%/manifest.json: $$(call model_files,$$(call model_of,$$*))
	$(PY) -m export $*

## export: export and verify every model in FORMAT (build/<served name>/: artifact + manifest.json)
export: $(SERVED:%=build/%/manifest.json)

model_store/%.mar: build/%/manifest.json
	$(PY) -m export.archive $*
	@$(PY) -m client.trust --pin $@  # its digest, pinned outside the archive (client/trust.py)

## archive: build and check model_store/<served name>.mar for every model in FORMAT (FORMAT=all: every format)
archive: $(SERVED:%=model_store/%.mar)
	@$(PY) -m client.trust --pin-missing --model-store model_store

## serve: start TorchServe, register every model (in FORMAT; rebuilt archives are re-registered), print one prediction each
serve: archive
	$(PY) -m client.server_cli start
	$(PY) -m client.register $(SERVED)
	@$(foreach m,$(SERVED),demo="$$($(PY) -m export.spec demo $(m))" && echo "== $(m) <- $$demo" && $(PY) -m client predict $(m) $$demo &&) true
	@echo "== warm-up: every registered model answers the samples in its archive (readiness needs it)"
	$(PY) -m client.health warmup
	@echo "inference:  $$(grep ^inference_address config.properties | cut -d= -f2)/predictions/<model>"
	@echo "management: $$(grep ^management_address config.properties | cut -d= -f2)/models"
	@echo "metrics:    $$(grep ^metrics_address config.properties | cut -d= -f2)/metrics"
	@echo "tokens:     key_file.json (mode 600); logs: var/log/; stop with: make stop"
	@echo "probes:     python -m client.health ready|live (no token needed; exit 0 = yes)"

## stop: stop TorchServe and every worker it started
stop:
	$(PY) -m client.server_cli stop

## restart: restart TorchServe from its last config snapshot (models, versions, defaults, workers kept)
restart:
	$(PY) -m client.server_cli restart

## status: say whether the project's TorchServe is running ("not running" is an answer, not an error)
status:
	@$(PY) -m client.server_cli status

## register: register MODEL (model_store/MODEL.mar) on the running server
register:
	@test -n "$(MODEL)" || (echo "usage: make register MODEL=<name>"; exit 2)
	$(PY) -m client register $(MODEL).mar
	$(PY) -m client.health warmup

## unregister: remove MODEL (VERSION=… for one version) from the running server
unregister:
	@test -n "$(MODEL)" || (echo "usage: make unregister MODEL=<name> [VERSION=<v>]"; exit 2)
	$(PY) -m client unregister $(MODEL) $(if $(VERSION),--version $(VERSION))

## predict: send INPUT (a file, e.g. models/digits/samples/3.png) to MODEL
predict:
	@test -n "$(MODEL)" -a -n "$(INPUT)" || (echo "usage: make predict MODEL=<name> INPUT=<file>"; exit 2)
	$(PY) -m client predict $(MODEL) $(INPUT) $(if $(VERSION),--version $(VERSION))

## kserve: write build/kserve/: our ServingRuntime (image IMAGE), a NetworkPolicy, and per model a repository + InferenceService
kserve: archive
	$(PY) -m deploy.kserve --image $(IMAGE) $(if $(STORAGE_URI),--storage-uri $(STORAGE_URI)) \
	  --cuda-image $(CUDA_IMAGE) $(if $(GPU_VALUES),--gpu-values $(GPU_VALUES))

## test: run the unit and integration tests (integration ones start their own TorchServe)
test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

## test-unit: run only the unit tests (no server)
test-unit: venv
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

## lint: ruff check and format check
lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

## clean: remove build output, archives and server state (keeps .venv)
clean:
	rm -rf build var logs key_file.json
	find model_store -name '*.mar' -delete

# --- Your own model (README: Adding your own model) ----------------------------------------------
NAME ?=
FROM ?=
SAMPLES ?=

## new-model: scaffold $(MODELS_DIR)/NAME/ from FROM=<.pt|.jit|.pt2|.onnx file>, or without FROM for a model.py
new-model: venv
	@test -n "$(NAME)" || (echo "usage: make new-model NAME=<name> [FROM=<model.pt|model.pt2|model.onnx>] [SAMPLES=<dir>]"; exit 2)
	$(PY) -m export.scaffold $(NAME) $(if $(FROM),--from $(FROM)) $(if $(SAMPLES),--samples $(SAMPLES))

# --- Updates without downtime (client/updates.py; README: Updates without downtime) --------------
# KEEP_VERSIONS: old versions kept registered, parked with 0 workers, for rollback.
KEEP_VERSIONS ?= 2
WORKERS       ?=
.PHONY: rollback scale

## reload: serve MODEL's rebuilt archive as a new version: checked on its samples, then default; the old one drained
reload:
	@test -n "$(MODEL)" || (echo "usage: make reload MODEL=<served name>"; exit 2)
	$(MAKE) --no-print-directory model_store/$(MODEL).mar
	$(PY) -m client.register --force --keep $(KEEP_VERSIONS) $(MODEL)

## rollback: make MODEL's previous version the default again (same checks and drain as reload)
rollback:
	@test -n "$(MODEL)" || (echo "usage: make rollback MODEL=<served name>"; exit 2)
	$(PY) -m client rollback $(MODEL) --keep $(KEEP_VERSIONS)

## scale: give MODEL WORKERS workers under load without losing a request (fewer: through a new version)
scale:
	@test -n "$(MODEL)" -a -n "$(WORKERS)" || (echo "usage: make scale MODEL=<served name> WORKERS=<n>"; exit 2)
	$(PY) -m client scale $(MODEL) $(WORKERS) --keep $(KEEP_VERSIONS)

# --- Benchmarks (bench/, docs/PERFORMANCE.md) ---------------------------------------------------
# wrk (Debian's package) is the load generator; the bench smoke test in `make test` needs it and the
# LitServe peer (requirements-bench.txt) too.
# BENCH_ARGS: extra flags for `python -m bench` (e.g. --models digits --repeats 1; see --help).
BENCH_ARGS ?=
.PHONY: bench bench-tune bench-smoke bench-tools
test: bench-tools $(VENV)/.bench-installed

bench-tools:
	@command -v wrk >/dev/null || { echo "installing wrk, the benchmark's load generator"; \
	  apt-get update -qq && apt-get install -y -qq wrk; }

$(VENV)/.bench-installed: requirements-bench.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-bench.txt
	touch $@

## bench: TorchServe vs LitServe vs Flask vs the in-process limit, every model and corpus (~30 min); writes bench/results/
bench: archive bench-tools $(VENV)/.bench-installed
	$(PY) -m bench $(BENCH_ARGS)

## bench-tune: measure the settings behind the defaults (~30 min); writes bench/results/tune-<sweep>.md
# TUNE_ARGS: sweeps and flags for `python -m bench.tune` (e.g. `delay --repeats 2`; see --help).
TUNE_ARGS ?= litserve light batching
bench-tune: archive bench-tools $(VENV)/.bench-installed
	$(PY) -m bench.tune $(TUNE_ARGS)

## bench-smoke: the benchmark on a handful of requests (seconds per point; numbers mean nothing)
bench-smoke: archive bench-tools $(VENV)/.bench-installed
	$(PY) -m bench --concurrency 1 4 --duration 1 --warmup 1 --repeats 1 --inprocess-batches 1 \
	  --inprocess-seconds 0.2 --inprocess-bodies 4 --checked 4 --no-plot --out build/bench-smoke

# --- Formats (docs/FORMATS.md) -------------------------------------------------------------------
.PHONY: formats-table

## formats-table: export every model in every format afresh, measure each, rewrite the README table (~5 min)
formats-table: venv
	$(PY) -m export.formats_table --write README.md docs/FORMATS.md

# --- Reliability (reliability/, docs/RELIABILITY.md) --------------------------------------------
.PHONY: soak reliability
SOAK_REQUESTS    ?= 5000
SOAK_CONCURRENCY ?= 16

## soak: SOAK_REQUESTS (5000) requests at SOAK_CONCURRENCY (16) across all models on a throwaway server; fails on any error
soak: archive
	$(PY) -m reliability.load --requests $(SOAK_REQUESTS) --concurrency $(SOAK_CONCURRENCY)

## reliability: run the reliability tests and the soak, and rewrite docs/RELIABILITY.md from what they saw (~5 min)
reliability: archive
	$(PY) -m reliability.report --requests $(SOAK_REQUESTS) --concurrency $(SOAK_CONCURRENCY)

# --- Containers and KServe (Containerfile, deploy/, docs/SCALING.md) ------------------------------
# podman builds and runs the image; Docker can build the same Containerfile. BASE_IMAGE=local (the
# default here: these machines reach no registry) makes a Debian bookworm base with mmdebstrap;
# elsewhere pass e.g. BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm (the Containerfile's default).
.PHONY: image image-context image-size container-tools test-image test-keys-expiry
IMAGE         ?= localhost/torchserve-kit:latest
BASE_IMAGE    ?= local
LOCAL_BASE    := localhost/torchserve-kit-base:bookworm
CONTAINER_DIR := build/container
CONTEXT       := $(CONTAINER_DIR)/context
PODMAN        := CONTAINERS_CONF=$(CURDIR)/deploy/container/containers.conf podman
BASE_ARG       = $(if $(filter local,$(BASE_IMAGE)),$(LOCAL_BASE),$(BASE_IMAGE))

container-tools:
	@command -v podman >/dev/null && command -v runc >/dev/null && command -v mmdebstrap >/dev/null || { \
	  echo "installing podman, runc and mmdebstrap (container builds)"; \
	  apt-get update -qq && apt-get install -y -qq podman runc mmdebstrap; }

# The local base: a minimal Debian rootfs from the package mirror, imported as an image.
$(CONTAINER_DIR)/base.stamp: | container-tools
	mkdir -p $(CONTAINER_DIR)
	mmdebstrap --quiet --variant=minbase --include=ca-certificates bookworm $(CONTAINER_DIR)/rootfs.tar
	$(PODMAN) import $(CONTAINER_DIR)/rootfs.tar $(LOCAL_BASE)
	rm -f $(CONTAINER_DIR)/rootfs.tar
	touch $@

# The runtime set as wheels, made on the host: pip cannot reach an index inside a build here.
$(CONTEXT)/wheelhouse/.done: requirements-runtime.txt | venv
	mkdir -p $(CONTEXT)/wheelhouse
	$(PY) -m pip wheel --quiet -r requirements-runtime.txt -w $(CONTEXT)/wheelhouse
	touch $@

## image-context: gather what the image holds in build/container/context/ (archives, client, config, wheels)
image-context: archive $(CONTEXT)/wheelhouse/.done
	rm -rf $(CONTEXT)/client $(CONTEXT)/model-store
	mkdir -p $(CONTEXT)/client $(CONTEXT)/model-store
	cp client/*.py $(CONTEXT)/client/
	cp deploy/container/start.sh deploy/container/config.properties requirements-runtime.txt $(CONTEXT)/
	cp $(SERVED:%=model_store/%.mar) model_store/SHA256SUMS $(CONTEXT)/model-store/

## image: build the container image IMAGE (podman; every archive in FORMAT; BASE_IMAGE=local or a registry image)
# --format docker: the OCI image format has no HEALTHCHECK, and podman would drop it.
image: image-context $(if $(filter local,$(BASE_IMAGE)),$(CONTAINER_DIR)/base.stamp) | container-tools
	@start=$$(date +%s); \
	$(PODMAN) build --format docker --network host --build-arg BASE=$(BASE_ARG) -f Containerfile -t $(IMAGE) $(CONTEXT) && \
	echo "built $(IMAGE) in $$(( $$(date +%s) - start )) s"
	@$(MAKE) --no-print-directory image-size

## image-size: print IMAGE's size unpacked and compressed (gzip layers, as a registry push sends them)
image-size:
	@rm -rf $(CONTAINER_DIR)/oci
	@$(PODMAN) push --quiet --compression-format gzip $(IMAGE) oci:$(CONTAINER_DIR)/oci:latest
	@echo "$(IMAGE): unpacked $$($(PODMAN) image inspect --format '{{.Size}}' $(IMAGE) | numfmt --to=iec), compressed $$(du -sb $(CONTAINER_DIR)/oci | cut -f1 | numfmt --to=iec)"
	@rm -rf $(CONTAINER_DIR)/oci

## test-image: build IMAGE, then run it as our ServingRuntime says, per model (tests/container; ~10 min)
test-image: image
	KIT_CONTAINER_TESTS=1 IMAGE=$(IMAGE) CONTAINERS_CONF=$(CURDIR)/deploy/container/containers.conf \
	  $(PY) -m pytest -m container tests/container $(PYTEST_ARGS)

## test-keys-expiry: keys with a one-minute expiry keep working past it (over a minute; `make test` uses 6 s keys)
test-keys-expiry: venv
	KIT_LONG_TESTS=1 $(PY) -m pytest -m long tests/integration/test_keys.py $(PYTEST_ARGS)

# --- Fuzzing (tests/unit/test_fuzz.py) ----------------------------------------------------------
# `make test` runs a short, fixed fuzz budget (KIT_FUZZ=quick, 60 examples per model and path);
# this runs a long random one, replays the regression corpus, and prints the examples per model
# and path with the worst time and memory per request. FUZZ_EXAMPLES overrides the count.
FUZZ_EXAMPLES ?= 1500
.PHONY: fuzz

## fuzz: fuzz every model's handler on every path for minutes; failures land in tests/fuzz_corpus/
fuzz: venv
	KIT_FUZZ=long KIT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/unit/test_fuzz.py tests/unit/test_fuzz_corpus.py $(PYTEST_ARGS)

# --- GPUs (docs/GPU.md) ---------------------------------------------------------------------------
# The CUDA image: the same Containerfile on a CUDA runtime base, with requirements-cuda.txt's wheels
# (for CUDA_PYTHON, the base's python3). GPU_VALUES: a YAML file with nodeSelector, tolerations and gpus
# for `make kserve`'s GPU models.
.PHONY: gpu-check image-cuda
CUDA_IMAGE   ?= localhost/torchserve-kit:cuda
CUDA_BASE    ?= docker.io/nvidia/cuda:12.8.1-runtime-ubuntu24.04
CUDA_PYTHON  ?= 3.12
CUDA_CONTEXT := $(CONTAINER_DIR)/context-cuda
GPU_VALUES   ?=
GPU_CHECK_ARGS ?=

## gpu-check: each model's handler on CUDA vs the CPU (parity, items/s) into docs/GPU.md; without CUDA one line
# No venv target: a GPU machine may have torch and no Java or package index; the venv's python if there is one.
gpu-check:
	$(if $(wildcard $(PY)),$(PY),$(PYTHON)) -m export.gpu_check $(GPU_CHECK_ARGS)

$(CUDA_CONTEXT)/wheelhouse/.done: requirements-cuda.txt | venv
	mkdir -p $(CUDA_CONTEXT)/wheelhouse
	$(PY) -m pip download --quiet --only-binary=:all: --python-version $(CUDA_PYTHON) \
	  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
	  -r requirements-cuda.txt -d $(CUDA_CONTEXT)/wheelhouse
	touch $@

## image-cuda: build CUDA_IMAGE, the image's CUDA variant (CUDA_BASE, requirements-cuda.txt; needs a registry and the CUDA wheel index)
image-cuda: image-context $(CUDA_CONTEXT)/wheelhouse/.done | container-tools
	rm -rf $(CUDA_CONTEXT)/client $(CUDA_CONTEXT)/model-store
	cp -r $(CONTEXT)/client $(CONTEXT)/model-store $(CONTEXT)/start.sh $(CONTEXT)/config.properties $(CUDA_CONTEXT)/
	cp requirements-cuda.txt $(CUDA_CONTEXT)/requirements-runtime.txt  # the name the Containerfile installs from
	$(PODMAN) build --format docker --network host --build-arg BASE=$(CUDA_BASE) -f Containerfile -t $(CUDA_IMAGE) $(CUDA_CONTEXT)

# --- Security: the reverse proxy (deploy/proxy/, docs/SECURITY.md) -------------------------------
# nginx (Debian's package) in front of the inference API: TLS, header/body timeouts, per-client
# connection and rate limits, max_request_size at the edge. The management API never goes through it.
PROXY_DIR    ?= build/proxy
PROXY_LISTEN ?= 8443
.PHONY: proxy proxy-cert proxy-tools proxy-stop
test: proxy-tools

proxy-tools:
	@command -v nginx >/dev/null || { echo "installing nginx-light, the reverse proxy"; \
	  apt-get update -qq && apt-get install -y -qq nginx-light; }

## proxy-cert: a self-signed certificate for the proxy in build/proxy/ (replace with your own in production)
proxy-cert: venv
	$(PY) -m deploy.proxy cert --dir $(PROXY_DIR)

## proxy: start nginx on PROXY_LISTEN (default 8443, TLS) in front of `make serve`'s inference API
proxy: venv proxy-tools $(if $(wildcard $(PROXY_DIR)/cert.pem),,proxy-cert)
	$(PY) -m deploy.proxy render --dir $(PROXY_DIR) --listen $(PROXY_LISTEN) \
	  --upstream $$($(PY) -c "from client.api import read_properties as r; print(r('config.properties')['inference_address'].split('//')[1])")
	nginx -p $(CURDIR)/$(PROXY_DIR) -c $(CURDIR)/$(PROXY_DIR)/nginx.conf
	@echo "proxy: https://127.0.0.1:$(PROXY_LISTEN)/predictions/<model> (stop with: make proxy-stop)"

## proxy-stop: stop the proxy `make proxy` started
proxy-stop:
	-nginx -p $(CURDIR)/$(PROXY_DIR) -c $(CURDIR)/$(PROXY_DIR)/nginx.conf -s quit
