#!/usr/bin/env python3
"""A stand-in for siprec-edge with recording, to check the recording tests themselves: that they
pass against a plausible implementation of the interface they specify, and fail against a faulty
one. Not product code and not a reference: UDP only, loopback only, one call at a time in
practice, one thread, just enough proxying (Via, Record-Route, CANCEL) for the test scenarios.

    SIPREC_EDGE_BIN=Tests/Integration/tools/fake-siprec-edge \
        python3 -m pytest Tests/Integration/test_recording.py

It takes the proxy's flags (--listen, --upstream, --srs, --rtpengine, --skip-failover-codes,
--srs-timeout-ms, --config with a recording section) and logs a `counters` line on SIGUSR1.
FAKE_FAULT=nopause (hold does not pause the fork), swap (metadata labels given to the wrong
party) or nobye (no BYE to the SRS at call end) plants a fault the tests must catch.

TLS and TCP (for test_tls.py): SRS URIs sips:, ;transport=tls and ;transport=tcp over one
connection per SRS (Python's ssl: verification against --tls-ca or the SRS's ca_file, IP SANs,
server_name, client certificates, TLS 1.2-1.3, session resumption; no TLS 1.3 cipher suite
setting: Python cannot), failover on a failed connection or handshake with OpenSSL's reason in
the log, reconnection when a request is due; per-SRS media rtp/sdes (transport-protocol on the
subscribe); --listen tls: with double Record-Route toward a UDP upstream; start-up checks of the
certificate and key. FAKE_FAULT=noverify (SRS certificates accepted unchecked), noreconnect
(requests for a dropped SRS connection are lost) or sdesleak (no transport-protocol on the
subscribe) plants a fault.
"""
import argparse, base64, hashlib, os, re, secrets, select, signal, socket, ssl, sys, time, uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import sipmsg
from rtpengine import NgClient

LOG = sys.stdout
def log(msg): print(f"{datetime.now().isoformat()} fake: {msg}", file=LOG, flush=True)

ap = argparse.ArgumentParser()
ap.add_argument("--listen", action="append", default=[])
ap.add_argument("--upstream")
ap.add_argument("--workers")
ap.add_argument("--log-level")
ap.add_argument("--srs")
ap.add_argument("--rtpengine")
ap.add_argument("--skip-failover-codes")
ap.add_argument("--srs-timeout-ms", type=int, default=5000)
ap.add_argument("--config")
ap.add_argument("--tls-ca")
ap.add_argument("--tls-cert")
ap.add_argument("--tls-key")
ap.add_argument("--tls-ciphers")
ap.add_argument("--tls-ciphersuites")
args = ap.parse_args()
FAULT = os.environ.get("FAKE_FAULT", "")

def fail_start(message):
    print(f"siprec-edge: {message}", file=sys.stderr, flush=True)
    sys.exit(2)

udp_port = tcp_port = tls_port = None
for l in args.listen:
    t, h, p = l.split(":")
    if t == "udp": udp_port = int(p)
    elif t == "tls": tls_port = int(p)
    else: tcp_port = int(p)
up_port = int(args.upstream.split(":")[2].split(";")[0])

rules = []
ng_uri = args.rtpengine
tls_global = {}
SRS_SETTINGS = {}  # SRS URI -> its mapping (tls, media, srtp_suites)
def srs_uris(entries):
    uris = []
    for e in entries if isinstance(entries, list) else [entries]:
        if isinstance(e, dict):
            SRS_SETTINGS[e["uri"]] = e; uris.append(e["uri"])
        else:
            uris += [u.strip() for u in str(e).split(",") if u.strip()]
    return uris
if args.config:
    import yaml
    whole = yaml.safe_load(open(args.config))
    tls_global = whole.get("tls") or {}
    conf = whole.get("recording") or {}
    eng = conf.get("rtpengine")
    ng_uri = eng[0] if isinstance(eng, list) else eng
    rules = conf.get("rules", [])
    for rule in rules:
        for inst in rule["instances"]:
            inst["srs"] = srs_uris(inst["srs"])
if args.srs:
    rules = [{"name": "flag", "match": {}, "instances": [{"name": "default", "srs": srs_uris(args.srs.split(","))}]}]
if args.tls_ca: tls_global["ca_file" if os.path.isfile(args.tls_ca) else "ca_directory"] = args.tls_ca
if args.tls_cert: tls_global["certificate"] = args.tls_cert
if args.tls_key: tls_global["private_key"] = args.tls_key
if args.tls_ciphers: tls_global["ciphers"] = args.tls_ciphers

