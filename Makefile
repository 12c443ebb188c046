# SIPREC Edge: the single entry point for developers and CI.
#   make run    install missing Debian packages, build (release), start the proxy with its defaults
#   make test   install, build, run every test (unit, C, fuzz smoke, SIPp integration)
#   make bench  scanner throughput, then the same replayed traffic (sip-replay) and SIPp load through
#               siprec-edge and the Kamailio anchor

SHELL := /bin/bash
SWIFT ?= swift
CLANG ?= $(shell command -v clang 2>/dev/null || echo /opt/swift/usr/bin/clang)
PYTHON ?= python3
SHARED ?= $(abspath ../shared)

# Debian packages the build and the tests need; bench adds the Kamailio anchor.
BUILD_PACKAGES := pkg-config libevent-dev libxml2-dev libssl-dev libpcap-dev
TEST_PACKAGES := sip-tester libxml2-utils rtpengine-daemon openssl
BENCH_PACKAGES := kamailio sysstat valgrind

.PHONY: all deps deps-bench build release run test unit-test c-test fuzz fuzz-smoke integration-test \
        bench bench-scan bench-metadata bench-replay bench-load bench-instructions clean

all: build

# Installs only what is missing, so a warm machine does not touch apt.
deps:
	@$(call apt_install,$(BUILD_PACKAGES) $(TEST_PACKAGES))
	@$(PYTHON) -c 'import pytest' 2>/dev/null || $(PYTHON) -m pip install --quiet pytest
	@$(PYTHON) -c 'import cryptography' 2>/dev/null || $(PYTHON) -m pip install --quiet cryptography  # SRTP checks of the TLS tests

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

# `make run SRS=sip:HOST:PORT[,...]` records every call: rtpengine (userspace, loopback) starts
# alongside the proxy by its PID and stops with it. RUN_ARGS adds any other flags.
RTPENGINE_NG ?= 127.0.0.1:2223
RTPENGINE_PORTS ?= 30000-30999
run: release
	@if [ -z "$(SRS)" ]; then exec .build/release/siprec-edge $(RUN_ARGS); fi; \
	mkdir -p .build-run; \
	rtpengine --config-file=none --table=-1 --interface=127.0.0.1 --listen-ng=$(RTPENGINE_NG) \
	  --port-min=$(firstword $(subst -, ,$(RTPENGINE_PORTS))) --port-max=$(lastword $(subst -, ,$(RTPENGINE_PORTS))) \
	  --foreground --log-stderr --log-level=5 >.build-run/rtpengine.log 2>&1 & engine=$$!; \
	trap 'kill $$engine 2>/dev/null; wait $$engine 2>/dev/null' EXIT INT TERM; \
	echo "rtpengine (PID $$engine) on $(RTPENGINE_NG), log in .build-run/rtpengine.log"; \
	.build/release/siprec-edge --srs "$(SRS)" --rtpengine udp:$(RTPENGINE_NG) $(RUN_ARGS)

test: deps
	$(SWIFT) build --build-tests
	$(MAKE) --no-print-directory unit-test c-test fuzz-smoke integration-test

unit-test:
	$(SWIFT) test --skip-build

# CSIPScan in plain C: guard-page tests and libFuzzer, both under ASan/UBSan. The toolchain's clang
# ships lld, which links sanitizer builds without gold's export warnings.
SCAN_SOURCES := CLibs/CSIPScan/scan.c CLibs/CSIPScan/header_names.c
SCAN_CFLAGS := -std=c11 -D_GNU_SOURCE -O1 -g -fno-omit-frame-pointer -Wall -Wextra -Werror -ICLibs/CSIPScan/include \
               -fno-sanitize-recover=all $(if $(wildcard $(dir $(CLANG))ld.lld),-fuse-ld=lld)

