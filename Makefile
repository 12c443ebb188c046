# SIPREC Edge: the single entry point for developers and CI.
#   make run    install missing Debian packages, build (release), start the proxy with its defaults
#   make test   install, build, run every test (unit, C, fuzz smoke, SIPp integration)
#   make bench  scanner throughput and SIPp load through siprec-edge and the Kamailio anchor

SHELL := /bin/bash
SWIFT ?= swift
CLANG ?= $(shell command -v clang 2>/dev/null || echo /opt/swift/usr/bin/clang)
PYTHON ?= python3
SHARED ?= $(abspath ../shared)

# Debian packages the build and the tests need; bench adds the Kamailio anchor.
BUILD_PACKAGES := pkg-config libevent-dev libxml2-dev libssl-dev
TEST_PACKAGES := sip-tester libxml2-utils rtpengine-daemon
BENCH_PACKAGES := kamailio sysstat

.PHONY: all deps deps-bench build release run test unit-test c-test fuzz fuzz-smoke integration-test \
        bench bench-scan bench-load fixtures clean

all: build

# Installs only what is missing, so a warm machine does not touch apt.
deps:
	@$(call apt_install,$(BUILD_PACKAGES) $(TEST_PACKAGES))
	@$(PYTHON) -c 'import pytest' 2>/dev/null || $(PYTHON) -m pip install --quiet pytest

deps-bench: deps
	@$(call apt_install,$(BENCH_PACKAGES))

define apt_install
missing=""; for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
if [ -n "$$missing" ]; then \
  echo "installing:$$missing"; \
  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
fi
endef

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --product siprec-edge

run: release
	.build/release/siprec-edge

test: deps
	$(SWIFT) build --build-tests
	$(MAKE) --no-print-directory unit-test c-test fuzz-smoke integration-test

unit-test:
	$(SWIFT) test --skip-build

c-test:
	@echo "c-test: not yet"

fuzz-smoke:
	@echo "fuzz-smoke: not yet"

integration-test:
	@echo "integration-test: not yet"

bench: deps-bench
	@echo "bench: not yet"

clean:
	rm -rf .build .build-*
