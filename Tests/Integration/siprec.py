"""What the recording tests read: multipart bodies, SDP, RFC 7865 metadata (parsed, and validated
against the RFC schema with xmllint), and the proxy's counters.

Everything here is written for the tests, separate from the product's code, and lenient where
the RFCs allow variation (quoted boundary, CRLF or LF) so that a failure points at a real
difference.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

import harness
import sipmsg
from harness import HarnessError

# ----------------------------------------------------------------------------- counters

# The recording counters of the proxy's SIGUSR1 `counters` log line, by the name the tests use.
# Each may be logged in camelCase or snake_case: names are compared without underscores and case
# (recordingsStarted == recordings_started). Rename here if the proxy's names change.
COUNTER_NAMES = {
    "started": "recordingsStarted",  # recording sessions started
    "active": "recordingsActive",  # gauge: recording sessions now running (0 when calls end)
    "failed": "recordingsFailed",  # every SRS of an instance failed, or failover was skipped
    "failovers": "recordingFailovers",  # INVITEs sent to a next SRS after one failed
    "media_sessions": "mediaSessionsActive",  # gauge: calls anchored at rtpengine (0 when calls end)
}

COUNTERS_TIMEOUT_S = 5.0


def _counter_key(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def parse_counters_line(line: str) -> dict[str, int]:
    """key=value pairs of one log line, keys normalised (no underscores, lower case)."""
    return {_counter_key(key): int(value)
            for key, value in re.findall(r"\b([A-Za-z_][\w-]*)=(-?\d+)\b", line)}


class Counters:
    """One snapshot of the proxy's counters."""

    def __init__(self, values: dict[str, int], line: str):
        self.values = values
        self.line = line

    def __getitem__(self, short: str) -> int:
        name = COUNTER_NAMES.get(short, short)
        key = _counter_key(name)
        assert key in self.values, f"counter {name} not in the proxy's counters line: {self.line}"
        return self.values[key]

    def __repr__(self) -> str:
        return self.line


def read_counters(proxy: harness.ManagedProcess, timeout: float = COUNTERS_TIMEOUT_S) -> Counters:
    """Sends SIGUSR1 to the proxy and returns the `counters` line it logs in response."""
    before = len(_counter_lines(proxy.log_path))
    os.kill(proxy.pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = _counter_lines(proxy.log_path)
        if len(lines) > before:
            return Counters(parse_counters_line(lines[-1]), lines[-1])
        time.sleep(0.05)
    raise HarnessError(f"no `counters` log line within {timeout:.0f} s of SIGUSR1\n{proxy.log_tail()}")


def _counter_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if re.search(r"\]\s*counters\s*$|\bcounters\s*$", line)]


def wait_counters(proxy: harness.ManagedProcess, expected: dict[str, int], timeout: float = 3.0) -> Counters:
    """Reads the counters until every expected value holds (gauges settle after the last BYE)."""
    deadline = time.monotonic() + timeout
    while True:
        counters = read_counters(proxy)
        if all(counters[name] == value for name, value in expected.items()):
            return counters
        if time.monotonic() >= deadline:
            return counters
        time.sleep(0.2)


# ----------------------------------------------------------------------------- multipart

@dataclass
class MimePart:
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def content_type(self) -> str:
        return (self.header("Content-Type") or "text/plain").split(";")[0].strip().lower()

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def boundary_of(content_type: str) -> str:
    """The boundary parameter of a multipart Content-Type (quoted or not)."""
    match = re.search(r';\s*boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', content_type, re.IGNORECASE)
    assert match, f"no boundary parameter in Content-Type: {content_type}"
    return match.group(1) or match.group(2)


def split_multipart(content_type: str, body: bytes) -> list[MimePart]:
    """The parts of a multipart body (RFC 2046 5.1.1): text before the first delimiter and after
    the close delimiter is ignored; the CRLF before each delimiter belongs to the delimiter."""
    boundary = boundary_of(content_type).encode()
    delimiter = re.compile(rb"(?:^|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|$)")
    parts: list[MimePart] = []
    matches = list(delimiter.finditer(body))
    assert matches, f"no --{boundary.decode()} delimiter in the body:\n{body[:300]!r}"
    assert matches[-1].group(1), f"no close delimiter --{boundary.decode()}-- in the body"
    for current, following in zip(matches, matches[1:]):
        if current.group(1):  # close delimiter: nothing after it counts
            break
        parts.append(_parse_part(body[current.end():following.start()]))
    return parts


