#!/usr/bin/env python3
"""Extract every SIP message from the shared pcap corpus into Tests/Fixtures/corpus/.

Run once by hand (the output is committed):
    python3 Tests/Fixtures/extract_corpus.py [PCAP_DIR] [OUT_DIR]

Plain standard-library parsing of pcap and pcapng: Ethernet (with VLAN tags), Linux cooked (SLL),
raw IP; IPv4 (with fragment reassembly) and IPv6; GRE/ERSPAN and IP-in-IP tunnels; UDP datagrams;
TCP streams reassembled by sequence number (retransmissions dropped, messages split or joined by
Content-Length); SIP over WebSocket (frames unmasked and joined); SCTP DATA chunks. ICMP errors
that quote a SIP datagram are skipped: they carry a truncated copy, not a message. The format of
the output is described in Tests/Fixtures/README.md.
"""
import os
import re
import struct
import sys
from collections import defaultdict

START_LINE = re.compile(rb"(?:SIP/2\.0 \d{3}[ \r\n]|[!-~]+ [!-~]+ SIP/2\.0\r?\n)")
CONTENT_LENGTH = re.compile(rb"\n(?:content-length|l)[ \t]*:[ \t]*(\d+)", re.IGNORECASE)
HEADER_END = re.compile(rb"\r?\n\r?\n")
RESYNC = re.compile(rb"(?m)^(?:SIP/2\.0 \d{3}[ \r\n]|[A-Z]+ [!-~]+ SIP/2\.0\r?\n)")