def check_pair(cert, key):
    for path in (cert, key):
        if path is None: continue
        if not os.access(path, os.R_OK): fail_start(f"{path}: cannot read the file")
    if cert and key:
        try: ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key)
        except ssl.SSLError as e: fail_start(f"{key} does not go with {cert}, or one is not PEM: {e}")
if tls_port and not (tls_global.get("certificate") and tls_global.get("private_key")):
    fail_start("--listen tls: needs --tls-cert and --tls-key")
check_pair(tls_global.get("certificate"), tls_global.get("private_key"))
for settings in SRS_SETTINGS.values():
    t = settings.get("tls") or {}
    check_pair(t.get("certificate"), t.get("private_key"))
ng = NgClient(int(ng_uri.split(":")[2])) if ng_uri else None
skip = re.compile(args.skip_failover_codes) if args.skip_failover_codes else None

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", udp_port))
sock.setsockopt(socket.IPPROTO_IP, 11, 1)
sock.setblocking(False)
tcp = socket.socket(); tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("127.0.0.1", tcp_port)); tcp.listen(5)

C = dict(recordings_started=0, recordings_active=0, recordings_failed=0, recording_failovers=0,
         media_sessions_active=0)
usr1 = []
signal.signal(signal.SIGUSR1, lambda *a: usr1.append(1))
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))

def send(data, port):
    sock.sendto(data, ("127.0.0.1", port))

def render(start, headers, body=b""):
    hs = [(n, v) for n, v in headers if n.lower() != "content-length"]
    lines = [start] + [f"{n}: {v}" for n, v in hs] + [f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

def port_of_uri(uri):
    m = re.search(r"sips?:(?:[^@>]*@)?[\d.]+(?::(\d+))?", uri)
    if m.group(1): return int(m.group(1))
    return 5061 if transport_of(uri) == "tls" else 5060

def transport_of(uri):
    if uri.startswith("sips:"): return "tls"
    m = re.search(r";transport=(\w+)", uri, re.IGNORECASE)
    return m.group(1).lower() if m else "udp"

# ----------------------------------------------------------------------------- streams

class StreamConn:
    def __init__(s, sock, kind, peer_port, key=None):
        s.sock, s.kind, s.peer_port, s.key = sock, kind, peer_port, key
        s.buf = b""

streams = {}  # socket -> StreamConn (SRS connections and edge connections)
srs_pool = {}  # (transport, port) -> StreamConn
tls_sessions = {}  # (port) -> ssl.SSLSession, for resumption

class StreamError(Exception): pass

contexts = {}
def client_context(settings):
    key = repr(sorted(((settings or {}).get("tls") or {}).items()))
    if key not in contexts: contexts[key] = make_client_context(settings)
    return contexts[key]

def make_client_context(settings):
    t = dict(tls_global); t.update((settings or {}).get("tls") or {})
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if t.get("ciphers"): ctx.set_ciphers(t["ciphers"])
    if t.get("verify", True) is False or FAULT == "noverify":
        ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cafile=t.get("ca_file"), capath=t.get("ca_directory"))
    if t.get("certificate"): ctx.load_cert_chain(t["certificate"], t.get("private_key"))
    return ctx, t.get("server_name")

def srs_connection(uri, settings):
    transport, port = transport_of(uri), port_of_uri(uri)
    conn = srs_pool.get((transport, port))
    if conn: return conn
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=2)
    except OSError as e:
        raise StreamError(f"connect to 127.0.0.1:{port}: {e.strerror or e}")
    sock = raw
    if transport == "tls":
        ctx, name = client_context(settings)
        try:
            sock = ctx.wrap_socket(raw, server_hostname=name or "127.0.0.1", session=tls_sessions.get(port))
        except (ssl.SSLError, OSError, ValueError) as e:
            raw.close()
            raise StreamError(f"TLS handshake with 127.0.0.1:{port}: {getattr(e, 'verify_message', None) or e}")
    sock.setblocking(False)
    conn = StreamConn(sock, "srs", port, (transport, port))
    srs_pool[conn.key] = conn; streams[sock] = conn
    log(f"connected to 127.0.0.1:{port} over {transport}" + (f" ({sock.version()}, resumed={sock.session_reused})" if transport == "tls" else ""))
    return conn

