"""Raw sockets for the tests that need byte-exact requests: malformed messages, loops, sinks."""

from __future__ import annotations

import secrets
import select
import socket
import time

import sipmsg
from harness import LOCALHOST

REPLY_TIMEOUT_S = 2.0  # how long a reply the proxy owes may take
SILENCE_S = 0.5  # how long to listen before concluding that nothing was sent


def new_branch() -> str:
    return f"z9hG4bK-raw-{secrets.token_hex(6)}"


def build_request(method: str, target_port: int, local_port: int, transport: str = "UDP",
                  omit: tuple[str, ...] = (), replace: dict[str, str] | None = None,
                  body: bytes = b"", content_length: str | None = None) -> bytes:
    """A well-formed request from 127.0.0.1:local_port, or one made malformed on purpose by
    leaving out headers, replacing values, or lying in Content-Length."""
    headers = {
        "Via": f"SIP/2.0/{transport} {LOCALHOST}:{local_port};branch={new_branch()}",
        "Max-Forwards": "70",
        "From": f"<sip:raw@{LOCALHOST}:{local_port}>;tag={secrets.token_hex(4)}",
        "To": f"<sip:service@{LOCALHOST}:{target_port}>",
        "Call-ID": f"{secrets.token_hex(8)}@{LOCALHOST}",
        "CSeq": f"1 {method}",
        "Contact": f"<sip:raw@{LOCALHOST}:{local_port};transport={transport.lower()}>",
    }
    headers.update(replace or {})
    lines = [f"{method} sip:service@{LOCALHOST}:{target_port} SIP/2.0"]
    lines += [f"{name}: {value}" for name, value in headers.items() if name not in omit]
    lines.append(f"Content-Length: {content_length if content_length is not None else len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def ack_for(request: sipmsg.SipMessage, response: sipmsg.SipMessage) -> bytes:
    """The ACK for a non-2xx final response: the INVITE's Request-URI, Via, From, Call-ID and
    CSeq number, the response's To (RFC 3261 17.1.1.3)."""
    uri = request.start_line.split(" ")[1]
    cseq_number = request.value("CSeq").split()[0]
    lines = [f"ACK {uri} SIP/2.0",
             f"Via: {request.values('Via')[0]}",
             "Max-Forwards: 70",
             f"From: {request.value('From')}",
             f"To: {response.value('To')}",
             f"Call-ID: {request.value('Call-ID')}",
             f"CSeq: {cseq_number} ACK",
             "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class UdpPeer:
    """A UDP socket on 127.0.0.1 that sends datagrams and collects what comes back."""

    def __init__(self, port: int = 0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOCALHOST, port))
        self.port = self.sock.getsockname()[1]

    def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, (LOCALHOST, port))

    def receive(self, timeout: float = REPLY_TIMEOUT_S) -> bytes | None:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        return self.sock.recvfrom(65535)[0] if ready else None

    def final_response(self, timeout: float = REPLY_TIMEOUT_S) -> sipmsg.SipMessage | None:
        """The first response above 1xx within timeout (provisionals are skipped)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            data = self.receive(left)
            if data is None:
                return None
            message = sipmsg.parse(data)
            if not message.is_request and message.status >= 200:
                return message
        return None

    def silent_for(self, seconds: float = SILENCE_S) -> bytes | None:
        """None if nothing arrives for `seconds`, else the first datagram that did."""
        return self.receive(seconds)

    def close(self) -> None:
        self.sock.close()


class TcpSink:
    """A listening TCP socket standing where the proxy's upstream is, to catch any forwarding."""

    def __init__(self, port: int):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOCALHOST, port))
        self.sock.listen(8)

    def silent_for(self, seconds: float = SILENCE_S) -> bytes | None:
        """None if no connection brings any byte within `seconds`."""
        ready, _, _ = select.select([self.sock], [], [], seconds)
        if not ready:
            return None
        connection, _ = self.sock.accept()
        with connection:
            connection.settimeout(seconds)
            try:
                return connection.recv(65535) or b"(connection without data)"
            except socket.timeout:
                return b"(connection without data)"

    def close(self) -> None:
        self.sock.close()


class TcpPeer:
    """A TCP connection to the proxy."""

    def __init__(self, port: int):
        self.sock = socket.create_connection((LOCALHOST, port), timeout=REPLY_TIMEOUT_S)
        self.local_port = self.sock.getsockname()[1]
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self, timeout: float = REPLY_TIMEOUT_S) -> sipmsg.SipMessage | None:
        """The next final response on the stream (headers and Content-Length body)."""
        deadline = time.monotonic() + timeout
        while True:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if sep:
                message = sipmsg.parse(head + sep)
                length = int(message.value("Content-Length") or 0)
                if len(rest) >= length:
                    self.buffer = rest[length:]
                    if message.is_request or message.status >= 200:
                        return message
                    continue
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                return None
            chunk = self.sock.recv(65535)
            if not chunk:
                return None
            self.buffer += chunk

    def closed_by_peer(self, timeout: float) -> bool:
        """True once the proxy closes (or resets) the connection within timeout; whatever it
        sent before closing is read and discarded."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                return False
            try:
                if not self.sock.recv(65535):
                    return True
            except ConnectionResetError:
                return True
        return False

    def close(self) -> None:
        self.sock.close()
