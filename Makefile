# TorchServe deployment kit: trained models -> verified artifacts -> .mar archives -> TorchServe.
# `make serve` does everything from a fresh clone; `make test` proves it. `make` lists targets.

PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
MODELS      := $(sort $(patsubst models/%/spec.yaml,%,$(wildcard models/*/spec.yaml)))
# One sample per model that `make serve` sends once everything is up.
DEMO_digits         := models/digits/samples/3.png
DEMO_sensor_anomaly := models/sensor_anomaly/samples/spike.json
# Arguments of register / unregister / predict.
MODEL       ?=
VERSION     ?=
INPUT       ?=
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.SECONDEXPANSION:
.PHONY: help venv train export archive serve stop register unregister predict status test test-unit lint clean kserve

## help: list the targets (this text)
help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed -e 's/^## /  /' -e 's/: / -- /'

$(VENV)/.installed: requirements.txt
	@command -v java >/dev/null || [ -n "$$JAVA_HOME" ] || { echo "TorchServe needs Java 17; installing it"; \
	  apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

## venv: create .venv with the pinned serving and test dependencies
venv: $(VENV)/.installed

## train: retrain every model from its script (needs scikit-learn; rewrites the committed weights)
train: venv
	$(PY) -m pip install --quiet -r requirements-train.txt
	@for m in $(MODELS); do echo "== train $$m"; $(PY) -m models.$$m.train || exit 1; done

build/%/manifest.json: $(VENV)/.installed $$(wildcard models/$$*/*) $$(wildcard models/$$*/samples/*) $(wildcard handlers/*.py export/*.py)
	$(PY) -m export $*

## export: export and verify every model (build/<name>/: artifact + manifest.json)
export: $(MODELS:%=build/%/manifest.json)

model_store/%.mar: build/%/manifest.json
	$(PY) -m export.archive $*

## archive: build and check model_store/<name>.mar for every model (exports first where needed)
archive: $(MODELS:%=model_store/%.mar)

## serve: start TorchServe, register every model, print one prediction each and the addresses
serve: archive
	$(PY) -m client.server start
	$(PY) -m client register --skip-registered $(MODELS:%=%.mar)
	@$(foreach m,$(MODELS),echo "== $(m) <- $(DEMO_$(m))" && $(PY) -m client predict $(m) $(DEMO_$(m)) &&) true
	@echo "inference:  $$(grep ^inference_address config.properties | cut -d= -f2)/predictions/<model>"
	@echo "management: $$(grep ^management_address config.properties | cut -d= -f2)/models"
	@echo "metrics:    $$(grep ^metrics_address config.properties | cut -d= -f2)/metrics"
	@echo "tokens:     key_file.json (mode 600); logs: var/log/; stop with: make stop"

## stop: stop TorchServe and every worker it started
stop:
	$(PY) -m client.server stop

## status: say whether the project's TorchServe is running
status:
	@$(PY) -m client.server status

## register: register MODEL (model_store/MODEL.mar) on the running server
register:
	@test -n "$(MODEL)" || (echo "usage: make register MODEL=<name>"; exit 2)
	$(PY) -m client register $(MODEL).mar

## unregister: remove MODEL (VERSION=… for one version) from the running server
unregister:
	@test -n "$(MODEL)" || (echo "usage: make unregister MODEL=<name> [VERSION=<v>]"; exit 2)
	$(PY) -m client unregister $(MODEL) $(if $(VERSION),--version $(VERSION))

## predict: send INPUT (a file, e.g. models/digits/samples/3.png) to MODEL
predict:
	@test -n "$(MODEL)" -a -n "$(INPUT)" || (echo "usage: make predict MODEL=<name> INPUT=<file>"; exit 2)
	$(PY) -m client predict $(MODEL) $(INPUT) $(if $(VERSION),--version $(VERSION))

## kserve: write build/kserve/<model>/ (config + model-store) and an InferenceService per model
kserve: archive
	$(PY) -m deploy.kserve $(if $(STORAGE_URI),--storage-uri $(STORAGE_URI))

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
