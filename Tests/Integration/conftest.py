"""Fixtures of the end-to-end suite: which proxy is under test, and a per-test bench that starts
SIPp user agents and the proxy on free loopback ports, stops them by PID, and shows their logs
when the test fails.

Element under test (option --proxy, or env PROXY_UNDER_TEST):
  siprec-edge  the product (default); binary from env SIPREC_EDGE_BIN,
               default .build/debug/siprec-edge under the repository root
  kamailio     the reference proxy of kamailio/proxy.cfg, to validate the scenarios and the
               expectations through a real record-routing stateful proxy
  none         no proxy: each SIPp pair talks directly, to validate the scenarios themselves
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import harness
import media
import pyua
from harness import HarnessError, ManagedProcess, ProxyEndpoints, Sipp
from rtpengine import RtpEngine
from tlscerts import TestPki


def pytest_addoption(parser):
    parser.addoption("--proxy", choices=harness.PROXY_KINDS,
                     default=os.environ.get("PROXY_UNDER_TEST", "siprec-edge"),
                     help="element under test (env PROXY_UNDER_TEST; default siprec-edge)")


def pytest_report_header(config):
    kind = config.getoption("--proxy")
    detail = f" ({harness.siprec_edge_binary()})" if kind == "siprec-edge" else ""
    return f"proxy under test: {kind}{detail}"


@pytest.fixture(scope="session")
def proxy_kind(request) -> str:
    kind = request.config.getoption("--proxy")
    if not harness.sipp_available():
        raise HarnessError("sipp not found on PATH (Debian package sip-tester)")
    if kind == "kamailio" and shutil.which("kamailio") is None:
        pytest.skip("kamailio not installed (make deps-bench installs it)")
    return kind


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> TestPki:
    """The test CA and the certificates of the TLS tests, made once per run with `openssl`."""
    return TestPki(tmp_path_factory.mktemp("pki")).generate()


# ----------------------------------------------------------------------------- failure logs

_ARTIFACTS = pytest.StashKey[list]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and _ARTIFACTS in item.stash:
        for title, render in item.stash[_ARTIFACTS]:
            text = render()
            if text.strip():
                report.sections.append((title, text))
    return report


# ----------------------------------------------------------------------------- bench

class Bench:
    """The processes of one test. Everything it starts is stopped when the test ends."""

    def __init__(self, kind: str, work_dir: Path, artifacts: list):
        self.kind = kind
        self.work_dir = work_dir
        self._artifacts = artifacts
        self._processes: list[ManagedProcess] = []
        self._proxy: ManagedProcess | None = None
        self._names: dict[str, int] = {}
        self._closers: list = []

    # --- what the element under test is expected to do

    @property
    def has_proxy(self) -> bool:
        return self.kind != "none"

    def skip_unless_proxy(self, why: str = "needs a proxy between the user agents") -> None:
        if not self.has_proxy:
            pytest.skip(f"direct mode (no proxy): {why}")

    def skip_for_kamailio(self, why: str) -> None:
        if self.kind == "kamailio":
            pytest.skip(f"kamailio reference: {why}")

    # --- processes

    def _unique(self, name: str) -> str:
        count = self._names.get(name, 0)
        self._names[name] = count + 1
        return name if count == 0 else f"{name}{count + 1}"

    def _track_sipp(self, sipp: Sipp) -> Sipp:
        self._processes.append(sipp)
        self._artifacts.append((f"{sipp.name} SIPp errors ({sipp.error_file.name})",
                                lambda: sipp.errors()))
        self._artifacts.append((f"{sipp.name} SIPp screen (tail)", lambda: sipp.log_tail(25)))
        return sipp

    def uas(self, scenario: str, transport: str, calls: int = 1, port: int | None = None,
            extra: list[str] = (), linger_ms: int | None = None,
            patience: harness.SippPatience = harness.SippPatience()) -> Sipp:
        """Starts a SIPp callee and returns once it listens."""
        name = self._unique("uas")
        sipp = Sipp(name, scenario, transport, port or harness.free_port(), self.work_dir,
                    calls=calls, extra=extra, linger_ms=linger_ms,
                    timeout_s=patience.run_s, recv_timeout_ms=patience.recv_ms)
        self._track_sipp(sipp).start()
        sipp.wait_bound(transport, sipp.local_port)
        return sipp

    def uac(self, scenario: str, transport: str, target_port: int, calls: int = 1,
            extra: list[str] = (), patience: harness.SippPatience = harness.SippPatience()) -> Sipp:
        """Starts a SIPp caller towards 127.0.0.1:target_port."""
        name = self._unique("uac")
        sipp = Sipp(name, scenario, transport, harness.free_port(), self.work_dir, calls=calls,
                    remote=(harness.LOCALHOST, target_port), extra=extra,
                    timeout_s=patience.run_s, recv_timeout_ms=patience.recv_ms)
        return self._track_sipp(sipp).start()

    def start_proxy(self, upstream_port: int, upstream_transport: str = "udp",
                    explicit_transport: bool = True, client_transport: str | None = None,
                    endpoints: ProxyEndpoints | None = None,
                    extra_args: list[str] = ()) -> ProxyEndpoints:
        """Starts the element under test relaying to 127.0.0.1:upstream_port.

        Returns where clients reach it; in direct mode that is the upstream itself, which only
        works when the client uses the upstream's transport."""
        if not self.has_proxy:
            if client_transport not in (None, upstream_transport):
                pytest.skip("direct mode (no proxy): a UA pair cannot change transport")
            return ProxyEndpoints(udp_port=upstream_port, tcp_port=upstream_port)
        endpoints = endpoints or ProxyEndpoints(udp_port=harness.free_port(),
                                                tcp_port=harness.free_port())
        upstream = harness.upstream_uri(upstream_port, upstream_transport, explicit_transport)
        # A proxy that fails to start is reported with its log tail by start_proxy itself.
        proxy = harness.start_proxy(self.kind, endpoints, upstream, self.work_dir, extra_args)
        self._proxy = proxy
        self._processes.append(proxy)
        self._artifacts.insert(0, (f"{self.kind} log (tail)", lambda: proxy.log_tail(80)))
        return endpoints

    @property
    def proxy(self) -> ManagedProcess:
        assert self._proxy is not None, "no proxy started"
        return self._proxy

    def assert_proxy_running(self) -> None:
        if self.has_proxy and self._proxy is not None:
            assert self.proxy.alive(), (f"{self.kind} exited with status "
                                        f"{self.proxy.popen.returncode}")

    def finish_calls(self, *sipps: Sipp) -> None:
        """Waits for every SIPp instance and asserts each ran all its calls successfully."""
        failures = []
        for sipp in sipps:
            status = sipp.finish()
            if status != 0:
                failures.append(f"{sipp.name} ({sipp.scenario}) exited with status {status}")
        assert not failures, "; ".join(failures)
        self.assert_proxy_running()

    # --- recording: SRS scenarios, rtpengine, RTP counters, Python peers

    def srs(self, scenario: str, port: int | None = None, keys: dict[str, object] | None = None,
            sets: dict[str, object] | None = None, calls: int = 1,
            linger_ms: int | None = None, reject: tuple[int, str] | None = None) -> Sipp:
        """Starts a SIPp SRS (scenarios/srs_*.xml) over UDP and returns once it listens.
        keys become -key NAME VALUE ([NAME] in the scenario), sets -set NAME VALUE; reject
        (code, reason) rewrites the status line of srs_reject.xml (503 Service Unavailable)."""
        name = self._unique("srs")
        if reject is not None:
            template = (harness.SCENARIOS / scenario).read_text()
            assert "SIP/2.0 503 Service Unavailable" in template, scenario
            variant = self.work_dir / f"{name}_{reject[0]}.xml"
            variant.write_text(template.replace("SIP/2.0 503 Service Unavailable",
                                                f"SIP/2.0 {reject[0]} {reject[1]}"))
            scenario = str(variant)  # an absolute path stays as it is under scenarios/
        extra = ["-mp", str(media.free_media_port())]
        for key, value in (keys or {}).items():
            extra += ["-key", key, str(value)]
        for key, value in (sets or {}).items():
            extra += ["-set", key, str(value)]
        sipp = Sipp(name, scenario, "udp", port or harness.free_port(), self.work_dir,
                    calls=calls, extra=extra, linger_ms=linger_ms)
        self._track_sipp(sipp).start()
        sipp.wait_bound("udp", sipp.local_port)
        return sipp

    def rtpengine(self) -> RtpEngine:
        """Starts rtpengine on a free NG port and a private media range; ready on `pong`."""
        engine = RtpEngine(self.work_dir)
        self._processes.append(engine)
        self._artifacts.append(("rtpengine log (tail)", lambda: engine.log_tail(40)))
        return engine.start_and_wait()

    def rtp_counter(self, ports: list[int] | int) -> media.RtpCounter:
        """UDP sockets counting RTP (an SRS's media ports); closed when the test ends."""
        counter = media.RtpCounter(ports)
        self._closers.append(counter.close)
        self._artifacts.append(("RTP counters", counter.summary))
        return counter

    def udp_sink(self, port: int = 0) -> pyua.UdpSink:
        """A UDP socket that records what arrives and never answers; closed when the test ends."""
        sink = pyua.UdpSink(port)
        self._closers.append(sink.close)
        return sink

    def udp_ua(self, port: int = 0) -> pyua.UdpUa:
        """A Python SIP peer (or a silent sink) on a UDP port; closed when the test ends."""
        ua = pyua.UdpUa(port)
        self._closers.append(ua.close)
        return ua

    def stop_all(self) -> None:
        for process in reversed(self._processes):
            if process.popen is not None:
                process.stop()
        for close in reversed(self._closers):
            close()


@pytest.fixture
def bench(proxy_kind, tmp_path, request):
    artifacts: list = []
    request.node.stash[_ARTIFACTS] = artifacts
    bench = Bench(proxy_kind, tmp_path, artifacts)
    try:
        yield bench
    finally:
        bench.stop_all()
