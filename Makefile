# Two commands on a fresh machine: `make run` serves the API on embedded defaults,
# `make test` installs what the tests need and runs them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the service needs (`make run`): the stamp fonts (Noto Serif; Liberation Serif
# for the appearance kinds, Nghị định 30/2020 Appendix I), libmagic (content sniffing), SoftHSM2
# (the demo seal on a PKCS#11 token; without it that profile is left out).
RUN_PACKAGES := fonts-noto-core fonts-liberation2 libmagic1 softhsm2 ca-certificates
# And those only the tests (and the benchmarks) need (`make test`): poppler (render and look at
# signatures), PostgreSQL (the tests run on it as well as on SQLite), clamd (virus scanning; the
# tests give it their own EICAR database), a JDK and Maven (the EU DSS validator the
# interoperability test builds from Maven Central), Chromium and its Vietnamese interface strings
# (the citizen's page is tested in it; Playwright never downloads a browser), nginx (the load
# balancer of the scale-out test), podman with runc and debootstrap (the image is built from a
# Debian base made from the mirror and run: tests/test_image.py).
TEST_PACKAGES := poppler-utils postgresql clamav-daemon \
	openjdk-17-jdk-headless maven chromium chromium-l10n \
	nginx podman runc debootstrap

# Install the Debian packages $(1) that are missing (apt-get, as root or with sudo).
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

.DEFAULT_GOAL := help
# MinIO server for the storage tests, built from its Go module (pinned) and cached outside the
# repository. Not packaged in Debian; the module's go.mod has to be honoured, so it is built
# inside the downloaded module directory.
MINIO_MODULE := github.com/minio/minio
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
MINIO_BIN := $(HOME)/.cache/signing-service/minio-$(MINIO_VERSION)/minio
# axe-core (npm, pinned) for the accessibility scan of the citizen's page, cached outside the
# repository; the browser tests read it from SIGNING_SERVICE_AXE_JS.
AXE_VERSION := 4.14.1
AXE_DIR := $(HOME)/.cache/signing-service/axe-core-$(AXE_VERSION)
AXE_JS := $(AXE_DIR)/node_modules/axe-core/axe.min.js
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: help run test lint format bench system-deps test-deps venv minio axe clean

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

system-deps: ## install the Debian packages the service needs (when missing)
	$(call apt_install,$(RUN_PACKAGES))

test-deps: ## install the Debian packages the service and the tests need (when missing)
	$(call apt_install,$(RUN_PACKAGES) $(TEST_PACKAGES))

$(VENV)/.synced: pyproject.toml uv.lock
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(PYTHON) -m uv sync --frozen --quiet --compile-bytecode
	@touch $@

venv: $(VENV)/.synced ## create the virtual environment from the lock file

$(MINIO_BIN):
	@command -v go >/dev/null || { echo "Go is needed to build MinIO for the tests"; exit 1; }
	@mkdir -p $(dir $(MINIO_BIN))
	dir=$$(go mod download -json $(MINIO_MODULE)@$(MINIO_VERSION) | $(PYTHON) -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') && \
	  cd "$$dir" && GOFLAGS=-mod=mod go build -trimpath -o $(MINIO_BIN).tmp . && mv $(MINIO_BIN).tmp $(MINIO_BIN)

minio: $(MINIO_BIN) ## build the MinIO server used by the storage tests (cached)

$(AXE_JS):
	@command -v npm >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null; }
	@mkdir -p $(AXE_DIR)
	npm install --prefix $(AXE_DIR) --no-audit --no-fund --ignore-scripts --silent axe-core@$(AXE_VERSION)

axe: $(AXE_JS) ## install axe-core (npm, pinned) for the page's accessibility scan (cached)

# Links to registered documents (and QR codes) open the local page unless set otherwise.
run: system-deps venv ## serve the API on 127.0.0.1:8000 (dev PKI, SQLite and files under ./var)
	SIGNING_SERVICE_PUBLIC_BASE_URL="$${SIGNING_SERVICE_PUBLIC_BASE_URL:-http://127.0.0.1:$${SIGNING_SERVICE_PORT:-8000}}" \
	$(BIN)/signing-service serve

test: test-deps venv minio axe ## run the tests (SQLite and PostgreSQL, MinIO, SoftHSM2, dev PKI, corpus, Chromium)
	SIGNING_SERVICE_TEST_REQUIRE_POSTGRES=1 SIGNING_SERVICE_TEST_REQUIRE_SOFTHSM=1 \
	SIGNING_SERVICE_TEST_REQUIRE_BROWSER=1 SIGNING_SERVICE_AXE_JS=$(AXE_JS) \
	SIGNING_SERVICE_TEST_REQUIRE_MINIO=1 SIGNING_SERVICE_MINIO_BIN=$(MINIO_BIN) \
	SIGNING_SERVICE_TEST_REQUIRE_CLAMD=1 SIGNING_SERVICE_TEST_REQUIRE_JAVA=1 \
	$(BIN)/pytest $(PYTEST_ARGS)

lint: venv ## ruff, formatting and the import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: test-deps venv minio ## measure signing, verification and storage; writes bench/RESULTS.md
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.verification
	$(BIN)/python -m bench.load
	$(BIN)/python -m bench.page
	$(BIN)/python -m bench.cli
	SIGNING_SERVICE_MINIO_BIN=$(MINIO_BIN) $(BIN)/python -m bench.storage
	$(BIN)/python -m bench.preservation
	SIGNING_SERVICE_MINIO_BIN=$(MINIO_BIN) $(BIN)/python -m bench.scale

clean: ## remove the environment and local data (./var)
	rm -rf $(VENV) var
