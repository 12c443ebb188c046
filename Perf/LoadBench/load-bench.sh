#!/usr/bin/env bash
# SIPp load through siprec-edge and through the Kamailio anchor, on this machine, in one run.
#
#   Perf/LoadBench/load-bench.sh [RATE] [SECONDS]
#
# Each proxy gets the anchor's own harness (../shared/anchors/kamailio/bench.sh, "cpu" mode): a
# warm-up, then RATE calls per second for SECONDS (INVITE/100/180/200/ACK/BYE/200, zero length,
# UDP), CPU-seconds summed over the proxy's processes and threads from /proc, per 1000 calls.
# Every process is started and stopped by its own PID; all traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
RATE=${1:-1000}
SECONDS_PER_RUN=${2:-15}
SHARED=${SHARED:-$(cd .. && pwd)/shared}
HARNESS="$SHARED/anchors/kamailio/bench.sh"
BINARY=${BINARY:-.build/release/siprec-edge}
[ -x "$HARNESS" ] || { echo "load-bench: anchor harness not found at $HARNESS" >&2; exit 2; }
[ -x "$BINARY" ] || { echo "load-bench: $BINARY not built (make release)" >&2; exit 2; }
BINARY=$(cd "$(dirname "$BINARY")" && pwd)/$(basename "$BINARY")
OUT=$(mktemp -d /tmp/siprec-load-bench.XXXXXX)
echo "load-bench: results in $OUT (rate $RATE cps, $SECONDS_PER_RUN s per run)"

TLS_RATE=${TLS_RATE:-300}  # the TLS SRS is a small Python responder: a lower rate for both transports
RUNS=${RUNS:-"kamailio siprec-edge-1w siprec-edge-2w siprec-edge-1w-rec siprec-edge-2w-rec rec-udp-srs rec-tls-srs"}
run() {  # NAME [PROXY_CMD [RATE]]
	local name=$1 cmd=${2:-} rate=${3:-$RATE}
	case " $RUNS " in *" $name "*) ;; *) return 0 ;; esac
	RESULTS="$OUT/$name" PROXY_NAME="$name" PROXY_CMD="$cmd" QUIET_WAIT_S=${QUIET_WAIT_S:-20} \
		"$HARNESS" cpu "$rate" "$SECONDS_PER_RUN" >"$OUT/$name.log" 2>&1 || true
	grep '^STEP' "$OUT/$name.log" | tail -1 | sed "s/^STEP/$name/" >>"$OUT/steps.txt" || echo "$name no-result" >>"$OUT/steps.txt"
}