def drop_stream(conn, reason):
    log(f"connection to 127.0.0.1:{conn.peer_port} closed: {reason}")
    streams.pop(conn.sock, None)
    if conn.key and srs_pool.get(conn.key) is conn: srs_pool.pop(conn.key)
    try: conn.sock.close()
    except OSError: pass
    for call in list(calls.values()):
        for sess in call.sessions:
            if sess.state == "inviting" and conn.key == (transport_of(sess.srs[sess.idx]), port_of_uri(sess.srs[sess.idx])):
                log(f"recorder failed, trying the next one: srs {sess.srs[sess.idx]} (127.0.0.1:{conn.peer_port}): {reason}")
                attempt_failed(sess, 503)

def stream_send(conn, data):
    conn.sock.setblocking(True)
    try: conn.sock.sendall(data)
    finally: conn.sock.setblocking(False)

def srs_send(data, uri, settings_uri):
    """Sends toward an SRS (its URI, or its Contact in a dialog): UDP, or its connection."""
    if transport_of(uri) == "udp":
        send(data, port_of_uri(uri)); return
    key = (transport_of(uri), port_of_uri(uri))
    if key not in srs_pool and FAULT == "noreconnect" and any(k == key for k in dropped):
        log(f"fault noreconnect: {data.split(b' ')[0].decode()} for 127.0.0.1:{key[1]} lost"); return
    conn = srs_connection(uri, SRS_SETTINGS.get(settings_uri))
    try: stream_send(conn, data)
    except OSError as e:
        drop_stream(conn, str(e)); raise StreamError(str(e))
dropped = set()

def read_stream(conn):
    try:
        data = conn.sock.recv(65536)
        while isinstance(conn.sock, ssl.SSLSocket) and conn.sock.pending():
            data += conn.sock.recv(65536)
    except (ssl.SSLWantReadError, BlockingIOError):
        return
    except (ssl.SSLError, OSError) as e:
        dropped.add(conn.key); drop_stream(conn, str(e)); return
    if not data:
        dropped.add(conn.key); drop_stream(conn, "closed by the peer"); return
    if conn.kind == "srs" and isinstance(conn.sock, ssl.SSLSocket) and conn.sock.session:
        tls_sessions[conn.peer_port] = conn.sock.session
    conn.buf += data
    while True:
        while conn.buf.startswith(b"\r\n\r\n"):
            conn.buf = conn.buf[4:]
            stream_send(conn, b"\r\n")
        conn.buf = conn.buf.lstrip(b"\r\n") if conn.buf.startswith(b"\r\n") and len(conn.buf) > 4 else conn.buf
        end = conn.buf.find(b"\r\n\r\n")
        if end < 0: return
        m = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", conn.buf[:end])
        total = end + 4 + (int(m.group(1)) if m else 0)
        if len(conn.buf) < total: return
        message, conn.buf = conn.buf[:total], conn.buf[total:]
        handle(message, None, conn)

def via_for(uri):
    t = transport_of(uri)
    if t == "udp": return f"SIP/2.0/UDP 127.0.0.1:{udp_port}"
    return f"SIP/2.0/{t.upper()} 127.0.0.1:{tls_port or udp_port}"

def contact_for(uri):
    t = transport_of(uri)
    if uri.startswith("sips:"): return f"<sips:127.0.0.1:{tls_port or udp_port}>;+sip.src"
    if t == "udp": return f"<sip:127.0.0.1:{udp_port}>;+sip.src"
    return f"<sip:127.0.0.1:{udp_port};transport={t}>;+sip.src"

edge_server = None
if tls_port:
    edge_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    edge_ctx.load_cert_chain(tls_global["certificate"], tls_global["private_key"])
    edge_server = socket.socket(); edge_server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    edge_server.bind(("127.0.0.1", tls_port)); edge_server.listen(5)

def edge_accept():
    raw, peer = edge_server.accept()
    raw.settimeout(2)
    try: sock = edge_ctx.wrap_socket(raw, server_side=True)
    except (ssl.SSLError, OSError) as e:
        log(f"edge TLS handshake failed: {e}"); raw.close(); return
    sock.setblocking(False)
    streams[sock] = StreamConn(sock, "edge", peer[1])

def edge_conn(port):
    for conn in streams.values():
        if conn.kind == "edge" and conn.peer_port == port: return conn
    return None

def send_to_via(data, via):
    transport, host, port = sipmsg.via_sent_by(via)
    if transport == "UDP": send(data, port); return
    conn = edge_conn(port)
    if conn: stream_send(conn, data)
    else: log(f"no connection for {via}")

def uri_of(v):
    m = re.search(r"<([^>]*)>", v)
    return m.group(1) if m else v.split(";")[0].strip()

def derived_branch(b):
    return "z9hG4bK-fake-" + hashlib.md5(b.encode()).hexdigest()[:12]

