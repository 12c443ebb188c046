"""Processes for the end-to-end tests: the proxy under test, SIPp user agents, free ports.

Every process is started on 127.0.0.1 by its own PID, is waited for until its sockets are bound
(read from /proc, never a fixed sleep), and is stopped by PID: SIGTERM, then SIGKILL after a bound.
Every wait has a bound.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import sipmsg

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
SCENARIOS = HERE / "scenarios"
KAMAILIO_CFG = HERE / "kamailio" / "proxy.cfg"
LOCALHOST = "127.0.0.1"

BIND_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0

# Proxies the suite knows how to drive; "none" runs the SIPp pairs directly (scenario validation).
PROXY_KINDS = ("siprec-edge", "kamailio", "none")


class HarnessError(AssertionError):
    """A process did not start, bind or stop as expected (reported as a test failure)."""


# ----------------------------------------------------------------------------- ports

_handed_out: set[int] = set()


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1, never handed out twice in this run."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((LOCALHOST, 0))
            port = tcp.getsockname()[1]
            if port in _handed_out:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((LOCALHOST, port))
                except OSError:
                    continue
        _handed_out.add(port)
        return port
    raise HarnessError("no free port pair found on 127.0.0.1")


# ----------------------------------------------------------------------------- /proc

def _process_tree(pid: int) -> list[int]:
    """pid and its descendants (Kamailio binds in the parent and serves in children)."""
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                children = Path(f"/proc/{current}/task/{task}/children").read_text().split()
                pending.extend(int(child) for child in children)
        except OSError:
            continue
    return tree


def _socket_inodes(pids: list[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    return inodes


def _bound_inodes(transport: str, port: int) -> set[str]:
    """Inodes of sockets bound to 127.0.0.1:port (or 0.0.0.0:port); TCP ones only if listening."""
    table = Path(f"/proc/net/{'udp' if transport == 'udp' else 'tcp'}").read_text().splitlines()[1:]
    wanted = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    inodes = set()
    for row in table:
        fields = row.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if local in wanted and (transport == "udp" or state == "0A"):
            inodes.add(inode)
    return inodes


# ----------------------------------------------------------------------------- processes

class ManagedProcess:
    """A child process with its output in a log file, stopped by PID."""

    def __init__(self, name: str, argv: list[str], log_path: Path, cwd: Path | None = None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.cwd = cwd
        self.popen: subprocess.Popen | None = None
        self.exit_code: int | None = None

    def start(self) -> "ManagedProcess":
        log = open(self.log_path, "wb")
        try:
            # A session of its own: a Ctrl-C at the terminal reaches pytest, not the children.
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, cwd=self.cwd,
                                          start_new_session=True)
        except OSError as error:
            raise HarnessError(f"{self.name}: cannot start {self.argv[0]}: {error}") from error
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait(self, timeout: float) -> int:
        """Exit status within timeout, else HarnessError (the process is killed)."""
        assert self.popen is not None
        try:
            self.exit_code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise HarnessError(f"{self.name} (pid {self.pid}) still running after {timeout:.0f} s; "
                               "killed") from None
        return self.exit_code

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> tuple[int, float]:
        """Sends sig to the PID; SIGKILL after timeout. Returns (exit status, seconds taken)."""
        assert self.popen is not None
        started = time.monotonic()
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.exit_code = self.popen.returncode
        return self.exit_code, time.monotonic() - started

    def kill(self) -> None:
        assert self.popen is not None
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=STOP_TIMEOUT_S)
        # Children left behind by a killed parent are in the session this process leads.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def wait_bound(self, transport: str, port: int, timeout: float = BIND_TIMEOUT_S) -> None:
        """Returns once this process (or a child) has a socket bound to the port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise HarnessError(f"{self.name} exited with status {self.popen.returncode} before "
                                   f"binding {transport}:{LOCALHOST}:{port}\n{self.log_tail()}")
            if _bound_inodes(transport, port) & _socket_inodes(_process_tree(self.pid)):
                return
            time.sleep(0.02)
        raise HarnessError(f"{self.name} did not bind {transport}:{LOCALHOST}:{port} within "
                           f"{timeout:.0f} s\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_bytes().decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


# ----------------------------------------------------------------------------- SIPp

SIPP_CALL_TIMEOUT_S = 20  # -timeout: the whole run of one SIPp instance
SIPP_RECV_TIMEOUT_MS = 8000  # -recv_timeout: one expected message
SIPP_UDP_LINGER_MS = 1000  # -d: the closing <pause/> of a scenario over UDP


@dataclass(frozen=True)
class SippPatience:
    """How long one SIPp instance waits: for its whole run (-timeout) and for one expected
    message (-recv_timeout)."""
    run_s: int = SIPP_CALL_TIMEOUT_S
    recv_ms: int = SIPP_RECV_TIMEOUT_MS


class Sipp(ManagedProcess):
    """One SIPp instance running one of the scenarios in scenarios/."""

    def __init__(self, name: str, scenario: str, transport: str, local_port: int, work_dir: Path,
                 calls: int = 1, remote: tuple[str, int] | None = None, extra: list[str] = (),
                 timeout_s: int = SIPP_CALL_TIMEOUT_S, linger_ms: int | None = None,
                 recv_timeout_ms: int = SIPP_RECV_TIMEOUT_MS):
        self.scenario = scenario
        self.transport = transport
        self.local_port = local_port
        self.calls = calls
        self.timeout_s = timeout_s
        self.message_file = work_dir / f"{name}.messages.log"
        self.error_file = work_dir / f"{name}.errors.log"
        argv = ["sipp"]
        if remote:
            argv.append(f"{remote[0]}:{remote[1]}")
        argv += ["-sf", str(SCENARIOS / scenario),
                 "-i", LOCALHOST, "-p", str(local_port),
                 "-t", "u1" if transport == "udp" else "t1",
                 "-m", str(calls),
                 "-timeout", f"{timeout_s}s", "-timeout_error",
                 "-recv_timeout", str(recv_timeout_ms),
                 # The closing <pause/> of a scenario: how long it lingers over UDP.
                 "-d", str(linger_ms if linger_ms is not None else SIPP_UDP_LINGER_MS),
                 "-nostdin",
                 "-trace_msg", "-message_file", str(self.message_file),
                 "-trace_err", "-error_file", str(self.error_file),
                 *extra]
        super().__init__(name, argv, work_dir / f"{name}.screen.log", cwd=work_dir)

    def finish(self) -> int:
        """Waits for the scenario to end (bounded by its own -timeout plus a margin)."""
        return self.wait(timeout=self.timeout_s + 10)

    def trace(self) -> list[sipmsg.TracedMessage]:
        return sipmsg.read_sipp_trace(self.message_file)

    def received(self) -> list[sipmsg.SipMessage]:
        return [t.message for t in self.trace() if t.direction == "received"]

    def successful_calls(self) -> int:
        """The cumulative "Successful call" count of the last statistics screen SIPp printed."""
        counts = re.findall(r"^  Successful call +\| +\d+ +\| +(\d+)", self.log_tail(10_000),
                            re.MULTILINE)
        assert counts, f"{self.name}: no statistics screen in {self.log_path}"
        return int(counts[-1])

    def errors(self, lines: int = 40) -> str:
        try:
            text = self.error_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def sipp_available() -> bool:
    return shutil.which("sipp") is not None


# ----------------------------------------------------------------------------- proxies

@dataclass
class ProxyEndpoints:
    """Where clients reach the element under test, per transport."""

    udp_port: int
    tcp_port: int

    def port(self, transport: str) -> int:
        return self.udp_port if transport == "udp" else self.tcp_port


def upstream_uri(port: int, transport: str, explicit_transport: bool) -> str:
    uri = f"sip:{LOCALHOST}:{port}"
    return f"{uri};transport={transport}" if explicit_transport else uri


def built_binary(product: str, env_var: str) -> Path:
    """A product of this package: the path in env_var, else the debug build's (`swift build`)."""
    path = Path(os.environ.get(env_var, f".build/debug/{product}"))
    return path if path.is_absolute() else REPO_ROOT / path


def siprec_edge_binary() -> Path:
    return built_binary("siprec-edge", "SIPREC_EDGE_BIN")


def sip_replay_binary() -> Path:
    return built_binary("sip-replay", "SIP_REPLAY_BIN")


def siprec_edge_argv(endpoints: ProxyEndpoints, upstream: str, extra: list[str] = ()) -> list[str]:
    """The command line of the proxy's contract, plus extra flags (recording: --srs, ...)."""
    return [str(siprec_edge_binary()),
            "--listen", f"udp:{LOCALHOST}:{endpoints.udp_port}",
            "--listen", f"tcp:{LOCALHOST}:{endpoints.tcp_port}",
            "--upstream", upstream,
            "--workers", os.environ.get("SIPREC_EDGE_WORKERS", "2"),
            "--log-level", "debug",
            *extra]


def kamailio_argv(endpoints: ProxyEndpoints, upstream: str, run_dir: Path) -> list[str]:
    return ["kamailio", "-f", str(KAMAILIO_CFG), "-DD", "-E", "-Y", str(run_dir),
            "-m", "64", "-M", "8",
            "-A", f"LISTEN_UDP=udp:{LOCALHOST}:{endpoints.udp_port}",
            "-A", f"LISTEN_TCP=tcp:{LOCALHOST}:{endpoints.tcp_port}",
            "-A", f'UAS_ADDR="{upstream}"']


def start_proxy(kind: str, endpoints: ProxyEndpoints, upstream: str, work_dir: Path,
                extra_args: list[str] = ()) -> ManagedProcess:
    """Starts the proxy and returns once it listens on both transports. extra_args are flags
    of siprec-edge only."""
    if kind == "siprec-edge":
        binary = siprec_edge_binary()
        if not binary.exists():
            raise HarnessError(f"proxy binary {binary} not found: build it (swift build) or set "
                               "SIPREC_EDGE_BIN")
        argv = siprec_edge_argv(endpoints, upstream, extra_args)
    elif extra_args:
        raise ValueError(f"{kind}: no place for the flags {list(extra_args)}")
    elif kind == "kamailio":
        run_dir = work_dir / "kamailio-run"
        run_dir.mkdir(exist_ok=True)
        argv = kamailio_argv(endpoints, upstream, run_dir)
    else:
        raise ValueError(f"no proxy process for kind {kind!r}")
    proxy = ManagedProcess(kind, argv, work_dir / f"{kind}.log").start()
    try:
        proxy.wait_bound("udp", endpoints.udp_port)
        proxy.wait_bound("tcp", endpoints.tcp_port)
        if kind == "kamailio":
            _wait_kamailio_workers(proxy)
    except HarnessError:
        proxy.stop()
        raise
    return proxy


def _wait_kamailio_workers(proxy: ManagedProcess) -> None:
    """Kamailio binds before it forks its workers: wait until the process count it announces
    is reached, so that traffic and signals meet a fully started proxy."""
    deadline = time.monotonic() + BIND_TIMEOUT_S
    while time.monotonic() < deadline:
        announced = re.search(r"processes \(at least\): (\d+)", proxy.log_tail(200))
        if announced and len(_process_tree(proxy.pid)) >= int(announced.group(1)):
            return
        time.sleep(0.02)
    raise HarnessError(f"kamailio did not start all its processes within {BIND_TIMEOUT_S:.0f} s\n"
                       f"{proxy.log_tail()}")
