"""SIP over TCP and TLS in Python (RFC 3261 18, RFC 5630), on the `socket` and `ssl` modules: an
SRS that answers the proxy's recording sessions, and a user agent that calls through the proxy's
TLS listener (SIPp here has no TLS).

Framing over a stream is by Content-Length (RFC 3261 18.3); a double CRLF between messages is a
keep-alive ping, answered with a single CRLF pong (RFC 5626 4.4.1). Responses go back on the
connection the request came in on (RFC 3261 18.2.2).

StreamSrs, the recording server: TLS (certificate, TLS versions, ciphers, client certificate
required or not) or plain TCP, a thread per connection. It answers an initial INVITE with 200 and
a recvonly SDP on the ports it was given (one per offered m-line; RTP/SAVP with a=crypto when the
offer is SAVP, answering the first offered suite it knows), or with a configured rejection;
re-INVITEs with 200, BYE, CANCEL, OPTIONS, INFO and UPDATE with 200. It records every message
with its arrival time and connection id, and every connection with its TLS version, cipher,
session resumption, SNI, peer certificate and handshake error; on demand it closes its
connections (close_notify, or a reset) and keeps accepting new ones.

StreamUa, the caller: one connection, one dialog, route set from the 2xx's Record-Route.
"""

from __future__ import annotations

import itertools
import queue
import secrets
import socket
import ssl
import struct
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import siprec
import sipmsg
import srtp
from harness import LOCALHOST
from sipmsg import SipMessage

HANDSHAKE_TIMEOUT_S = 5.0
POLL_S = 0.05
WAIT_S = 5.0
MAX_MESSAGE = 1 << 20

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    _TLS11 = ssl.TLSVersion.TLSv1_1
TLS_VERSIONS = {"1.1": _TLS11, "1.2": ssl.TLSVersion.TLSv1_2,
                "1.3": ssl.TLSVersion.TLSv1_3}


# ----------------------------------------------------------------------------- framing

class FramingError(ValueError):
    pass


class StreamFramer:
    """Splits a byte stream into SIP messages by Content-Length, and keep-alives.

    feed(data) returns events: ("message", raw bytes), ("ping", b"\\r\\n\\r\\n") or
    ("pong", b"\\r\\n"). A lone CRLF at the end of the data is held back until the next bytes
    tell whether it starts a ping, unless lone_crlf_is_pong (a client only ever gets pongs)."""

    def __init__(self, lone_crlf_is_pong: bool = False):
        self.buffer = b""
        self.lone_crlf_is_pong = lone_crlf_is_pong

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        self.buffer += data
        events = []
        while self.buffer:
            if self.buffer.startswith(b"\r\n\r\n"):
                events.append(("ping", self.buffer[:4]))
                self.buffer = self.buffer[4:]
                continue
            if self.buffer.startswith(b"\r\n"):
                if b"\r\n\r\n".startswith(self.buffer) and not (
                        self.lone_crlf_is_pong and self.buffer == b"\r\n"):
                    break  # maybe the start of a ping
                events.append(("pong", self.buffer[:2]))
                self.buffer = self.buffer[2:]
                continue
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_MESSAGE:
                    raise FramingError("no end of headers within 1 MiB")
                break
            length = content_length(self.buffer[:end])
            total = end + 4 + length
            if len(self.buffer) < total:
                break
            events.append(("message", self.buffer[:total]))
            self.buffer = self.buffer[total:]
        return events


def content_length(head: bytes) -> int:
    """The Content-Length (or l) of a header block; mandatory over streams (RFC 3261 18.3)."""
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() in (b"content-length", b"l"):
            try:
                return int(value.strip())
            except ValueError as error:
                raise FramingError(f"bad Content-Length {value!r}") from error
    raise FramingError("no Content-Length in a message over a stream")