def b64uuid(): return base64.b64encode(uuid.uuid4().bytes).decode()
def now(): return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

def set_body(headers, body, ctype=None):
    hs = [(n, v) for n, v in headers if n.lower() != "content-type"] 
    if ctype: hs.append(("Content-Type", ctype))
    return hs

calls = {}   # call-id -> Call
srs_dialogs = {}  # srs call-id -> Session
timers = []  # (when, fn)

class Call:
    def __init__(s, invite):
        s.call_id = invite.call_id
        s.caller_tag = sipmsg.header_param(invite.value("From"), "tag")
        s.callee_tag = None
        s.invite = invite
        s.sessions = []
        s.ended = False
        s.anchored = False
        s.pending_reinvite = None  # caller's re-INVITE SDP

class Session:
    def __init__(s, call, inst):
        s.call, s.inst = call, inst
        s.srs = list(inst["srs"]); s.idx = 0
        s.session_id = b64uuid(); s.parts = {"caller": b64uuid(), "callee": b64uuid()}
        s.streams = {}
        s.to_tag = None; s.sdp = None; s.labels = {}
        s.state = "idle"; s.call_id = None; s.from_tag = None; s.remote_tag = None
        s.cseq = 0; s.contact = None; s.branch = None; s.provisional = False
        s.paused = False; s.pending = None; s.inv_data = None; s.gen = 0; s.media = None

def headers_of(m): return list(m.headers)

def metadata(sess):
    call = sess.call
    fn, fu = name_addr(call.invite.value("From")); tn, tu = name_addr(call.invite.value("To"))
    sid = sess.session_id; t = now()
    group = sess.inst.get("group")
    x = ['<?xml version="1.0" encoding="UTF-8"?>', '<recording xmlns="urn:ietf:params:xml:ns:recording:1">', "<datamode>complete</datamode>"]
    if group: x.append(f'<group group_id="{group}"><associate-time>{t}</associate-time></group>')
    x.append(f'<session session_id="{sid}"><sipSessionID>{call.call_id}</sipSessionID>' + (f"<group-ref>{group}</group-ref>" if group else "") + "</session>")
    for who, (n, u) in (("caller", (fn, fu)), ("callee", (tn, tu))):
        inner = f"<name>{n}</name>" if n else ""
        x.append(f'<participant participant_id="{sess.parts[who]}"><nameID aor="{u}">{inner}</nameID></participant>')
    for label, who in sess.labels.items():
        sess.streams.setdefault(label, b64uuid())
        x.append(f'<stream stream_id="{sess.streams[label]}" session_id="{sid}"><label>{label}</label></stream>')
    x.append(f'<sessionrecordingassoc session_id="{sid}"><associate-time>{t}</associate-time></sessionrecordingassoc>')
    for who in ("caller", "callee"):
        x.append(f'<participantsessionassoc participant_id="{sess.parts[who]}" session_id="{sid}"><associate-time>{t}</associate-time></participantsessionassoc>')
    for who in ("caller", "callee"):
        sends = "".join(f"<send>{sess.streams[l]}</send>" for l, w in sess.labels.items() if w == who)
        recvs = "".join(f"<recv>{sess.streams[l]}</recv>" for l, w in sess.labels.items() if w != who)
        x.append(f'<participantstreamassoc participant_id="{sess.parts[who]}">{sends}{recvs}</participantstreamassoc>')
    x.append("</recording>")
    return "\r\n".join(x).encode()

def name_addr(v):
    m = re.match(r'\s*(?:"([^"]*)"|([^<"]*?))\s*<([^>]*)>', v)
    return ((m.group(1) or (m.group(2) or "").strip() or None), m.group(3))

BND = "OSS-unique-boundary-42"
def multipart(sdp, xml):
    return (f"--{BND}\r\nContent-Type: application/sdp\r\n\r\n").encode() + sdp.encode() + \
        (f"\r\n--{BND}\r\nContent-Type: application/rs-metadata+xml\r\nContent-Disposition: recording-session\r\n\r\n").encode() + xml + f"\r\n--{BND}--\r\n".encode()

def media_of(sess):
    return (SRS_SETTINGS.get(sess.srs[sess.idx]) or {}).get("media", "rtp")