def _parse_part(raw: bytes) -> MimePart:
    if raw.startswith(b"\r\n") or raw.startswith(b"\n"):  # no headers at all
        return MimePart([], raw.split(b"\n", 1)[1])
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = raw.partition(b"\n\n")
    headers = []
    for line in head.decode("latin-1").replace("\r\n", "\n").split("\n"):
        if line[:1] in (" ", "\t") and headers:
            headers[-1] = (headers[-1][0], headers[-1][1] + " " + line.strip())
        elif ":" in line:
            name, value = line.split(":", 1)
            headers.append((name.strip(), value.strip()))
    return MimePart(headers, body)


@dataclass
class RecordingBody:
    """The SDP and metadata of a request to the SRS: a multipart body, or a lone SDP."""

    sdp: "Sdp | None"
    metadata_xml: bytes | None
    parts: list[MimePart]
    sdp_text: str | None = None


def recording_body(message: sipmsg.SipMessage) -> RecordingBody:
    content_type = message.value("Content-Type") or ""
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == "multipart/mixed":
        parts = split_multipart(content_type, message.body)
        sdp_parts = [p for p in parts if p.content_type == "application/sdp"]
        xml_parts = [p for p in parts if p.content_type == "application/rs-metadata+xml"]
        sdp_text = sdp_parts[0].text if sdp_parts else None
        return RecordingBody(sdp=parse_sdp(sdp_text) if sdp_text else None,
                             metadata_xml=xml_parts[0].body if xml_parts else None,
                             parts=parts, sdp_text=sdp_text)
    if media_type == "application/sdp":
        text = message.body.decode("utf-8")
        return RecordingBody(sdp=parse_sdp(text), metadata_xml=None, parts=[], sdp_text=text)
    return RecordingBody(sdp=None, metadata_xml=None, parts=[])


# ----------------------------------------------------------------------------- SDP

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


@dataclass
class SdpMedia:
    kind: str
    port: int
    protocol: str
    formats: list[str]
    attributes: list[str] = field(default_factory=list)  # "name" or "name:value", in order
    connection: str | None = None  # c= address at media level

    def attribute(self, name: str) -> list[str]:
        found = []
        for attribute in self.attributes:
            key, _, value = attribute.partition(":")
            if key == name:
                found.append(value)
        return found

    @property
    def label(self) -> str | None:
        labels = self.attribute("label")
        return labels[0] if labels else None

    @property
    def directions(self) -> list[str]:
        return [a for a in self.attributes if a in DIRECTIONS]


@dataclass
class Sdp:
    text: str
    origin: str | None
    connection: str | None  # session-level c= address
    session_attributes: list[str]
    media: list[SdpMedia]

    def direction(self, media: SdpMedia) -> str:
        """The media's direction (media level, else session level, else sendrecv)."""
        if media.directions:
            return media.directions[0]
        session = [a for a in self.session_attributes if a in DIRECTIONS]
        return session[0] if session else "sendrecv"

    def address(self, media: SdpMedia) -> str | None:
        return media.connection or self.connection


def parse_sdp(text: str) -> Sdp:
    origin = connection = None
    session_attributes: list[str] = []
    media: list[SdpMedia] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        line = line.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:]
        if kind == "m":
            fields = value.split()
            media.append(SdpMedia(fields[0], int(fields[1].split("/")[0]), fields[2], fields[3:]))
        elif kind == "c":
            address = value.split()[-1].split("/")[0]
            if media:
                media[-1].connection = address
            else:
                connection = address
        elif kind == "o" and not media:
            origin = value
        elif kind == "a":
            (media[-1].attributes if media else session_attributes).append(value)
    return Sdp(text, origin, connection, session_attributes, media)


def audio_address(sdp_text: str) -> tuple[str, int]:
    """(c= address, port) of the first m=audio line."""
    sdp = parse_sdp(sdp_text)
    audio = [m for m in sdp.media if m.kind == "audio"]
    assert audio, f"no m=audio line in:\n{sdp_text}"
    return sdp.address(audio[0]), audio[0].port


# ----------------------------------------------------------------------------- metadata

NS = "urn:ietf:params:xml:ns:recording:1"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def _q(tag: str) -> str:
    return f"{{{NS}}}{tag}"


@dataclass
class NameId:
    aor: str
    name: str | None


@dataclass
class Participant:
    participant_id: str
    name_ids: list[NameId]

    @property
    def aors(self) -> list[str]:
        return [n.aor for n in self.name_ids]


@dataclass
class Stream:
    stream_id: str
    session_id: str | None
    label: str | None


@dataclass
class ParticipantStreams:
    participant_id: str
    send: list[str]
    recv: list[str]