cpu_ms() {  # sum of se.sum_exec_runtime (ms) over every thread of one PID
	awk '/se.sum_exec_runtime/ {s += $3} END {printf "%d", s}' /proc/"$1"/task/*/sched 2>/dev/null || echo 0
}

run kamailio
run siprec-edge-1w "$BINARY --listen udp:127.0.0.1:5070 --upstream sip:127.0.0.1:5080 --workers 1 --log-level warning"
run siprec-edge-2w "$BINARY --listen udp:127.0.0.1:5070 --upstream sip:127.0.0.1:5080 --workers 2 --log-level warning"

# Every call recorded: rtpengine (userspace, loopback) anchors and forks the media, a SIPp SRS
# (Tests/Integration/scenarios/srs_answer.xml) answers the recording sessions. Both are started
# here by PID, outside the proxy's process tree, so the proxy's CPU is its own; rtpengine's is
# reported beside it (over the whole run, warm-up included). Same rate as the plain runs.
RECORD_NG=127.0.0.1:22600
RECORD_SRS_PORT=5090
rtpengine --config-file=none --table=-1 --interface=127.0.0.1 --listen-ng=$RECORD_NG --port-min=34000 --port-max=37999 \
	--foreground --log-stderr --log-level=3 >"$OUT/rtpengine.log" 2>&1 &
ENGINE_PID=$!
SCENARIO="$PWD/Tests/Integration/scenarios/srs_answer.xml"
(cd "$OUT" && exec sipp -sf "$SCENARIO" -i 127.0.0.1 -p $RECORD_SRS_PORT \
	-key srs_port_a 39000 -key srs_port_b 39002 -nostdin -buff_size 4194304 -max_socket 4096 \
	>"$OUT/srs.screen.log" 2>&1) &
SRS_PID=$!
trap 'kill $ENGINE_PID $SRS_PID 2>/dev/null; wait $ENGINE_PID $SRS_PID 2>/dev/null' EXIT
sleep 1
engine_before=$(cpu_ms $ENGINE_PID)
run siprec-edge-1w-rec "$BINARY --listen udp:127.0.0.1:5070 --upstream sip:127.0.0.1:5080 --workers 1 --log-level warning \
--srs sip:srs@127.0.0.1:$RECORD_SRS_PORT --rtpengine udp:$RECORD_NG"
engine_after=$(cpu_ms $ENGINE_PID)
run siprec-edge-2w-rec "$BINARY --listen udp:127.0.0.1:5070 --upstream sip:127.0.0.1:5080 --workers 2 --log-level warning \
--srs sip:srs@127.0.0.1:$RECORD_SRS_PORT --rtpengine udp:$RECORD_NG"
# The same recorded load with the SRS over UDP (SIPp) and over TLS 1.3 (tls-srs.py, certificate
# from a test CA made here), at TLS_RATE: the cost of TLS toward the recorder.
PKI="$OUT/pki"
mkdir -p "$PKI"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bench CA" \
	-keyout "$PKI/ca.key" -out "$PKI/ca.pem" >/dev/null 2>&1
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=bench SRS" \
	-keyout "$PKI/srs.key" -out "$PKI/srs.csr" >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1\n' >"$PKI/san.ext"
openssl x509 -req -in "$PKI/srs.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -CAcreateserial -days 2 \
	-extfile "$PKI/san.ext" -out "$PKI/srs.pem" >/dev/null 2>&1
RECORD_TLS_PORT=5091
python3 Perf/LoadBench/tls-srs.py --port $RECORD_TLS_PORT --cert "$PKI/srs.pem" --key "$PKI/srs.key" \
	>"$OUT/tls-srs.log" 2>&1 &
TLS_SRS_PID=$!
trap 'kill $ENGINE_PID $SRS_PID $TLS_SRS_PID 2>/dev/null; wait $ENGINE_PID $SRS_PID $TLS_SRS_PID 2>/dev/null' EXIT
sleep 1
run rec-udp-srs "$BINARY --listen udp:127.0.0.1:5070 --upstream sip:127.0.0.1:5080 --workers 1 --log-level warning \
--srs sip:srs@127.0.0.1:$RECORD_SRS_PORT --rtpengine udp:$RECORD_NG" "$TLS_RATE"
run rec-tls-srs "$BINARY --listen udp:127.0.0.1:5070 --upstream sip:127.0.0.1:5080 --workers 1 --log-level warning \
--srs 'sip:127.0.0.1:$RECORD_TLS_PORT;transport=tls' --tls-ca $PKI/ca.pem --rtpengine udp:$RECORD_NG" "$TLS_RATE"
kill $TLS_SRS_PID 2>/dev/null; wait $TLS_SRS_PID 2>/dev/null || true

engine_calls=$((RATE * (${WARMUP_S:-5} + SECONDS_PER_RUN)))
[ $((engine_after - engine_before)) -gt 0 ] && awk -v ms=$((engine_after - engine_before)) -v calls=$engine_calls \
	'BEGIN {printf "rtpengine beside siprec-edge-1w-rec: %.3f CPU-s per 1000 calls (%d ms over %d calls, warm-up included)\n", ms / calls, ms, calls}' \
	>"$OUT/engine.txt"

python3 - "$OUT/steps.txt" <<'PY'
import re, sys
rows = []
for line in open(sys.argv[1]):
    name = line.split()[0]
    fields = dict(re.findall(r"(\S+?)=(\S+)", line))
    rows.append((name, fields))
print()
print(f"{'proxy':<16} {'offered':>8} {'achieved':>9} {'ok':>7} {'failed':>7} {'retrans':>8} {'CPU-s/1000 calls':>17} {'verdict':>8}")
kam = None
for name, f in rows:
    cpu = f.get("kam_cpu_s/1k", "-")
    if name == "kamailio" and cpu != "-":
        kam = float(cpu)
    print(f"{name:<16} {f.get('offered_cps','-'):>8} {f.get('achieved_cps','-'):>9} {f.get('ok','-'):>7} "
          f"{f.get('failed','-'):>7} {f.get('retrans','-'):>8} {cpu:>17} {f.get('verdict','-'):>8}")
if kam:
    for name, f in rows:
        if name != "kamailio" and "kam_cpu_s/1k" in f:
            print(f"{name}: {float(f['kam_cpu_s/1k']) / kam:.2f} x Kamailio's CPU per call")
PY
cat "$OUT/engine.txt" 2>/dev/null || true
echo "(*-rec: every call recorded through rtpengine to a SIPp SRS over UDP; rec-udp-srs and rec-tls-srs: 1 worker at $TLS_RATE cps,"
echo " the SRS over UDP (SIPp) and over TLS 1.3 (Perf/LoadBench/tls-srs.py: $(tail -1 "$OUT/tls-srs.log" 2>/dev/null)))"