def subscribe(sess):
    extra = {"to-tag": sess.to_tag} if sess.to_tag else {}
    sess.media = media_of(sess)
    if FAULT != "sdesleak":
        extra["transport-protocol"] = "RTP/SAVP" if sess.media == "sdes" else "RTP/AVP"
    r = ng.request("subscribe request", flags=["all", "siprec"], **{"call-id": sess.call.call_id}, **extra)
    sess.to_tag = r["to-tag"]; sess.sdp = r["sdp"]
    for tm in r["tag-medias"]:
        who = "caller" if tm["tag"] == sess.call.caller_tag else "callee"
        if os.environ.get("FAKE_FAULT") == "swap": who = {"caller": "callee", "callee": "caller"}[who]
        for md in tm["medias"]: sess.labels[str(md["label"])] = who

def srs_request(sess, method, body=b"", ctype=None, extra=()):
    uri = sess.contact if method != "INVITE" or sess.state != "inviting" else sess.srs[sess.idx]
    if method in ("INVITE",) and sess.state == "inviting": uri = sess.srs[sess.idx]
    sess.cseq += 1
    br = "z9hG4bK-src-" + secrets.token_hex(6)
    h = [("Via", f"{via_for(sess.srs[sess.idx])};branch={br}"), ("Max-Forwards", "70"),
         ("From", f"<{sess.inst.get('from_uri', sess.srs[sess.idx])}>;tag={sess.from_tag}"),
         ("To", f"<{sess.inst.get('to_uri', sess.srs[sess.idx])}>" + (f";tag={sess.remote_tag}" if sess.remote_tag else "")),
         ("Call-ID", sess.call_id), ("CSeq", f"{sess.cseq} {method}")]
    if method == "INVITE":
        h.append(("Contact", contact_for(sess.srs[sess.idx])))
        h.append(("Require", "siprec"))
    h += list(extra)
    if body: h.append(("Content-Type", ctype))
    data = render(f"{method} {uri} SIP/2.0", h, body)
    try:
        srs_send(data, uri, sess.srs[sess.idx])
    except StreamError as e:
        if method == "INVITE" and sess.state == "inviting":
            log(f"recorder failed, trying the next one: srs {sess.srs[sess.idx]} (127.0.0.1:{port_of_uri(uri)}): {e}")
            sess.failed_now = True
        else:
            log(f"{method} to {uri} lost: {e}")
    return br, data, sess.cseq

def start_attempt(sess):
    sess.call_id = f"B2B.{secrets.token_hex(6)}"
    srs_dialogs[sess.call_id] = sess
    sess.from_tag = secrets.token_hex(8); sess.remote_tag = None; sess.cseq = 0; sess.provisional = False
    sess.state = "inviting"
    extra = []
    for hl in sess.inst.get("headers", []):
        n, v = hl.split(":", 1)
        v = re.sub(r"\{header:([^}]+)\}", lambda m: sess.call.invite.value(m.group(1)) or "", v.strip())
        extra.append((n.strip(), v))
    if media_of(sess) != sess.media:
        subscribe(sess)
        sess.body = multipart(sess.sdp, metadata(sess))
    sess.body = multipart(sess.sdp, metadata(sess)) if not hasattr(sess, "body") else sess.body
    sess.failed_now = False
    sess.branch, sess.inv_data, sess.inv_cseq = srs_request(sess, "INVITE", sess.body, f"multipart/mixed;boundary={BND}", extra)
    sess.gen += 1; g = sess.gen
    if sess.failed_now:
        timers.append((time.time(), lambda: sess.gen == g and sess.state == "inviting" and attempt_failed(sess, 503)))
        return
    t0 = time.time()
    def retrans(interval=0.5):
        if sess.gen == g and sess.state == "inviting" and not sess.provisional:
            send(sess.inv_data, port_of_uri(sess.srs[sess.idx]))
            timers.append((time.time() + interval * 2, lambda: retrans(min(interval * 2, 4))))
    if transport_of(sess.srs[sess.idx]) == "udp":
        timers.append((time.time() + 0.5, retrans))
    timers.append((t0 + args.srs_timeout_ms / 1000, lambda: sess.gen == g and sess.state == "inviting" and attempt_failed(sess, 408)))

def attempt_failed(sess, code):
    log(f"srs {sess.srs[sess.idx]} failed {code}")
    sess.gen += 1
    if sess.call.ended:
        sess.state = "done"; C["recordings_active"] -= 1; return
    if skip and skip.fullmatch(str(code)) or sess.idx + 1 >= len(sess.srs):
        sess.state = "done"; C["recordings_failed"] += 1; C["recordings_active"] -= 1
        ng.request("unsubscribe", **{"call-id": sess.call.call_id, "to-tag": sess.to_tag}, check=False)
        return
    sess.idx += 1; C["recording_failovers"] += 1
    start_attempt(sess)

