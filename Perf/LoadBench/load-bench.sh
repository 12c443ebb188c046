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

run() {  # NAME [PROXY_CMD]
	local name=$1 cmd=${2:-}
	RESULTS="$OUT/$name" PROXY_NAME="$name" PROXY_CMD="$cmd" QUIET_WAIT_S=${QUIET_WAIT_S:-20} \
		"$HARNESS" cpu "$RATE" "$SECONDS_PER_RUN" >"$OUT/$name.log" 2>&1 || true
	grep '^STEP' "$OUT/$name.log" | tail -1 | sed "s/^STEP/$name/" >>"$OUT/steps.txt" || echo "$name no-result" >>"$OUT/steps.txt"
}

run kamailio
run siprec-edge-1w "$BINARY --listen udp:127.0.0.1:5070 --upstream sip:127.0.0.1:5080 --workers 1 --log-level warning"
run siprec-edge-2w "$BINARY --listen udp:127.0.0.1:5070 --upstream sip:127.0.0.1:5080 --workers 2 --log-level warning"

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
