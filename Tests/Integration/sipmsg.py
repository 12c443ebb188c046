"""Just enough SIP parsing to assert on what the tests send and receive.

The parser is deliberately lenient (it reads what SIPp and the proxy produce, and garbage the tests
make on purpose) and separate from the product's parser, so that a bug there cannot hide here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

# RFC 3261 7.3.3 compact forms, for the headers the tests look at.
_COMPACT = {"v": "via", "i": "call-id", "f": "from", "t": "to", "m": "contact", "l": "content-length"}

# Headers whose values may be folded into one line separated by commas (RFC 3261 7.3.1).
_COMMA_LISTS = {"via", "record-route", "route"}


def _canonical(name: str) -> str:
    lowered = name.strip().lower()
    return _COMPACT.get(lowered, lowered)


def split_comma_list(value: str) -> list[str]:
    """Splits a header value at commas that are outside <...> and quoted strings."""
    parts, current, in_angle, in_quote = [], [], False, False
    for char in value:
        if char == '"' and not in_angle:
            in_quote = not in_quote
        elif char == "<" and not in_quote:
            in_angle = True
        elif char == ">" and not in_quote:
            in_angle = False
        if char == "," and not in_angle and not in_quote:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


@dataclass
class SipMessage:
    start_line: str
    headers: list[tuple[str, str]]  # (name as written, value), in order
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return not self.start_line.startswith("SIP/2.0 ")

    @property
    def method(self) -> str:
        assert self.is_request, self.start_line
        return self.start_line.split(" ", 1)[0]

    @property
    def status(self) -> int:
        assert not self.is_request, self.start_line
        return int(self.start_line.split(" ", 2)[1])

    def raw_values(self, name: str) -> list[str]:
        """Every value of a header as written, one per header line."""
        wanted = _canonical(name)
        return [value for header, value in self.headers if _canonical(header) == wanted]

    def values(self, name: str) -> list[str]:
        """Every value of a header; list headers (Via, Record-Route, Route) split at commas."""
        raw = self.raw_values(name)
        if _canonical(name) in _COMMA_LISTS:
            return [part for value in raw for part in split_comma_list(value)]
        return raw

    def value(self, name: str) -> str | None:
        found = self.values(name)
        return found[0] if found else None

    @property
    def cseq_method(self) -> str:
        cseq = self.value("CSeq") or ""
        return cseq.split()[-1] if cseq.split() else ""

    @property
    def call_id(self) -> str | None:
        return self.value("Call-ID")


def parse(data: bytes | str) -> SipMessage:
    """Parses one message; tolerates a missing blank line (a truncated message has no body)."""
    if isinstance(data, str):
        data = data.encode("latin-1")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # continuation line
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip())
        elif ":" in line:
            name, value = line.split(":", 1)
            headers.append((name.strip(), value.strip()))
    return SipMessage(start_line=lines[0].strip(), headers=headers, body=body)


def via_sent_by(via: str) -> tuple[str, str, int | None]:
    """'SIP/2.0/UDP 127.0.0.1:5060;branch=...' -> ('UDP', '127.0.0.1', 5060)."""
    protocol, _, rest = via.strip().partition(" ")
    transport = protocol.rsplit("/", 1)[-1].upper()
    sent_by = rest.split(";", 1)[0].strip()
    host, _, port = sent_by.partition(":")
    return transport, host, int(port) if port else None


def header_param(value: str, name: str) -> str | None:
    """A ;name=value parameter of a header value (Via branch, To tag...), or None."""
    for param in value.split(";")[1:]:
        key, _, param_value = param.partition("=")
        if key.strip().lower() == name.lower():
            return param_value.strip()
    return None


@dataclass
class RouteEntry:
    """One entry of a Record-Route or Route header: <sip:host:port;params>."""

    host: str
    port: int | None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def transport(self) -> str:
        return self.params.get("transport", "udp").lower()


def parse_route_entry(entry: str) -> RouteEntry:
    match = re.search(r"<sips?:([^>]*)>", entry)
    uri = match.group(1) if match else entry.strip().split(":", 1)[-1]
    hostport, *params = uri.split(";")
    hostport = hostport.split("@", 1)[-1]
    host, _, port = hostport.partition(":")
    parsed = {}
    for param in params:
        key, _, value = param.partition("=")
        parsed[key.strip().lower()] = value.strip()
    return RouteEntry(host=host, port=int(port) if port else None, params=parsed)


@dataclass
class TracedMessage:
    """One message from a SIPp -trace_msg file."""

    direction: str  # "received" or "sent"
    transport: str  # "UDP" or "TCP"
    message: SipMessage
    time: float | None = None  # when SIPp logged it (its separator line, local wall clock)


# Not anchored at a line start: SIPp appends "UDP message lost (recv)." notes without a newline.
_TRACE_SEPARATOR = re.compile(r"-{20,} (\d{4}-\d\d-\d\d \S+)\r?\n")
_TRACE_TITLE = re.compile(
    r"^(UDP|TCP) message (received|sent) (?:\[\d+\] bytes :|\(\d+ bytes\):)\r?\n\r?\n")


def read_sipp_trace(path: Path) -> list[TracedMessage]:
    """Reads the messages SIPp logged with -trace_msg, in order."""
    if not path.exists():
        return []
    text = path.read_bytes().decode("latin-1")
    found = []
    separators = list(_TRACE_SEPARATOR.finditer(text))
    for index, separator in enumerate(separators):
        end = separators[index + 1].start() if index + 1 < len(separators) else len(text)
        chunk = text[separator.end():end]
        title = _TRACE_TITLE.match(chunk)
        if not title:
            continue
        found.append(TracedMessage(direction=title.group(2), transport=title.group(1),
                                   message=parse(chunk[title.end():]),
                                   time=_trace_time(separator.group(1))))
    return found


def _trace_time(stamp: str) -> float | None:
    """'2026-11-26 23:22:40.317123' (SIPp's local time) as a Unix time, like time.time()."""
    try:
        return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
    except ValueError:
        return None