def read_packets(path):
    """Yield (linktype, timestamp, frame bytes) for each packet of a pcap or pcapng file."""
    data = open(path, "rb").read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
        linktype = struct.unpack(endian + "I", data[20:24])[0] & 0xFFFF
        off = 24
        while off + 16 <= len(data):
            sec, frac, caplen, _ = struct.unpack(endian + "IIII", data[off:off + 16])
            off += 16
            yield linktype, sec + frac / (1e9 if nano else 1e6), data[off:off + caplen]
            off += caplen
        return
    if magic != b"\x0a\x0d\x0d\x0a":
        raise ValueError(f"{path}: not a pcap or pcapng file")
    endian, linktypes, off = "<", [], 0
    while off + 12 <= len(data):
        btype = struct.unpack(endian + "I", data[off:off + 4])[0]
        if btype == 0x0A0D0D0A:
            endian = "<" if data[off + 8:off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            linktypes = []
        blen = struct.unpack(endian + "I", data[off + 4:off + 8])[0]
        body = data[off + 8:off + blen - 4]
        if btype == 1:  # Interface Description Block
            linktypes.append(struct.unpack(endian + "H", body[:2])[0])
        elif btype == 6:  # Enhanced Packet Block
            iface, hi, lo, caplen = struct.unpack(endian + "IIII", body[:16])
            yield linktypes[iface], ((hi << 32) | lo) / 1e6, body[20:20 + caplen]
        elif btype == 3:  # Simple Packet Block
            yield linktypes[0], 0.0, body[4:]
        off += blen


class Extractor:
    def __init__(self):
        self.messages = []  # (timestamp, transport, src, dst, bytes)
        self.fragments = defaultdict(dict)
        self.tcp = defaultdict(list)  # flow -> [(timestamp, seq, payload, syn)]
        self.sctp = defaultdict(bytes)

    # Link layers ---------------------------------------------------------------------------------
    def frame(self, linktype, ts, frame):
        if linktype == 1:
            self.ethernet(ts, frame)
        elif linktype == 113:  # Linux cooked capture v1
            self.ethertype(ts, struct.unpack("!H", frame[14:16])[0], frame[16:])
        elif linktype in (12, 14, 101, 228, 229):  # raw IP
            self.ip(ts, frame)

    def ethernet(self, ts, frame):
        self.ethertype(ts, struct.unpack("!H", frame[12:14])[0], frame[14:])

    def ethertype(self, ts, etype, payload):
        while etype in (0x8100, 0x88A8):  # VLAN tags
            etype, payload = struct.unpack("!H", payload[2:4])[0], payload[4:]
        if etype in (0x0800, 0x86DD):
            self.ip(ts, payload)

    # Network layer -------------------------------------------------------------------------------
    def ip(self, ts, packet):
        if not packet:
            return
        version = packet[0] >> 4
        if version == 4:
            ihl = (packet[0] & 0x0F) * 4
            total = struct.unpack("!H", packet[2:4])[0]
            ident, flags_frag = struct.unpack("!HH", packet[4:8])
            proto = packet[9]
            src, dst = ".".join(map(str, packet[12:16])), ".".join(map(str, packet[16:20]))
            payload = packet[ihl:total]
            more, offset = flags_frag & 0x2000, (flags_frag & 0x1FFF) * 8
            if more or offset:
                key = (src, dst, ident, proto)
                self.fragments[key][offset] = (payload, more)
                payload = self.defragment(key)
                if payload is None:
                    return
            self.transport(ts, proto, src, dst, payload)
        elif version == 6:
            proto, payload = packet[6], packet[40:40 + struct.unpack("!H", packet[4:6])[0]]
            src = "[" + packet[8:24].hex(":", 2) + "]"
            dst = "[" + packet[24:40].hex(":", 2) + "]"
            while proto in (0, 43, 60):  # hop-by-hop, routing, destination options
                proto, payload = payload[0], payload[(payload[1] + 1) * 8:]
            if proto != 44:  # fragmented IPv6 does not occur in the corpus
                self.transport(ts, proto, src, dst, payload)

    def defragment(self, key):
        parts = self.fragments[key]
        data, expected = b"", 0
        for offset in sorted(parts):
            if offset != expected:
                return None
            payload, more = parts[offset]
            data += payload
            expected += len(payload)
            if not more:
                del self.fragments[key]
                return data
        return None

    def transport(self, ts, proto, src, dst, payload):
        if proto == 17:
            sport, dport = struct.unpack("!HH", payload[:4])
            self.datagram(ts, "udp", f"{src}:{sport}", f"{dst}:{dport}", payload[8:])
        elif proto == 6:
            sport, dport, seq = struct.unpack("!HHI", payload[:8])
            offset, flags = (payload[12] >> 4) * 4, payload[13]
            self.tcp[(f"{src}:{sport}", f"{dst}:{dport}")].append((ts, seq, payload[offset:], flags & 0x02))
        elif proto == 132:
            self.sctp_packet(ts, src, dst, payload)
        elif proto == 47:
            self.gre(ts, payload)
        elif proto in (4, 41):  # IP in IP
            self.ip(ts, payload)

    def gre(self, ts, packet):
        flags, etype = struct.unpack("!HH", packet[:4])
        off = 4 + (4 if flags & 0x8000 else 0) + (4 if flags & 0x2000 else 0) + (4 if flags & 0x1000 else 0)
        if etype == 0x88BE:  # ERSPAN type II: 8-byte header, then Ethernet
            self.ethernet(ts, packet[off + 8:])
        elif etype == 0x22EB:  # ERSPAN type III: 12-byte header (+8 with the platform sub-header)
            self.ethernet(ts, packet[off + 12 + (8 if packet[off + 11] & 0x01 else 0):])
        elif etype == 0x6558:  # transparent Ethernet bridging
            self.ethernet(ts, packet[off:])
        elif etype in (0x0800, 0x86DD):
            self.ip(ts, packet[off:])

    # Application framing -------------------------------------------------------------------------
    def datagram(self, ts, transport, src, dst, payload):
        if START_LINE.match(payload):
            self.messages.append((ts, transport, src, dst, payload))

    def sctp_packet(self, ts, src, dst, packet):
        sport, dport = struct.unpack("!HH", packet[:4])
        off = 12
        while off + 4 <= len(packet):
            ctype, cflags, clen = struct.unpack("!BBH", packet[off:off + 4])
            if ctype == 0:  # DATA: TSN, stream id, stream seq, PPID, then user data
                key = (src, sport, dst, dport)
                if cflags & 0x02:  # beginning of a user message
                    self.sctp[key] = b""
                self.sctp[key] += packet[off + 16:off + clen]
                if cflags & 0x01:  # end of it
                    self.datagram(ts, "sctp", f"{src}:{sport}", f"{dst}:{dport}", self.sctp.pop(key))
            off += (clen + 3) & ~3

    def streams(self):
        for (src, dst), segments in self.tcp.items():
            for ts, chunk in reassemble(segments):
                if chunk.startswith(b"GET ") and b"websocket" in chunk.lower():
                    self.websocket(ts, src, dst, chunk)
                elif chunk.startswith(b"HTTP/1.1 101"):
                    self.websocket(ts, src, dst, chunk)
                else:
                    for message in split_stream(chunk):
                        self.messages.append((ts, "tcp", src, dst, message))

    def websocket(self, ts, src, dst, stream):
        end = stream.find(b"\r\n\r\n")
        if end < 0:
            return
        off, pending = end + 4, b""
        while off + 2 <= len(stream):
            b0, b1 = stream[off], stream[off + 1]
            length, off = b1 & 0x7F, off + 2
            if length == 126:
                length, off = struct.unpack("!H", stream[off:off + 2])[0], off + 2
            elif length == 127:
                length, off = struct.unpack("!Q", stream[off:off + 8])[0], off + 8
            mask = stream[off:off + 4] if b1 & 0x80 else None
            off += 4 if mask else 0
            if off + length > len(stream):
                return
            payload = stream[off:off + length]
            off += length
            if mask:
                payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
            if b0 & 0x0F in (0, 1, 2):  # continuation, text, binary
                pending += payload
                if b0 & 0x80:
                    self.datagram(ts, "ws", src, dst, pending)
                    pending = b""


def reassemble(segments):
    """Contiguous byte runs of one TCP direction as (timestamp of first byte, bytes); gaps split runs."""
    segments = [s for s in segments if s[2] or s[3]]
    if not segments:
        return []
    base = next((seq + 1 for _, seq, _, syn in segments if syn), min(seq for _, seq, _, _ in segments))
    ordered = sorted(((seq - base) % 2**32, ts, data) for ts, seq, data, _ in segments if data)
    runs, expected = [], None
    for rel, ts, data in ordered:
        if expected is not None and rel < expected:  # retransmission or overlap
            data = data[expected - rel:]
            rel = expected
            if not data:
                continue
        if expected is None or rel > expected:
            runs.append([ts, bytearray()])
        runs[-1][1] += data
        expected = rel + len(data)
    return [(ts, bytes(data)) for ts, data in runs]


def split_stream(data):
    """SIP messages in one contiguous stream run, framed by Content-Length (RFC 3261 18.3)."""
    off, messages = 0, []
    while off < len(data):
        if not START_LINE.match(data, off):  # the run starts mid-message (late capture start or a gap)
            match = RESYNC.search(data, off + 1)
            if match is None:
                break
            off = match.start()
        end = HEADER_END.search(data, off)
        if end is None:
            break
        cl = CONTENT_LENGTH.search(data, off, end.end())
        total = end.end() + (int(cl.group(1)) if cl else 0)
        if total > len(data):
            break
        messages.append(data[off:total])
        off = total
        while data[off:off + 2] == b"\r\n":  # keep-alives between messages
            off += 2
    return messages


def write_capture(out_dir, stem, messages):
    path = os.path.join(out_dir, stem + ".sipmsgs")
    with open(path, "wb") as f:
        f.write(b"SIPMSGS 1\n")
        for _, transport, src, dst, payload in messages:
            f.write(f"{len(payload)} {transport} {src} {dst}\n".encode())
            f.write(payload)
            f.write(b"\n")
    return path


def main():
    root = os.path.dirname(os.path.abspath(__file__))
    pcap_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "../../../shared/corpus/pcaps")
    out_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "corpus")
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    for name in sorted(os.listdir(pcap_dir)):
        if not (name.endswith(".pcap") or name.endswith(".pcapng")):
            continue
        ex = Extractor()
        for linktype, ts, frame in read_packets(os.path.join(pcap_dir, name)):
            ex.frame(linktype, ts, frame)
        ex.streams()
        messages = sorted(ex.messages, key=lambda m: m[0])
        stem = name.rsplit(".", 1)[0]
        path = write_capture(out_dir, stem, messages)
        transports = sorted({m[1] for m in messages})
        rows.append((stem + ".sipmsgs", name, len(messages), os.path.getsize(path), ",".join(transports)))
    with open(os.path.join(out_dir, "index.tsv"), "w") as f:
        f.write("file\tsource\tmessages\tbytes\ttransports\n")
        for row in rows:
            f.write("\t".join(map(str, row)) + "\n")
    for row in rows:
        print("\t".join(map(str, row)))


if __name__ == "__main__":
    main()