def render(start_line: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    lines = [start_line] + [f"{name}: {value}" for name, value in headers
                            if name.lower() != "content-length"]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _branch() -> str:
    return f"z9hG4bK-st-{secrets.token_hex(6)}"


# ----------------------------------------------------------------------------- TLS settings

@dataclass
class TlsServerSettings:
    """How a StreamSrs (or a test's TLS server) accepts TLS."""

    cert: Path  # the certificate chain the server sends (leaf first)
    key: Path
    min_version: str = "1.2"
    max_version: str = "1.3"
    client_ca: Path | None = None  # verify client certificates against this CA file
    require_client_cert: bool = False
    ciphers: str | None = None  # OpenSSL cipher list for TLS 1.2 and below

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if self.min_version == "1.1" or self.max_version == "1.1":
            # OpenSSL 3 refuses TLS 1.1 above security level 0.
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1, on purpose
            context.minimum_version = TLS_VERSIONS[self.min_version]
            context.maximum_version = TLS_VERSIONS[self.max_version]
        context.load_cert_chain(str(self.cert), str(self.key))
        if self.ciphers:
            context.set_ciphers(self.ciphers)
        if self.require_client_cert or self.client_ca:
            assert self.client_ca, "a client certificate is checked against client_ca"
            context.load_verify_locations(cafile=str(self.client_ca))
            context.verify_mode = ssl.CERT_REQUIRED if self.require_client_cert else ssl.CERT_OPTIONAL
        return context


def client_context(ca: Path | None = None, cert: Path | None = None, key: Path | None = None,
                   check_hostname: bool = True, min_version: str = "1.2",
                   max_version: str = "1.3") -> ssl.SSLContext:
    """A client context of the tests' TLS peers (Python's defaults plus the test CA)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = TLS_VERSIONS[min_version]
    context.maximum_version = TLS_VERSIONS[max_version]
    if ca:
        context.load_verify_locations(cafile=str(ca))
    context.check_hostname = check_hostname
    context.verify_mode = ssl.CERT_REQUIRED if (ca or check_hostname) else ssl.CERT_NONE
    if cert:
        context.load_cert_chain(str(cert), str(key))
    return context


def subject_of(peer_cert: dict | None) -> str | None:
    """'CN=siprec-edge-client' (RDNs joined by commas) from ssl's getpeercert() dictionary."""
    if not peer_cert:
        return None
    short = {"commonName": "CN", "organizationName": "O", "countryName": "C"}
    return ",".join(f"{short.get(key, key)}={value}"
                    for rdn in peer_cert.get("subject", ()) for key, value in rdn)


# ----------------------------------------------------------------------------- the SRS

@dataclass
class Connection:
    """One accepted connection of a StreamSrs."""

    id: int
    peer: tuple[str, int]
    opened: float
    transport: str  # "TLS" or "TCP"
    tls_version: str | None = None
    cipher: str | None = None
    session_reused: bool | None = None
    sni: str | None = None
    peer_subject: str | None = None
    handshake_error: str | None = None
    handshake_done: bool = False  # TLS: the handshake ended (either way); TCP: at once
    error: str | None = None  # a read error after the handshake
    closed: float | None = None
    closed_by: str | None = None  # "srs" (asked by the test), "peer", "error"
    pings: list[float] = field(default_factory=list)
    messages: int = 0

    @property
    def established(self) -> bool:
        return self.handshake_done and self.handshake_error is None


@dataclass
class Received:
    time: float
    conn: int
    message: SipMessage
    raw: bytes


@dataclass
class Sent:
    time: float
    conn: int
    message: SipMessage


class _Channel:
    """A connection's socket, owned by its thread; other threads queue what to write."""

    def __init__(self, info: Connection, sock):
        self.info = info
        self.sock = sock
        self.outbox: queue.Queue = queue.Queue()
        self.close_mode: str | None = None


class StreamSrs:
    """A SIPREC SRS over TLS (tls given) or TCP on 127.0.0.1, each connection in a thread."""

    def __init__(self, tls: TlsServerSettings | None = None, port: int = 0,
                 media_ports: tuple[int, ...] = (), reject: tuple[int, str] | None = None,
                 uri_form: str | None = None, srtp_suites: tuple[str, ...] | None = None,
                 name: str = "srs"):
        self.tls = tls
        self.name = name
        self.context = tls.context() if tls else None
        self.media_ports = tuple(media_ports)
        self.reject = reject
        self.srtp_suites = tuple(srtp_suites or srtp.SUITES)  # what it accepts, in its order
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.connections: list[Connection] = []
        self._channels: dict[int, _Channel] = {}
        self.log: list[Received] = []
        self.sent: list[Sent] = []
        self._dialogs: dict[str, str] = {}  # Call-ID -> our To tag
        self._sni: dict[int, str | None] = {}
        self._stop = threading.Event()
        if self.context is not None:
            self.context.sni_callback = self._on_sni
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOCALHOST, port))
        self.sock.listen(16)
        self.sock.settimeout(POLL_S)
        self.port = self.sock.getsockname()[1]
        self.transport = "TLS" if tls else "TCP"
        self.uri_form = uri_form or ("transport" if tls else "tcp")
        self.counter = None  # media.RtpCounter on media_ports, set by the bench
        self._accepter = threading.Thread(target=self._accept_loop, name=f"{name}-accept",
                                          daemon=True)
        self._accepter.start()

    # --- addressing

    @property
    def uri(self) -> str:
        """The SRS URI the proxy is given: uri_form 'transport' (sip:...;transport=tls),
        'sips' (sips:127.0.0.1:P), 'sips-default' (sips:127.0.0.1, port 5061) or 'tcp'."""
        return self.uri_of(self.uri_form)

    def uri_of(self, form: str) -> str:
        return {"transport": f"sip:{LOCALHOST}:{self.port};transport=tls",
                "sips": f"sips:{LOCALHOST}:{self.port}",
                "sips-default": f"sips:{LOCALHOST}",
                "tcp": f"sip:{LOCALHOST}:{self.port};transport=tcp"}[form]

    @property
    def contact(self) -> str:
        if self.uri_form.startswith("sips"):
            return f"<sips:srs@{LOCALHOST}:{self.port}>"
        return f"<sip:srs@{LOCALHOST}:{self.port};transport={self.transport.lower()}>"

    @property
    def ports(self) -> tuple[int, ...]:
        return self.media_ports

    # --- threads

    def _on_sni(self, ssl_socket, server_name, context):
        with self._lock:
            self._sni[id(ssl_socket)] = server_name

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, peer = self.sock.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            info = Connection(next(self._ids), peer, time.time(), self.transport)
            with self._lock:
                self.connections.append(info)
            threading.Thread(target=self._serve, args=(sock, info), daemon=True,
                             name=f"{self.name}-conn{info.id}").start()

    def _serve(self, raw: socket.socket, info: Connection) -> None:
        sock = raw
        if self.context is not None:
            sock = self.context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            sock.settimeout(HANDSHAKE_TIMEOUT_S)
            try:
                sock.do_handshake()
            except (ssl.SSLError, OSError) as error:
                info.handshake_error = f"{type(error).__name__}: {error}"
                info.handshake_done = True
                self._linger(sock)
                info.closed, info.closed_by = time.time(), "error"
                return
            info.tls_version = sock.version()
            info.cipher = (sock.cipher() or (None,))[0]
            info.session_reused = sock.session_reused
            info.peer_subject = subject_of(sock.getpeercert())
            with self._lock:
                info.sni = self._sni.pop(id(sock), None)
        info.handshake_done = True
        sock.settimeout(POLL_S)
        channel = _Channel(info, sock)
        with self._lock:
            self._channels[info.id] = channel
        framer = StreamFramer()
        try:
            while not self._stop.is_set():
                self._flush(channel)
                if channel.close_mode:
                    self._close(channel)
                    return
                try:
                    data = sock.recv(65536)
                except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
                    continue
                except (ssl.SSLError, OSError) as error:
                    info.error = f"{type(error).__name__}: {error}"
                    info.closed_by = "error"
                    return
                if not data:
                    info.closed_by = "peer"
                    return
                try:
                    events = framer.feed(data)
                except FramingError as error:
                    info.error, info.closed_by = f"framing: {error}", "error"
                    return
                for kind, payload in events:
                    if kind == "ping":
                        info.pings.append(time.time())
                        channel.outbox.put(b"\r\n")
                    elif kind == "message":
                        self._on_message(channel, payload)
        finally:
            with self._lock:
                self._channels.pop(info.id, None)
            if info.closed is None:
                info.closed = time.time()
            try:
                sock.close()
            except OSError:
                pass

    @staticmethod
    def _linger(sock, seconds: float = 1.0) -> None:
        """After a failed handshake (OpenSSL has written its alert): FIN, then read what the
        peer still sends until it closes, so that the close is not a reset that could destroy
        the alert before the peer reads it (a socket closed with unread data sends RST)."""
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(0.1)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    if not sock.recv(65536):
                        break
                except (socket.timeout, TimeoutError):
                    continue
        except OSError:
            pass
        finally:
            sock.close()

    def _flush(self, channel: _Channel) -> None:
        while True:
            try:
                data = channel.outbox.get_nowait()
            except queue.Empty:
                return
            channel.sock.settimeout(HANDSHAKE_TIMEOUT_S)
            try:
                channel.sock.sendall(data)
            finally:
                channel.sock.settimeout(POLL_S)

    def _close(self, channel: _Channel) -> None:
        info, sock = channel.info, channel.sock
        info.closed_by = "srs"
        if channel.close_mode == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif isinstance(sock, ssl.SSLSocket):
            sock.settimeout(1.0)
            try:
                sock = sock.unwrap()  # close_notify (and the peer's, if it answers within 1 s)
            except (ssl.SSLError, OSError, ValueError):
                pass
        info.closed = time.time()
        try:
            sock.close()
        except OSError:
            pass

    # --- messages

    def _on_message(self, channel: _Channel, raw: bytes) -> None:
        message = sipmsg.parse(raw)
        with self._lock:
            self.log.append(Received(time.time(), channel.info.id, message, raw))
            channel.info.messages += 1
        if not message.is_request:
            return
        method = message.method
        if method == "ACK":
            return
        if method == "INVITE":
            to_tag = sipmsg.header_param(message.value("To") or "", "tag")
            if not to_tag and self.reject:
                self._respond(channel, message, *self.reject, to_tag=secrets.token_hex(4))
                return
            tag = self._dialogs.setdefault(message.call_id, secrets.token_hex(4))
            self._respond(channel, message, 200, "OK", body=self.answer_sdp(message),
                          content_type="application/sdp", to_tag=tag, contact=True)
        elif method in ("BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE"):
            self._respond(channel, message, 200, "OK",
                          to_tag=self._dialogs.get(message.call_id))
        else:
            self._respond(channel, message, 405, "Method Not Allowed",
                          to_tag=self._dialogs.get(message.call_id))

    def _respond(self, channel: _Channel, request: SipMessage, status: int, reason: str,
                 body: bytes = b"", content_type: str | None = None, to_tag: str | None = None,
                 contact: bool = False) -> None:
        to = request.value("To") or ""
        if to_tag and sipmsg.header_param(to, "tag") is None:
            to += f";tag={to_tag}"
        headers = [("Via", via) for via in request.values("Via")]
        headers += [("From", request.value("From")), ("To", to),
                    ("Call-ID", request.call_id), ("CSeq", request.value("CSeq"))]
        if contact:
            headers.append(("Contact", self.contact))
        if body:
            headers.append(("Content-Type", content_type))
        data = render(f"SIP/2.0 {status} {reason}", headers, body)
        with self._lock:
            self.sent.append(Sent(time.time(), channel.info.id, sipmsg.parse(data)))
        channel.outbox.put(data)

    def answer_sdp(self, offer: SipMessage) -> bytes:
        """recvonly (inactive for an inactive offer) on media_ports, one per offered m-line
        (port 0 beyond them); RTP/SAVP with one a=crypto answering the first offered suite it
        accepts when the offer is SAVP; the offer's first payload type."""
        body = siprec.recording_body(offer)
        sdp = body.sdp
        lines = ["v=0", f"o=srs {int(time.time())} 1 IN IP4 {LOCALHOST}", "s=python-srs",
                 f"c=IN IP4 {LOCALHOST}", "t=0 0"]
        for index, m in enumerate(sdp.media if sdp else []):
            port = self.media_ports[index] if index < len(self.media_ports) else 0
            payload = m.formats[0] if m.formats else "0"
            lines.append(f"m={m.kind} {port} {m.protocol} {payload}")
            for rtpmap in m.attribute("rtpmap"):
                if rtpmap.split()[0] == payload:
                    lines.append(f"a=rtpmap:{rtpmap}")
            if m.label:
                lines.append(f"a=label:{m.label}")
            if "SAVP" in m.protocol:
                offered = [srtp.parse_crypto(value) for value in m.attribute("crypto")]
                chosen = next((c for c in offered if c.suite in self.srtp_suites), None)
                if chosen is not None:
                    lines.append("a=" + srtp.Crypto.fresh(chosen.tag, chosen.suite).attribute)
            lines.append("a=inactive" if sdp.direction(m) == "inactive" else "a=recvonly")
        return ("\r\n".join(lines) + "\r\n").encode()

    # --- what the tests look at

    def messages(self) -> list[Received]:
        with self._lock:
            return list(self.log)

    def received(self) -> list[SipMessage]:
        return [r.message for r in self.messages()]

    def requests(self, method: str) -> list[Received]:
        return [r for r in self.messages() if r.message.is_request and r.message.method == method]

    def invites(self) -> list[SipMessage]:
        return [r.message for r in self.requests("INVITE")]

    def time_of(self, message: SipMessage) -> float:
        return self.entry_of(message).time

    def entry_of(self, message: SipMessage) -> Received:
        for entry in self.messages():
            if entry.message is message or (
                    entry.message.start_line == message.start_line
                    and entry.message.value("CSeq") == message.value("CSeq")
                    and entry.message.call_id == message.call_id):
                return entry
        raise AssertionError(f"{message.start_line} not received by {self.name}")

    def sent_responses(self, status: int | None = None, cseq_method: str | None = None) -> list[Sent]:
        with self._lock:
            found = list(self.sent)
        return [s for s in found if (status is None or s.message.status == status)
                and (cseq_method is None or s.message.cseq_method == cseq_method)]

    def ok_to(self, invite: SipMessage) -> SipMessage:
        """The 200 this SRS sent to an INVITE."""
        for sent in self.sent_responses(200, "INVITE"):
            if sent.message.call_id == invite.call_id and \
                    sent.message.value("CSeq") == invite.value("CSeq"):
                return sent.message
        raise AssertionError(f"{self.name} sent no 200 to {invite.value('CSeq')} ({invite.call_id})")

    def established(self) -> list[Connection]:
        with self._lock:
            return [c for c in self.connections if c.established]

    def failed_handshakes(self) -> list[Connection]:
        with self._lock:
            return [c for c in self.connections if c.handshake_error is not None]

    def wait_for(self, condition, timeout: float = WAIT_S, what: str = "condition"):
        """Polls condition() until it returns something true; AssertionError after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            result = condition()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(f"{self.name}: no {what} within {timeout:.1f} s\n{self.summary()}")
            time.sleep(0.02)

    def wait_request(self, method: str, count: int = 1, timeout: float = WAIT_S) -> list[Received]:
        return self.wait_for(lambda: len(self.requests(method)) >= count and self.requests(method),
                             timeout, f"{count} {method}")

    def close_connections(self, mode: str = "close_notify", wait: float = 2.0) -> list[int]:
        """Closes every open connection from the SRS's side: 'close_notify' (TLS close_notify
        then FIN; FIN alone over TCP) or 'reset' (RST). Returns the ids, once they are closed."""
        assert mode in ("close_notify", "reset"), mode
        with self._lock:
            channels = list(self._channels.values())
        for channel in channels:
            channel.close_mode = mode
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(c.info.closed is None for c in channels):
            time.sleep(0.01)
        return [c.info.id for c in channels]

    def send_raw(self, conn_id: int, data: bytes) -> None:
        with self._lock:
            channel = self._channels.get(conn_id)
        assert channel is not None, f"{self.name}: connection {conn_id} is not open"
        channel.outbox.put(data)

    def summary(self) -> str:
        with self._lock:
            connections, log = list(self.connections), list(self.log)
        lines = [f"{self.name} ({self.transport} 127.0.0.1:{self.port}):"]
        for c in connections:
            lines.append(f"  conn {c.id} from {c.peer[1]} at {c.opened:.3f}: {c.tls_version} "
                         f"{c.cipher} reused={c.session_reused} sni={c.sni} "
                         f"peer={c.peer_subject} handshake_error={c.handshake_error} "
                         f"error={c.error} closed_by={c.closed_by} pings={len(c.pings)}")
        for r in log:
            lines.append(f"  {r.time:.3f} conn {r.conn}: {r.message.start_line} "
                         f"({r.message.value('CSeq')}, {r.message.call_id})")
        return "\n".join(lines)

    def close(self) -> None:
        self._stop.set()
        self._accepter.join(timeout=2)
        self.sock.close()
        with self._lock:
            channels = list(self._channels.values())
        for channel in channels:
            try:
                channel.sock.close()
            except OSError:
                pass


# ----------------------------------------------------------------------------- the caller

@dataclass
class SentRequest:
    method: str
    uri: str
    branch: str
    cseq: int
    headers: list[tuple[str, str]]
    message: SipMessage
    time: float


class StreamUa:
    """A SIP user agent on one TCP or TLS connection to 127.0.0.1:port (the proxy, or a
    StreamSrs in the harness checks). Requests carry Via SIP/2.0/TLS (or TCP) with the
    connection's local port, and a Contact on that port with ;transport=tls, so that requests
    for us come back on this connection."""

    def __init__(self, port: int, context: ssl.SSLContext | None = None,
                 server_hostname: str | None = LOCALHOST, user: str = "alice",
                 display: str = "Alice Caller"):
        self.transport = "TLS" if context else "TCP"
        raw = socket.create_connection((LOCALHOST, port), timeout=WAIT_S)
        self.sock = context.wrap_socket(raw, server_hostname=server_hostname) if context else raw
        self.local_port = self.sock.getsockname()[1]
        self.remote_port = port
        self.user, self.display = user, display
        self.framer = StreamFramer(lone_crlf_is_pong=True)
        self.log: list[tuple[float, str, SipMessage]] = []  # (time, "sent"/"received", message)
        self.pongs: list[float] = []
        self._queue: list[SipMessage] = []
        self.call_id = f"{secrets.token_hex(8)}@{LOCALHOST}"
        self.local_tag = secrets.token_hex(4)
        self.cseq = 0
        self.remote_tag: str | None = None
        self.remote_target: str | None = None
        self.route_set: list[str] = []
        self.to_uri: str | None = None
        self._to_display = ""
        self.closed = False

    @property
    def tls_version(self) -> str | None:
        return self.sock.version() if isinstance(self.sock, ssl.SSLSocket) else None

    @property
    def contact(self) -> str:
        return f"<sip:{self.user}@{LOCALHOST}:{self.local_port};transport={self.transport.lower()}>"

    @property
    def from_header(self) -> str:
        return f'"{self.display}" <sip:{self.user}@{LOCALHOST}>;tag={self.local_tag}'

    # --- transport

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _send(self, data: bytes) -> SipMessage:
        self.send_bytes(data)
        message = sipmsg.parse(data)
        self.log.append((time.time(), "sent", message))
        return message

    def _receive(self, timeout: float) -> SipMessage | None:
        self.sock.settimeout(max(0.001, timeout))
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
            return None
        if not data:
            self.closed = True
            raise AssertionError("the peer closed the connection")
        for kind, payload in self.framer.feed(data):
            if kind == "pong":
                self.pongs.append(time.time())
            elif kind == "message":
                message = sipmsg.parse(payload)
                self.log.append((time.time(), "received", message))
                self._queue.append(message)
        return None

    def wait(self, match, timeout: float = WAIT_S, what: str = "message") -> SipMessage:
        deadline = time.monotonic() + timeout
        while True:
            for index, message in enumerate(self._queue):
                if match(message):
                    del self._queue[index]
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout:.1f} s; got "
                                     f"{[m.start_line for _, d, m in self.log if d == 'received']}")
            self._receive(min(left, 0.2))

    def wait_response(self, request: SentRequest, final: bool = True,
                      timeout: float = WAIT_S) -> SipMessage:
        def match(m: SipMessage) -> bool:
            if m.is_request or (final and m.status < 200):
                return False
            vias = m.values("Via")
            return (bool(vias) and sipmsg.header_param(vias[0], "branch") == request.branch
                    and m.value("CSeq") == f"{request.cseq} {request.method}")
        return self.wait(match, timeout, f"response to {request.method}")

    def wait_request(self, method: str, timeout: float = WAIT_S) -> SipMessage:
        return self.wait(lambda m: m.is_request and m.method == method, timeout, method)

    def received(self) -> list[SipMessage]:
        return [m for _, direction, m in self.log if direction == "received"]

    def sent(self) -> list[SipMessage]:
        return [m for _, direction, m in self.log if direction == "sent"]

    # --- requests

    def _via(self, branch: str) -> str:
        return f"SIP/2.0/{self.transport} {LOCALHOST}:{self.local_port};branch={branch}"

    def request(self, method: str, uri: str, headers: list[tuple[str, str]], body: bytes = b"",
                content_type: str = "application/sdp", branch: str | None = None) -> SentRequest:
        branch = branch or _branch()
        all_headers = [("Via", self._via(branch)), ("Max-Forwards", "70"), *headers]
        if body:
            all_headers.append(("Content-Type", content_type))
        message = self._send(render(f"{method} {uri} SIP/2.0", all_headers, body))
        cseq = int(dict((k.lower(), v) for k, v in headers)["cseq"].split()[0])
        return SentRequest(method, uri, branch, cseq, all_headers, message, time.time())

    def invite(self, uri: str, body: bytes = b"", extra: list[tuple[str, str]] = (),
               to_display: str = "Bob Callee") -> SentRequest:
        self.to_uri = uri
        self.cseq += 1
        headers = [("From", self.from_header), ("To", f'"{to_display}" <{uri}>'),
                   ("Call-ID", self.call_id), ("CSeq", f"{self.cseq} INVITE"),
                   ("Contact", self.contact), *extra]
        self._to_display = to_display
        return self.request("INVITE", uri, headers, body)

    def learn_dialog(self, response: SipMessage) -> None:
        """Dialog state from a 2xx: the To tag, the remote target, the route set (the
        Record-Route entries in reverse, RFC 3261 12.1.2)."""
        self.remote_tag = sipmsg.header_param(response.value("To") or "", "tag")
        _, self.remote_target = siprec.name_addr(response.value("Contact") or "")
        self.route_set = list(reversed(response.values("Record-Route")))

    def _dialog_headers(self, cseq: int, method: str) -> list[tuple[str, str]]:
        to = f'"{self._to_display}" <{self.to_uri}>;tag={self.remote_tag}'
        headers = [("Route", entry) for entry in self.route_set]
        return headers + [("From", self.from_header), ("To", to), ("Call-ID", self.call_id),
                          ("CSeq", f"{cseq} {method}")]

    def ack(self, invite: SentRequest, response: SipMessage) -> SentRequest:
        """The ACK of a 2xx, a new transaction along the route set (RFC 3261 13.2.2.4)."""
        self.learn_dialog(response)
        return self.request("ACK", self.remote_target, self._dialog_headers(invite.cseq, "ACK"))

    def request_in_dialog(self, method: str, body: bytes = b"") -> SentRequest:
        self.cseq += 1
        headers = self._dialog_headers(self.cseq, method)
        if method in ("INVITE", "UPDATE"):
            headers.append(("Contact", self.contact))
        return self.request(method, self.remote_target, headers, body)

    def respond(self, request: SipMessage, status: int, reason: str) -> None:
        headers = [("Via", via) for via in request.values("Via")]
        headers += [("From", request.value("From")), ("To", request.value("To")),
                    ("Call-ID", request.call_id), ("CSeq", request.value("CSeq"))]
        self._send(render(f"SIP/2.0 {status} {reason}", headers))

    def ping(self) -> None:
        """A CRLF keep-alive ping (RFC 5626 4.4.1)."""
        self.send_bytes(b"\r\n\r\n")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
