#!/usr/bin/env python3
"""A minimal SRS over TLS (or TCP) for the load bench: answers every INVITE (initial or re-INVITE)
200 with a recvonly two-stream SDP, every BYE 200, and ignores ACKs and CRLF keep-alives. One
asyncio loop; SIP framed by Content-Length. Counts what it answered and prints it on SIGTERM.

    tls-srs.py --port P [--cert FILE --key FILE] [--rtp-port N]
"""
import argparse
import asyncio
import signal
import ssl
import sys

answered = {"INVITE": 0, "BYE": 0, "other": 0}


def sdp(rtp_port: int) -> bytes:
    lines = ["v=0", "o=srs 1 1 IN IP4 127.0.0.1", "s=srs", "c=IN IP4 127.0.0.1", "t=0 0"]
    for port in (rtp_port, rtp_port + 2):
        lines += [f"m=audio {port} RTP/AVP 0", "a=rtpmap:0 PCMU/8000", "a=recvonly"]
    return ("\r\n".join(lines) + "\r\n").encode()


def response(request: bytes, body: bytes, tag: int, contact: bytes) -> bytes:
    head = request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    method = head[0].split(b" ", 1)[0]
    keep = []
    for line in head[1:]:
        name = line.split(b":", 1)[0].strip().lower()
        if name in (b"via", b"v", b"from", b"f", b"call-id", b"i", b"cseq"):
            keep.append(line)
        elif name in (b"to", b"t"):
            keep.append(line if b"tag=" in line else line + b";tag=srs%d" % tag)
    out = [b"SIP/2.0 200 OK"] + keep
    if method == b"INVITE":
        out += [contact, b"Content-Type: application/sdp"]
    else:
        body = b""
    out.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(out) + b"\r\n\r\n" + body


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes, contact: bytes) -> None:
    buffer = b""
    tag = 0
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            buffer += data
            while True:
                buffer = buffer.lstrip(b"\r\n")  # keep-alives
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    break
                length = 0
                for line in buffer[:end].split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() in (b"content-length", b"l"):
                        length = int(value.strip() or 0)
                if len(buffer) < end + 4 + length:
                    break
                message, buffer = buffer[:end + 4 + length], buffer[end + 4 + length:]
                method = message.split(b" ", 1)[0].decode()
                if method == "ACK" or method.startswith("SIP/"):
                    continue
                tag += 1
                answered[method if method in answered else "other"] += 1
                writer.write(response(message, body, tag, contact))
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--rtp-port", type=int, default=39100)
    args = parser.parse_args()
    context = None
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(args.cert, args.key)
    body = sdp(args.rtp_port)
    contact = b"Contact: <sip:127.0.0.1:%d;transport=%s>" % (args.port, b"tls" if context else b"tcp")
    server = await asyncio.start_server(lambda r, w: serve(r, w, body, contact), "127.0.0.1", args.port, ssl=context)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()
    print(f"answered INVITE={answered['INVITE']} BYE={answered['BYE']} other={answered['other']}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