@dataclass
class Metadata:
    root: ElementTree.Element
    datamode: str | None
    groups: list[tuple[str, ElementTree.Element]]
    sessions: list[tuple[str, list[str], ElementTree.Element]]  # (session_id, sipSessionIDs, el)
    participants: list[Participant]
    streams: list[Stream]
    session_recording_assocs: list[ElementTree.Element]
    participant_session_assocs: list[ElementTree.Element]
    participant_stream_assocs: list[ParticipantStreams]

    def participant_by_aor(self, aor: str) -> Participant | None:
        for participant in self.participants:
            if aor in participant.aors:
                return participant
        return None

    def stream_by_label(self, label: str) -> Stream | None:
        for stream in self.streams:
            if stream.label == label:
                return stream
        return None

    def streams_of(self, participant_id: str) -> ParticipantStreams | None:
        for assoc in self.participant_stream_assocs:
            if assoc.participant_id == participant_id:
                return assoc
        return None


def parse_metadata(xml: bytes) -> Metadata:
    root = ElementTree.fromstring(xml)
    assert root.tag == _q("recording"), f"root element {root.tag}, not {{{NS}}}recording"

    def text(element, tag):
        found = element.find(_q(tag))
        return found.text.strip() if found is not None and found.text else None

    participants = []
    for element in root.findall(_q("participant")):
        name_ids = []
        for name_id in element.findall(_q("nameID")):
            name = name_id.find(_q("name"))
            name_ids.append(NameId(name_id.get("aor"),
                                   name.text if name is not None and name.text else None))
        participants.append(Participant(element.get("participant_id"), name_ids))
    return Metadata(
        root=root,
        datamode=text(root, "datamode"),
        groups=[(g.get("group_id"), g) for g in root.findall(_q("group"))],
        sessions=[(s.get("session_id"), [i.text or "" for i in s.findall(_q("sipSessionID"))], s)
                  for s in root.findall(_q("session"))],
        participants=participants,
        streams=[Stream(s.get("stream_id"), s.get("session_id"), text(s, "label"))
                 for s in root.findall(_q("stream"))],
        session_recording_assocs=root.findall(_q("sessionrecordingassoc")),
        participant_session_assocs=root.findall(_q("participantsessionassoc")),
        participant_stream_assocs=[
            ParticipantStreams(a.get("participant_id"),
                               [s.text.strip() for s in a.findall(_q("send")) if s.text],
                               [r.text.strip() for r in a.findall(_q("recv")) if r.text])
            for a in root.findall(_q("participantstreamassoc"))],
    )


# ----------------------------------------------------------------------------- schema

def shared_dir() -> Path:
    """The shared/ folder: $SHARED, else ../shared beside the repository (as the Makefile)."""
    configured = os.environ.get("SHARED")
    return Path(configured) if configured else harness.REPO_ROOT.parent / "shared"


def schema_paths() -> tuple[Path, Path]:
    schema_dir = shared_dir() / "schema"
    xsd, catalog = schema_dir / "rfc7865-recording.xsd", schema_dir / "catalog.xml"
    if not xsd.exists() or not catalog.exists():
        raise HarnessError(f"RFC 7865 schema not found in {schema_dir} (set SHARED)")
    return xsd, catalog


def validate_metadata(xml: bytes, work_dir: Path, name: str = "metadata") -> tuple[bool, str]:
    """Validates against the RFC 7865 schema with xmllint, offline (--nonet, the catalog maps the
    xml.xsd import to its local copy). Returns (valid, xmllint's output)."""
    xsd, catalog = schema_paths()
    document = work_dir / f"{name}.xml"
    index = 2
    while document.exists():
        document = work_dir / f"{name}-{index}.xml"
        index += 1
    document.write_bytes(xml)
    result = subprocess.run(["xmllint", "--nonet", "--noout", "--schema", str(xsd), str(document)],
                            env={**os.environ, "XML_CATALOG_FILES": str(catalog)},
                            capture_output=True, text=True, timeout=30)
    output = (result.stdout + result.stderr).strip()
    if result.returncode == 5 or "failed to compile" in output:
        raise HarnessError(f"xmllint could not compile the schema:\n{output}")
    return result.returncode == 0, output


# ----------------------------------------------------------------------------- URIs

def name_addr(value: str) -> tuple[str | None, str]:
    """'"Alice" <sip:alice@h>;tag=1' -> ('Alice', 'sip:alice@h'); a bare URI has no name."""
    match = re.match(r'\s*(?:"((?:[^"\\]|\\.)*)"|([^<"]*?))\s*<([^>]*)>', value)
    if match:
        display = match.group(1) if match.group(1) is not None else (match.group(2) or "").strip()
        return (display or None), match.group(3)
    return None, value.split(";", 1)[0].strip()
