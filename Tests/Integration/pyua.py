"""A small SIP user agent over UDP in Python, for the checks of the harness itself: it stands in
for the proxy toward the SIPp SRS scenarios (a fake SRC sending the multipart INVITE), and for a
peer of the SIPp caller or callee when their RTP is checked without a proxy.

One dialog at a time, no proxies in between, RFC 3261 just far enough for those peers:
2xx ACKs on a new branch, non-2xx ACKs and CANCEL on the INVITE's branch, in-dialog requests to
the remote target, responses copied from the request.
"""

from __future__ import annotations

import secrets
import select
import socket
import time
from dataclasses import dataclass, field

import sipmsg
from harness import LOCALHOST
from sipmsg import SipMessage

WAIT_S = 5.0


def _branch() -> str:
    return f"z9hG4bK-py-{secrets.token_hex(6)}"


@dataclass
class SentRequest:
    method: str
    uri: str
    branch: str
    cseq: int
    headers: dict[str, str]
    data: bytes


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    local_uri: str
    remote_uri: str
    remote_target: str
    target_port: int
    remote_tag: str | None = None
    cseq: int = 0
    local_name: str | None = None


@dataclass
class UdpUa:
    """One UDP socket on 127.0.0.1 and what arrived on it."""

    port: int = 0
    contact_params: str = ""
    received: list[tuple[float, SipMessage]] = field(default_factory=list)

    def __post_init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOCALHOST, self.port))
        self.port = self.sock.getsockname()[1]
        self._queue: list[tuple[SipMessage, tuple[str, int]]] = []
        self.dialog: Dialog | None = None

    @property
    def contact(self) -> str:
        return f"<sip:{LOCALHOST}:{self.port}>{self.contact_params}"

    # --- transport

    def _send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, (LOCALHOST, port))

    def _receive(self, timeout: float) -> tuple[SipMessage, tuple[str, int]] | None:
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not ready:
            return None
        try:
            data, source = self.sock.recvfrom(65535)
        except ConnectionRefusedError:
            return None
        if not data.strip():
            return None  # keep-alive
        message = sipmsg.parse(data)
        self.received.append((time.time(), message))
        return message, source

    def wait(self, match, timeout: float = WAIT_S, what: str = "message") -> tuple[SipMessage, tuple[str, int]]:
        """The first queued or arriving message for which match(message) is true; the others
        are queued for later waits."""
        for index, (message, source) in enumerate(self._queue):
            if match(message):
                del self._queue[index]
                return message, source
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            got = self._receive(left)
            if got is None:
                continue
            if match(got[0]):
                return got
            self._queue.append(got)
        raise AssertionError(f"no {what} within {timeout:.1f} s on port {self.port}; got "
                             f"{[m.start_line for _, m in self.received]}")

    def wait_request(self, method: str, timeout: float = WAIT_S) -> tuple[SipMessage, tuple[str, int]]:
        return self.wait(lambda m: m.is_request and m.method == method, timeout, f"{method} request")

    def wait_response(self, request: SentRequest, final: bool = True,
                      timeout: float = WAIT_S) -> SipMessage:
        """The (first final, or first) response to a request we sent (branch and CSeq)."""
        def match(m: SipMessage) -> bool:
            if m.is_request or (final and m.status < 200):
                return False
            via = m.values("Via")
            return (bool(via) and sipmsg.header_param(via[0], "branch") == request.branch
                    and m.value("CSeq") == f"{request.cseq} {request.method}")
        return self.wait(match, timeout, f"response to {request.method}")[0]

    def silent(self, seconds: float) -> list[SipMessage]:
        """Everything that arrives within `seconds` (queued messages included)."""
        found = [m for m, _ in self._queue]
        self._queue.clear()
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            got = self._receive(left)
            if got:
                found.append(got[0])
        return found

    # --- requests

    def _request(self, method: str, uri: str, port: int, headers: dict[str, str], body: bytes,
                 branch: str | None = None) -> SentRequest:
        branch = branch or _branch()
        lines = [f"{method} {uri} SIP/2.0",
                 f"Via: SIP/2.0/UDP {LOCALHOST}:{self.port};branch={branch};rport"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        self._send(data, port)
        cseq = int(headers["CSeq"].split()[0])
        return SentRequest(method, uri, branch, cseq, headers, data)

    def invite(self, uri: str, port: int, body: bytes = b"", content_type: str | None = None,
               from_uri: str | None = None, to_uri: str | None = None,
               extra: dict[str, str] | None = None, from_name: str | None = None) -> SentRequest:
        """Starts a dialog with an INVITE to 127.0.0.1:port."""
        from_uri = from_uri or f"sip:py@{LOCALHOST}:{self.port}"
        to_uri = to_uri or uri
        self.dialog = Dialog(call_id=f"{secrets.token_hex(8)}@{LOCALHOST}",
                             local_tag=secrets.token_hex(4), local_uri=from_uri, remote_uri=to_uri,
                             remote_target=uri, target_port=port, local_name=from_name)
        return self.request_in_dialog("INVITE", body, content_type, extra, uri=uri,
                                      initial=True)

    def request_in_dialog(self, method: str, body: bytes = b"", content_type: str | None = None,
                          extra: dict[str, str] | None = None, uri: str | None = None,
                          initial: bool = False) -> SentRequest:
        dialog = self.dialog
        assert dialog is not None, "no dialog"
        dialog.cseq += 1
        display = f'"{dialog.local_name}" ' if dialog.local_name else ""
        headers = {
            "Max-Forwards": "70",
            "From": f"{display}<{dialog.local_uri}>;tag={dialog.local_tag}",
            "To": f"<{dialog.remote_uri}>" + (f";tag={dialog.remote_tag}"
                                              if dialog.remote_tag and not initial else ""),
            "Call-ID": dialog.call_id,
            "CSeq": f"{dialog.cseq} {method}",
        }
        if method in ("INVITE", "SUBSCRIBE", "REFER"):
            headers["Contact"] = self.contact
        headers.update(extra or {})
        if body:
            headers["Content-Type"] = content_type or "application/sdp"
        return self._request(method, uri or dialog.remote_target, dialog.target_port, headers, body)

    def ack(self, invite: SentRequest, response: SipMessage, body: bytes = b"",
            content_type: str = "application/sdp") -> None:
        """ACK for a final response: 2xx on a new branch to the remote target (and the dialog is
        confirmed), non-2xx on the INVITE's branch to its Request-URI (RFC 3261 17.1.1.3)."""
        dialog = self.dialog
        assert dialog is not None
        if response.status >= 300:
            headers = {"Max-Forwards": "70", "From": invite.headers["From"],
                       "To": response.value("To"), "Call-ID": dialog.call_id,
                       "CSeq": f"{invite.cseq} ACK"}
            self._request("ACK", invite.uri, dialog.target_port, headers, b"", branch=invite.branch)
            return
        self.learn_dialog(response)
        headers = {"Max-Forwards": "70", "From": invite.headers["From"],
                   "To": response.value("To"), "Call-ID": dialog.call_id,
                   "CSeq": f"{invite.cseq} ACK"}
        if body:
            headers["Content-Type"] = content_type
        self._request("ACK", dialog.remote_target, dialog.target_port, headers, body)

    def learn_dialog(self, response: SipMessage) -> None:
        dialog = self.dialog
        dialog.remote_tag = sipmsg.header_param(response.value("To") or "", "tag")
        contact = response.value("Contact")
        if contact:
            _, dialog.remote_target = _uri_of(contact)

    def cancel(self, invite: SentRequest) -> SentRequest:
        dialog = self.dialog
        headers = {"Max-Forwards": "70", "From": invite.headers["From"],
                   "To": invite.headers["To"], "Call-ID": dialog.call_id,
                   "CSeq": f"{invite.cseq} CANCEL"}
        return self._request("CANCEL", invite.uri, dialog.target_port, headers, b"",
                             branch=invite.branch)

    # --- responses

    def respond(self, request: SipMessage, source: tuple[str, int], status: int, reason: str,
                body: bytes = b"", content_type: str = "application/sdp",
                to_tag: str | None = None, contact: str | None = None,
                extra: dict[str, str] | None = None) -> None:
        """A response from this socket; a 2xx to an INVITE names `contact` (default: ours)."""
        to = request.value("To") or ""
        if to_tag and sipmsg.header_param(to, "tag") is None:
            to += f";tag={to_tag}"
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {via}" for via in request.values("Via")]
        lines += [f"From: {request.value('From')}", f"To: {to}",
                  f"Call-ID: {request.value('Call-ID')}", f"CSeq: {request.value('CSeq')}"]
        if request.method in ("INVITE",) and 200 <= status < 300:
            lines.append(f"Contact: {contact or self.contact}")
        lines += [f"{name}: {value}" for name, value in (extra or {}).items()]
        if body:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        self.sock.sendto(data, source)

    def close(self) -> None:
        self.sock.close()


class UdpSink:
    """A UDP socket that never answers and records, in a thread of its own, what arrives and
    when (an SRS that does not answer, or one that must hear nothing)."""

    def __init__(self, port: int = 0):
        import threading
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOCALHOST, port))
        self.port = self.sock.getsockname()[1]
        self.received: list[tuple[float, SipMessage]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="udp-sink", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if ready:
                try:
                    data, _ = self.sock.recvfrom(65535)
                except OSError:
                    continue
                if data.strip():
                    self.received.append((time.time(), sipmsg.parse(data)))

    def messages(self, settle: float = 0.0) -> list[SipMessage]:
        """What arrived so far, after waiting `settle` seconds for stragglers."""
        time.sleep(settle)
        return [message for _, message in list(self.received)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def _uri_of(value: str) -> tuple[str | None, str]:
    start, end = value.find("<"), value.find(">")
    if start >= 0 and end > start:
        return value[:start].strip().strip('"') or None, value[start + 1:end]
    return None, value.split(";", 1)[0].strip()


def simple_sdp(port: int, direction: str = "sendrecv", session: str = "py") -> bytes:
    return ("v=0\r\n"
            f"o=- 1 1 IN IP4 {LOCALHOST}\r\n"
            f"s={session}\r\n"
            f"c=IN IP4 {LOCALHOST}\r\n"
            "t=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\n"
            "a=rtpmap:0 PCMU/8000\r\n"
            f"a={direction}\r\n").encode()
