#!/usr/bin/env bash
# Instructions the proxy executes per call, counted by valgrind's callgrind: deterministic to a
# fraction of a per cent, where CPU time on a shared VM moves by several per cent between runs of
# the same binary. It measures user-space work only (no kernel, no cache misses): use it to compare
# two builds, and the CPU figures of replay-bench.sh for what a call costs.
#
#   Perf/LoadBench/instructions-bench.sh [EDGE_BINARY]
#
# For plain proxying and for recording every call (rtpengine forking to sip-replay's SRS): the
# proxy runs under callgrind with instrumentation off; sip-replay sends WARMUP calls, then
# instrumentation is switched on for CALLS more calls at a low rate (valgrind runs the proxy some
# 50 times slower), and the count is divided by CALLS. Timers of earlier calls that fire in the
# window are counted too, as in a steady state. Prints one line per mode and leaves callgrind's
# files (for callgrind_annotate) in the results folder. Every process is started and stopped by
# its own PID; all traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
. Perf/LoadBench/lib.sh
SHARED=${SHARED:-$(cd .. && pwd)/shared}
CAPTURE=${CAPTURE:-$SHARED/corpus/pcaps/goffinet_uac-uas-scenario-sipp.pcapng}
EDGE=${1:-.build/release/siprec-edge}
REPLAY=${REPLAY:-.build/release/sip-replay}
CALLS=${CALLS:-200}
WARMUP=${WARMUP:-100}
RATE=${RATE:-20}
MODES=${MODES:-"plain recorded"}
PROXY_PORT=5070 CALLEE_PORT=5080 SRS_PORT=5090 NG=127.0.0.1:22700
for tool in valgrind callgrind_control strip; do
	command -v "$tool" >/dev/null || { echo "instructions-bench: $tool not found (make deps-bench)" >&2; exit 2; }
done
for f in "$EDGE" "$REPLAY"; do [ -x "$f" ] || { echo "instructions-bench: $f not built (make release)" >&2; exit 2; }; done
[ -f "$CAPTURE" ] || { echo "instructions-bench: capture $CAPTURE not found" >&2; exit 2; }
OUT=$(mktemp -d /tmp/siprec-instructions-bench.XXXXXX)
echo "instructions-bench: results in $OUT ($WARMUP calls warm-up, $CALLS counted, $RATE calls/s)"

# Valgrind 3.19 cannot read the DWARF 5 the Swift toolchain writes; symbols are enough.
strip --strip-debug -o "$OUT/siprec-edge" "$EDGE"

PIDS=()  # every process started, stopped on exit (stop_started in lib.sh)
trap stop_started EXIT

replay() {  # JSON ARGS...: one sip-replay run; its calls must all complete
	local json=$1
	shift
	"$REPLAY" "$CAPTURE" --target "udp:127.0.0.1:$PROXY_PORT" --callee-port "$CALLEE_PORT" --rate "$RATE" \
		--timeout-ms 20000 --json "$@" >"$json" 2>"$json.err" || {
		echo "instructions-bench: sip-replay failed, see $json and $json.err" >&2
		return 1
	}
}

for mode in $MODES; do
	proxy_args=() replay_args=() engine=
	if [ "$mode" = recorded ]; then
		rtpengine --config-file=none --table=-1 --interface=127.0.0.1 --listen-ng=$NG --port-min=20000 \
			--port-max=38999 --foreground --log-stderr --log-level=3 >"$OUT/rtpengine.log" 2>&1 &
		engine=$!
		PIDS+=("$engine")
		proxy_args=(--srs "sip:srs@127.0.0.1:$SRS_PORT" --rtpengine "udp:$NG")
		replay_args=(--srs-port "$SRS_PORT" --hold-ms 200)
	fi
	valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.$mode" "$OUT/siprec-edge" \
		--listen "udp:127.0.0.1:$PROXY_PORT" --upstream "sip:127.0.0.1:$CALLEE_PORT" --workers 1 --log-level warning \
		"${proxy_args[@]}" >"$OUT/proxy-$mode.log" 2>&1 &
	proxy=$!
	PIDS+=("$proxy")
	wait_port instructions-bench "$PROXY_PORT" "$proxy" 30
	replay "$OUT/warmup-$mode.json" --calls "$WARMUP" "${replay_args[@]}"
	sleep 2
	callgrind_control -i on "$proxy" >/dev/null 2>&1
	replay "$OUT/counted-$mode.json" --calls "$CALLS" "${replay_args[@]}"
	sleep 2
	callgrind_control -i off "$proxy" >/dev/null 2>&1
	callgrind_control -d "$proxy" >/dev/null 2>&1
	sleep 1
	kill "$proxy"
	wait "$proxy" 2>/dev/null || true
	if [ -n "$engine" ]; then
		kill "$engine"
		wait "$engine" 2>/dev/null || true
	fi
	dump=$(ls "$OUT/callgrind.$mode".* | head -1)
	total=$(awk '/^totals:/ {print $2}' "$dump")
	[ -n "$total" ] || { echo "instructions-bench: no count in $dump" >&2; exit 1; }
	awk -v m="$mode" -v t="$total" -v n="$CALLS" 'BEGIN {printf "%-9s %12d instructions per call (%d calls, %d in all)\n", m, t / n, n, t}'
done