def start_recording(call):
    for rule in rules:
        ok = True
        for k, pat in (rule.get("match") or {}).items():
            if k == "headers":
                for hn, hp in pat.items():
                    if not re.search(hp, call.invite.value(hn) or ""): ok = False
            else:
                val = {"request_uri": call.invite.start_line.split()[1], "from": uri_of(call.invite.value("From")),
                       "to": uri_of(call.invite.value("To")), "source": "127.0.0.1"}[k]
                if not re.search(pat, val): ok = False
        if not ok: continue
        for inst in rule["instances"]:
            sess = Session(call, inst); call.sessions.append(sess)
            subscribe(sess)
            C["recordings_started"] += 1; C["recordings_active"] += 1
            start_attempt(sess)
        break

def end_call(call):
    if call.ended: return
    call.ended = True
    for sess in call.sessions:
        if sess.state in ("active",):
            ng.request("unsubscribe", **{"call-id": call.call_id, "to-tag": sess.to_tag}, check=False)
            if os.environ.get("FAKE_FAULT") != "nobye": srs_request(sess, "BYE")
            sess.state = "done"; C["recordings_active"] -= 1
        elif sess.state == "inviting":
            sess.gen += 1
            if sess.provisional:
                h = [("Via", f"{via_for(sess.srs[sess.idx])};branch={sess.branch}"), ("Max-Forwards", "70"),
                     ("From", f"<{sess.inst.get('from_uri', sess.srs[sess.idx])}>;tag={sess.from_tag}"),
                     ("To", f"<{sess.inst.get('to_uri', sess.srs[sess.idx])}>"), ("Call-ID", sess.call_id),
                     ("CSeq", f"{sess.inv_cseq} CANCEL")]
                try: srs_send(render(f"CANCEL {sess.srs[sess.idx]} SIP/2.0", h), sess.srs[sess.idx], sess.srs[sess.idx])
                except StreamError as e: log(f"CANCEL lost: {e}")
            sess.state = "cancelling"; C["recordings_active"] -= 1
    def delete():
        ng.request("delete", **{"call-id": call.call_id, "delete delay": 0}, check=False)
        if call.anchored: C["media_sessions_active"] -= 1; call.anchored = False
    timers.append((time.time() + 0.2, delete))

def update_sessions(call, hold):
    for sess in call.sessions:
        if sess.state != "active": continue
        if hold and not sess.paused:
            if os.environ.get("FAKE_FAULT") != "nopause": ng.request("unsubscribe", **{"call-id": call.call_id, "to-tag": sess.to_tag}, check=False)
            sess.paused = True
            sdp = sess.sdp.replace("a=sendonly", "a=inactive")
            sess.pending = "pause"
        elif not hold:
            subscribe(sess); sess.paused = False; sdp = sess.sdp; sess.pending = "resume"
        else:
            continue
        sess.re_branch, _, sess.re_cseq = srs_request(sess, "INVITE", multipart(sdp, metadata(sess)), f"multipart/mixed;boundary={BND}")

def sdp_dir(body):
    t = body.decode(errors="replace")
    return "sendonly" if "a=sendonly" in t else "inactive" if "a=inactive" in t else "sendrecv"

def ack_srs(sess, resp, cseq):
    h = [("Via", f"{via_for(sess.srs[sess.idx])};branch=z9hG4bK-src-{secrets.token_hex(6)}"), ("Max-Forwards", "70"),
         ("From", f"<{sess.inst.get('from_uri', sess.srs[sess.idx])}>;tag={sess.from_tag}"),
         ("To", resp.value("To")), ("Call-ID", sess.call_id), ("CSeq", f"{cseq} ACK")]
    try: srs_send(render(f"ACK {sess.contact} SIP/2.0", h), sess.contact, sess.srs[sess.idx])
    except StreamError as e: log(f"ACK lost: {e}")

def srs_body_sdp(m):
    ct = (m.value("Content-Type") or "").lower()
    if ct.startswith("application/sdp"): return m.body.decode()
    return None