c-test:
	@mkdir -p .build-ctest
	$(CLANG) $(SCAN_CFLAGS) -fsanitize=address,undefined $(SCAN_SOURCES) Tests/CTests/scan_test.c -o .build-ctest/scan_test
	$(CLANG) $(SCAN_CFLAGS) -fsanitize=address,undefined -DCSIP_SCAN_NO_SIMD $(SCAN_SOURCES) Tests/CTests/scan_test.c \
		-o .build-ctest/scan_test_byte_loop
	.build-ctest/scan_test Tests/Fixtures
	.build-ctest/scan_test_byte_loop Tests/Fixtures

# Seeds: the RFC 4475 fixtures and the first messages of every capture. New inputs go to
# .build-fuzz/corpus, crashes to fuzz-artifacts/ (both git-ignored); a crash fails make.
fuzz-smoke: FUZZ_SECONDS := 20
fuzz: FUZZ_SECONDS := 60
fuzz fuzz-smoke:
	@mkdir -p .build-fuzz/corpus fuzz-artifacts
	$(CLANG) $(SCAN_CFLAGS) -fsanitize=fuzzer,address,undefined $(SCAN_SOURCES) Tests/Fuzz/scan_fuzz.c -o .build-fuzz/scan_fuzz
	$(PYTHON) Tests/Fuzz/seeds.py Tests/Fixtures .build-fuzz/seeds
	@echo "fuzzing the scanner for $(FUZZ_SECONDS) s (log: .build-fuzz/fuzz.log)"
	@.build-fuzz/scan_fuzz -max_total_time=$(FUZZ_SECONDS) -timeout=5 -rss_limit_mb=2048 -dict=Tests/Fuzz/sip.dict \
		-artifact_prefix=fuzz-artifacts/ -print_final_stats=1 .build-fuzz/corpus .build-fuzz/seeds \
		>.build-fuzz/fuzz.log 2>&1 || { tail -40 .build-fuzz/fuzz.log; echo "fuzz: crash, see fuzz-artifacts/"; exit 1; }
	@grep -E "^(stat::number_of_executed_units|stat::new_units_added|stat::peak_rss_mb)" .build-fuzz/fuzz.log

# SIPp end-to-end cases through the proxy (Tests/Integration). PROXY_UNDER_TEST=kamailio runs them
# through the reference proxy, PROXY_UNDER_TEST=none runs the SIPp pairs directly; SIPREC_EDGE_BIN
# overrides the binary (default .build/debug/siprec-edge).
integration-test:
	PYTHONDONTWRITEBYTECODE=1 $(PYTHON) -m pytest Tests/Integration --junitxml=test-results/integration.xml

# Everything Perf/ measures: the scanner alone, then SIPp load through siprec-edge (1 and 2
# workers) and through the Kamailio anchor, in one run on this machine.
bench: deps-bench bench-scan bench-metadata bench-replay bench-load

# Replayed capture through Kamailio and siprec-edge (1 and 2 workers, plain and recording every
# call), and through sip-floor-relay (this machine's floor): steady-state CPU per 1000 calls,
# highest zero-failure rate, memory per active call.
bench-replay: deps-bench release
	$(SWIFT) build -c release --product sip-replay
	$(SWIFT) build -c release --product sip-floor-relay
	SHARED=$(SHARED) Perf/LoadBench/replay-bench.sh

# Instructions per call under callgrind, plain and recorded: deterministic, for comparing builds.
bench-instructions: deps-bench release
	$(SWIFT) build -c release --product sip-replay
	SHARED=$(SHARED) Perf/LoadBench/instructions-bench.sh

bench-load: deps-bench release
	SHARED=$(SHARED) Perf/LoadBench/load-bench.sh $(BENCH_RATE) $(BENCH_SECONDS)

BENCH_RATE ?= 1000
BENCH_SECONDS ?= 15

# Scanner throughput on one core and allocations per message, release build (Perf/ScanBench).
bench-scan:
	$(SWIFT) build -c release --product ScanBench
	.build/release/ScanBench Tests/Fixtures/corpus

# RFC 7865 documents rendered per second, and allocations per document.
bench-metadata:
	$(SWIFT) build -c release --product MetadataBench
	.build/release/MetadataBench 2

clean:
	rm -rf .build .build-*