def on_srs_response(sess, m):
    code = m.status; method = m.cseq_method; cseq = int(m.value("CSeq").split()[0])
    if method == "INVITE" and cseq == getattr(sess, "inv_cseq", -1) and sess.state in ("inviting", "cancelling"):
        if code < 200:
            sess.provisional = True; return
        if code >= 300:
            h = [("Via", f"{via_for(sess.srs[sess.idx])};branch={sess.branch}"), ("Max-Forwards", "70"),
                 ("From", f"<{sess.inst.get('from_uri', sess.srs[sess.idx])}>;tag={sess.from_tag}"),
                 ("To", m.value("To")), ("Call-ID", sess.call_id), ("CSeq", f"{cseq} ACK")]
            try: srs_send(render(f"ACK {sess.srs[sess.idx]} SIP/2.0", h), sess.srs[sess.idx], sess.srs[sess.idx])
            except StreamError as e: log(f"ACK lost: {e}")
            if sess.state == "inviting": attempt_failed(sess, code)
            return
        sess.remote_tag = sipmsg.header_param(m.value("To"), "tag"); sess.contact = uri_of(m.value("Contact"))
        ack_srs(sess, m, cseq)
        if sess.state == "cancelling":
            srs_request(sess, "BYE"); sess.state = "done"; return
        sess.gen += 1
        sess.state = "active"
        ng.request("subscribe answer", sdp=srs_body_sdp(m), flags=["allow transcoding"], **{"call-id": sess.call.call_id, "to-tag": sess.to_tag})
        return
    if method == "INVITE" and code >= 200 and sess.remote_tag:
        ack_srs(sess, m, cseq)
        if code < 300 and sess.pending == "resume":
            ng.request("subscribe answer", sdp=srs_body_sdp(m), flags=["allow transcoding"], **{"call-id": sess.call.call_id, "to-tag": sess.to_tag}, check=False)
        sess.pending = None

def respond(req, code, reason, body=b"", ctype=None, totag=None, contact=False, conn=None):
    h = [("Via", v) for v in req.values("Via")]
    to = req.value("To")
    if totag and "tag=" not in to: to += f";tag={totag}"
    h += [("From", req.value("From")), ("To", to), ("Call-ID", req.call_id), ("CSeq", req.value("CSeq"))]
    if contact: h.append(("Contact", f"<sip:127.0.0.1:{udp_port}>;+sip.src"))
    if body: h.append(("Content-Type", ctype))
    v = req.values("Via")[0]
    conn = conn or CURRENT_CONN
    if conn is not None: stream_send(conn, render(f"SIP/2.0 {code} {reason}", h, body)); return
    _, host, port = sipmsg.via_sent_by(v)
    send(render(f"SIP/2.0 {code} {reason}", h, body), port)

def on_srs_request(sess, m):
    meth = m.method
    if meth == "ACK":
        sdp = m.body.decode() if m.body else None
        if sdp: ng.request("subscribe answer", sdp=sdp, flags=["allow transcoding"], **{"call-id": sess.call.call_id, "to-tag": sess.to_tag}, check=False)
        return
    if meth == "BYE":
        respond(m, 200, "OK")
        if sess.state == "active":
            ng.request("unsubscribe", **{"call-id": sess.call.call_id, "to-tag": sess.to_tag}, check=False)
            sess.state = "done"; C["recordings_active"] -= 1
        return
    if meth == "INVITE":
        if m.body:
            ng.request("subscribe answer", sdp=m.body.decode(), flags=["allow transcoding"], **{"call-id": sess.call.call_id, "to-tag": sess.to_tag}, check=False)
        subscribe(sess)
        respond(m, 200, "OK", sess.sdp.encode(), "application/sdp", contact=True)
        return
    respond(m, 200, "OK")

CURRENT_CONN = None

def forward_request(m, src):
    meth = m.method
    vias = m.values("Via")
    top = sipmsg.header_param(vias[0], "branch")
    key = top if meth not in ("CANCEL",) else top
    br = derived_branch(top + ("" if meth in ("INVITE", "CANCEL") or (meth == "ACK") else meth))
    if meth == "ACK": br = derived_branch(top)  # non-2xx ACK shares the INVITE's branch
    to_tls_caller = transport_of(m.start_line.split()[1]) == "tls" and not (meth == "INVITE" and not sipmsg.header_param(m.value("To") or "", "tag"))
    headers = [("Via", f"SIP/2.0/TLS 127.0.0.1:{tls_port};branch={br}" if to_tls_caller else f"SIP/2.0/UDP 127.0.0.1:{udp_port};branch={br}")]
    body = m.body
    call = calls.get(m.call_id)
    ftag = sipmsg.header_param(m.value("From"), "tag")
    to_tag = sipmsg.header_param(m.value("To") or "", "tag")
    initial = meth == "INVITE" and not to_tag
    if initial and m.call_id not in calls:
        call = calls[m.call_id] = Call(m)
    for n, v in m.headers:
        ln = n.lower()
        if ln == "max-forwards": v = str(int(v) - 1)
        if ln == "route": continue
        headers.append((n, v))
    if initial:
        headers.insert(1 + len(vias), ("Record-Route", f"<sip:127.0.0.1:{udp_port};lr>"))
        if CURRENT_CONN is not None:
            headers.insert(2 + len(vias), ("Record-Route", f"<sip:127.0.0.1:{tls_port};transport=tls;lr>"))
            respond(m, 100, "Trying")
    if meth == "INVITE" and body and call and ng:
        tag = ftag
        if initial:
            r = ng.request("offer", sdp=body.decode(), replace=["origin", "session-connection"], **{"call-id": call.call_id, "from-tag": ftag})
            if not call.anchored: call.anchored = True; C["media_sessions_active"] += 1
        else:
            r = ng.request("offer", sdp=body.decode(), replace=["origin", "session-connection"], **{"call-id": call.call_id, "from-tag": ftag, "to-tag": to_tag})
            call.pending_reinvite = sdp_dir(body)
        body = r["sdp"].encode()
    if initial or (meth == "ACK" and call and call.callee_tag is None):
        dest = up_port
    else:
        dest = port_of_uri(m.start_line.split()[1])
    if meth == "CANCEL":
        respond(m, 200, "OK")
        dest = up_port
        if call: end_call(call)
    if meth == "BYE" and call:
        end_call(call)
    if to_tls_caller:
        conn = edge_conn(dest)
        if conn: stream_send(conn, render(m.start_line, headers, body))
        return
    send(render(m.start_line, headers, body), dest)

def forward_response(m):
    vias = m.values("Via")
    if m.cseq_method == "CANCEL":
        return
    rest = vias[1:]
    call = calls.get(m.call_id)
    body = m.body
    if call and m.cseq_method == "INVITE" and 200 <= m.status < 300 and body and ng:
        ftag = call.caller_tag; ttag = sipmsg.header_param(m.value("To"), "tag")
        initial = call.callee_tag is None
        call.callee_tag = ttag
        r = ng.request("answer", sdp=body.decode(), replace=["origin", "session-connection"], **{"call-id": call.call_id, "from-tag": ftag, "to-tag": ttag}, check=False)
        if r.get("sdp"): body = r["sdp"].encode()
        if initial and not call.sessions and not call.ended:
            try: start_recording(call)
            except Exception as e: log(f"recording failed to start {e}")
        elif not initial and call.pending_reinvite:
            d = call.pending_reinvite; call.pending_reinvite = None
            update_sessions(call, d in ("sendonly", "inactive"))
    if call and m.cseq_method == "INVITE" and m.status >= 300 and call.callee_tag is None:
        end_call(call)
    headers = [(n, v) for n, v in m.headers if n.lower() != "via"]
    headers = [("Via", v) for v in rest] + headers
    send_to_via(render(m.start_line, headers, body), rest[0])

def handle(data, src, conn=None):
    global CURRENT_CONN
    CURRENT_CONN = conn
    m = sipmsg.parse(data)
    if not m.start_line: return
    sess = srs_dialogs.get(m.call_id)
    if sess:
        if m.is_request: on_srs_request(sess, m)
        else: on_srs_response(sess, m)
        return
    if m.is_request: forward_request(m, src)
    else:
        if sipmsg.via_sent_by(m.values("Via")[0])[2] not in (udp_port, tls_port): return
        forward_response(m)

log("listening")
while not stop:
    if usr1:
        usr1.clear()
        log(" ".join(f"{k}={v}" for k, v in C.items()) + " [siprec_edge] counters")
    timeout = 0.05
    try:
        r, _, _ = select.select([sock] + list(streams) + ([edge_server] if edge_server else []), [], [], timeout)
    except InterruptedError:
        continue
    for ready in r:
        if ready is sock: continue
        try:
            if ready is edge_server: edge_accept()
            elif ready in streams: read_stream(streams[ready])
        except Exception:
            import traceback; traceback.print_exc(file=LOG)
    if sock in r:
        try:
            data, src = sock.recvfrom(65535)
            handle(data, src)
        except BlockingIOError:
            pass
        except ConnectionRefusedError:
            for call in calls.values():
                for sess in call.sessions:
                    if sess.state == "inviting": attempt_failed(sess, 503)
        except Exception as e:
            import traceback; traceback.print_exc(file=LOG)
    nowt = time.time()
    due = [t for t in timers if t[0] <= nowt]
    for t in due:
        timers.remove(t)
        try: t[1]()
        except Exception:
            import traceback; traceback.print_exc(file=LOG)
log("stopped")
