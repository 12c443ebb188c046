#!/usr/bin/env bash
# The same replayed traffic through the Kamailio anchor and through siprec-edge, on this machine, in
# one run: sip-replay plays caller, callee and (for recorded runs) the SRS of a capture's calls.
#
#   Perf/LoadBench/replay-bench.sh
#
# For every proxy (Kamailio; siprec-edge with 1 and 2 workers, plain and recording every call;
# and `floor`, sip-floor-relay: the same datagrams relayed on siprec-edge's I/O core with no SIP
# processing, what this machine's kernel and scheduler cost a call before any proxy's own work):
#   1. steady-state CPU: RATE calls/s for WARMUP_S + MEASURE_S seconds; the proxy's CPU (every
#      thread of every process, from the scheduler) is read over the last MEASURE_S seconds only,
#      once state that lingers after a call (RFC 6026's 32 s for siprec-edge, 5 s for Kamailio)
#      is being created and freed at the same pace. ROUNDS rounds, each running every proxy in
#      turn, so that each ratio compares runs minutes apart: on a shared VM one proxy's figure
#      moves by tens of per cent between runs. The summary gives the median and the range, and
#      each round's ratio to that round's Kamailio;
#   2. the highest rate without a failed call: sip-replay --ramp (fixed-rate steps, then one
#      bisection step), once per proxy (not the floor's: a relay's rate says nothing of a proxy's).
# Then memory per active call: a fresh proxy, MEMORY_RATE calls/s held MEMORY_HOLD_MS each
# (MEMORY_RATE x MEMORY_HOLD_MS/1000 = 10,000 calls up at once), proportional set size of heap
# and shared memory (PSS, so Kamailio's shared memory counts once) just before the first call
# ends, minus the idle size
# (siprec-edge without its start-up heap reserve, limits.heap_reserve_mb: 0).
#
# Every process is started and stopped by its own PID; all traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
. Perf/LoadBench/lib.sh
SHARED=${SHARED:-$(cd .. && pwd)/shared}
ANCHOR="$SHARED/anchors/kamailio"
CAPTURE=${CAPTURE:-$SHARED/corpus/pcaps/goffinet_uac-uas-scenario-sipp.pcapng}
EDGE=${EDGE:-.build/release/siprec-edge}
REPLAY=${REPLAY:-.build/release/sip-replay}
FLOOR=${FLOOR:-.build/release/sip-floor-relay}
RATE=${RATE:-1000}
WARMUP_S=${WARMUP_S:-35}
MEASURE_S=${MEASURE_S:-15}
ROUNDS=${ROUNDS:-3}
RAMP_START=${RAMP_START:-1000}
RAMP_FACTOR=${RAMP_FACTOR:-1.5}
RAMP_STEP_S=${RAMP_STEP_S:-5}
RAMP_MAX=${RAMP_MAX:-12000}
REC_HOLD_MS=${REC_HOLD_MS:-1000}
MEMORY_RATE=${MEMORY_RATE:-400}
MEMORY_HOLD_MS=${MEMORY_HOLD_MS:-25000}
RUNS=${RUNS:-"floor kamailio edge-1w edge-2w edge-1w-rec edge-2w-rec memory"}
PROXY_PORT=5070 CALLEE_PORT=5080 SRS_PORT=5090 NG=127.0.0.1:22700
for f in "$EDGE" "$REPLAY" "$FLOOR"; do [ -x "$f" ] || { echo "replay-bench: $f not built (make bench-replay builds it)" >&2; exit 2; }; done
[ -f "$CAPTURE" ] || { echo "replay-bench: capture $CAPTURE not found" >&2; exit 2; }
[ -f "$ANCHOR/kamailio.cfg" ] || { echo "replay-bench: Kamailio anchor not found at $ANCHOR" >&2; exit 2; }
OUT=$(mktemp -d /tmp/siprec-replay-bench.XXXXXX)
echo "replay-bench: results in $OUT ($(basename "$CAPTURE"), $RATE calls/s, CPU over ${MEASURE_S}s after ${WARMUP_S}s, $ROUNDS rounds)"

PIDS=()  # every process started, stopped on exit (stop_started in lib.sh)
trap stop_started EXIT

tree() {  # PID and its descendants
	local c
	echo "$1"
	for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do tree "$c"; done
}
cpu_ms() {  # scheduler CPU time (ms) of every thread of PID's process tree
	local p total=0
	for p in $(tree "$1"); do
		total=$((total + $(awk '/se.sum_exec_runtime/ {s += $3} END {printf "%d", s}' /proc/"$p"/task/*/sched 2>/dev/null || echo 0)))
	done
	echo "$total"
}
pss_kb() {  # proportional set size (KiB) of the heap and shared memory of PID's process tree; file
	# pages (the binary, libraries) are left out: their share moves with whoever else maps them
	local p total=0
	for p in $(tree "$1"); do
		total=$((total + $(awk '/^Pss_(Anon|Shmem):/ {s += $2} END {print s + 0}' /proc/"$p"/smaps_rollup 2>/dev/null || echo 0)))
	done
	echo "$total"
}
stop() {  # PID
	kill "$1" 2>/dev/null || true
	for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

PROXY_PID=
start_proxy() {  # NAME LOG
	local name=$1 log=$2
	case $name in
	kamailio)
		mkdir -p "$OUT/kamailio-run"
		# The anchor's configuration with 1 GB of shared memory: with 256 MB it runs out near 1750 calls/s.
		kamailio -f "$ANCHOR/kamailio.cfg" -m 1024 -M 64 -x tlsf -DD -E -Y "$OUT/kamailio-run" \
			-A "LISTEN_SOCK=udp:127.0.0.1:$PROXY_PORT" -A "UAS_ADDR=\"sip:127.0.0.1:$CALLEE_PORT\"" >"$log" 2>&1 &
		;;
	floor)
		"$FLOOR" --listen "127.0.0.1:$PROXY_PORT" --upstream "127.0.0.1:$CALLEE_PORT" >"$log" 2>&1 &
		;;
	edge-*)
		local workers=${name#edge-}
		workers=${workers%%w*}
		local extra=()
		[[ $name == *-rec ]] && extra=(--srs "sip:srs@127.0.0.1:$SRS_PORT" --rtpengine "udp:$NG")
		# Memory runs map no heap in advance, so the idle size is the proxy's own.
		[ "$CURRENT_KIND" = memory ] && extra+=(--config "$OUT/no-heap-reserve.yaml")
		"$EDGE" --listen "udp:127.0.0.1:$PROXY_PORT" --upstream "sip:127.0.0.1:$CALLEE_PORT" --workers "$workers" \
			--log-level warning "${extra[@]}" >"$log" 2>&1 &
		;;
	esac
	PROXY_PID=$!
	PIDS+=("$PROXY_PID")
	wait_port replay-bench "$PROXY_PORT" "$PROXY_PID"
	sleep 1  # Kamailio forks its workers after binding
}

replay() {  # NAME ARGS...: sip-replay against the proxy, JSON report in $OUT/NAME.json
	local name=$1
	shift
	local srs=()
	# Recorded calls are held REC_HOLD_MS: a call that ends within a millisecond of its answer ends
	# before its recording session starts, and would be counted as recorded without costing one.
	[[ $CURRENT == *-rec ]] && srs=(--srs-port "$SRS_PORT" --hold-ms "$REC_HOLD_MS")
	"$REPLAY" "$CAPTURE" --target "udp:127.0.0.1:$PROXY_PORT" --callee-port "$CALLEE_PORT" "${srs[@]}" \
		--json "$@" >"$OUT/$name.json" 2>"$OUT/$name.err" || true
}

json() {  # FILE KEY...: one value of a JSON report (empty when absent)
	python3 - "$@" <<'EOF'
import json, sys
try:
    value = json.load(open(sys.argv[1]))
    for key in sys.argv[2:]:
        value = value[int(key)] if isinstance(value, list) else value[key]
    print("" if value is None else value)
except Exception:
    print("")
EOF
}

ENGINE_PID=
start_engine() {
	[ -n "$ENGINE_PID" ] && return 0
	rtpengine --config-file=none --table=-1 --interface=127.0.0.1 --listen-ng=$NG --port-min=20000 --port-max=38999 \
		--foreground --log-stderr --log-level=3 >"$OUT/rtpengine.log" 2>&1 &
	ENGINE_PID=$!
	PIDS+=("$ENGINE_PID")
	sleep 1
}

run_steady() {  # NAME ROUND: steady-state CPU, one line in steady.txt
	local name=$1 round=$2
	CURRENT=$name CURRENT_KIND=load
	[[ $name == *-rec ]] && start_engine
	start_proxy "$name" "$OUT/$name-$round.log"
	local engine0=0 engine1=0
	# One long fixed-rate run, CPU read over its last MEASURE_S seconds.
	replay "$name-steady-$round" --rate "$RATE" --duration $((WARMUP_S + MEASURE_S)) &
	local replay_pid=$!
	sleep "$WARMUP_S"
	local c0 c1
	c0=$(cpu_ms "$PROXY_PID")
	[ -n "$ENGINE_PID" ] && engine0=$(cpu_ms "$ENGINE_PID")
	sleep "$MEASURE_S"
	c1=$(cpu_ms "$PROXY_PID")
	[ -n "$ENGINE_PID" ] && engine1=$(cpu_ms "$ENGINE_PID")
	wait "$replay_pid" || true
	stop "$PROXY_PID"
	local calls=$((RATE * MEASURE_S))
	local cpu engine_cpu=- recorded=-
	cpu=$(awk -v a="$c0" -v b="$c1" -v n="$calls" 'BEGIN{printf "%.3f", (b-a)/n}')
	local steady="$OUT/$name-steady-$round.json"
	if [[ $name == *-rec ]]; then
		engine_cpu=$(awk -v a="$engine0" -v b="$engine1" -v n="$calls" 'BEGIN{printf "%.3f", (b-a)/n}')
		# answered/BYE'd sessions, and how many recording problems sip-replay saw (0: a clean run)
		recorded=$(json "$steady" srs sessionsAnswered)/$(json "$steady" srs sessionsEndedByBye)/$(python3 -c \
			'import json, sys; print(len(json.load(open(sys.argv[1])).get("recordingProblems", [])))' "$steady" 2>/dev/null || echo "?")
	fi
	local completed failed retransmissions replay_cpu  # "-" when the report lacks them (a failed replay)
	completed=$(json "$steady" callsCompleted) failed=$(json "$steady" callsFailed)
	retransmissions=$(json "$steady" retransmissions) replay_cpu=$(json "$steady" replayCPUSecondsPer1000Calls)
	printf '%s %s %s %s %s %s %s %s %s\n' "$round" "$name" "$cpu" "${completed:--}" "${failed:--}" \
		"${retransmissions:--}" "$engine_cpu" "$recorded" "${replay_cpu:--}" >>"$OUT/steady.txt"
	sleep 3
}

run_ramp() {  # NAME: the highest zero-failure rate, one line in ramp.txt
	local name=$1
	CURRENT=$name CURRENT_KIND=load
	[[ $name == *-rec ]] && start_engine
	start_proxy "$name" "$OUT/$name-ramp.log"
	replay "$name-ramp" --ramp --ramp-start "$RAMP_START" --ramp-factor "$RAMP_FACTOR" \
		--ramp-step-seconds "$RAMP_STEP_S" --ramp-max "$RAMP_MAX"
	stop "$PROXY_PID"
	local highest
	highest=$(json "$OUT/$name-ramp.json" highestZeroFailureRate)
	printf '%s %s\n' "$name" "${highest:--}" >>"$OUT/ramp.txt"
	sleep 3
}

run_memory() {  # NAME: PSS growth per concurrent call
	local name=$1
	CURRENT=$name CURRENT_KIND=memory
	start_proxy "$name" "$OUT/memory-$name.log"
	sleep 1
	local idle
	idle=$(pss_kb "$PROXY_PID")
	local seconds=$(((MEMORY_HOLD_MS / 1000) + 5))
	replay "memory-$name" --rate "$MEMORY_RATE" --duration "$seconds" --hold-ms "$MEMORY_HOLD_MS" --timeout-ms 60000 &
	local replay_pid=$!
	# Just before the first call's BYE every started call is up: the peak, with nothing freed yet.
	sleep "$(awk -v h="$MEMORY_HOLD_MS" 'BEGIN{printf "%.1f", h/1000 - 0.5}')"
	local peak
	peak=$(pss_kb "$PROXY_PID")
	wait "$replay_pid" || true
	stop "$PROXY_PID"
	local up
	up=$(awk -v r="$MEMORY_RATE" -v h="$MEMORY_HOLD_MS" 'BEGIN{printf "%d", r*(h/1000-0.5)}')
	printf '%s %s %s %s %s %s\n' "$name" "$idle" "$peak" "$up" \
		"$(awk -v a="$idle" -v b="$peak" -v n="$up" 'BEGIN{printf "%.2f", (b-a)/n}')" \
		"$(json "$OUT/memory-$name.json" peakConcurrentCalls)" >>"$OUT/memory.txt"
}

printf 'limits: { heap_reserve_mb: 0 }\n' >"$OUT/no-heap-reserve.yaml"
: >"$OUT/steady.txt"
: >"$OUT/ramp.txt"
: >"$OUT/memory.txt"
PROXIES=()
for name in floor kamailio edge-1w edge-2w edge-1w-rec edge-2w-rec; do
	case " $RUNS " in *" $name "*) PROXIES+=("$name") ;; esac
done
for ((round = 1; round <= ROUNDS; round++)); do
	for name in "${PROXIES[@]}"; do run_steady "$name" "$round"; done
done
for name in "${PROXIES[@]}"; do [ "$name" = floor ] || run_ramp "$name"; done
case " $RUNS " in *" memory "*)
	for name in kamailio edge-1w edge-2w; do run_memory "$name"; done ;;
esac

# ---- summary ----
{
	echo
	echo "machine: $(nproc) CPUs, $(awk '/model name/ {$1=$2=$3=""; print; exit}' /proc/cpuinfo | sed 's/^ *//'), kernel $(uname -r)"
	echo "capture: $(basename "$CAPTURE"); steady state $RATE calls/s, CPU over ${MEASURE_S}s after ${WARMUP_S}s, median of $ROUNDS rounds"
	echo
	python3 - "$OUT/steady.txt" "$OUT/ramp.txt" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
ramp = {k: v for k, v in (line.split()[:2] for line in open(sys.argv[2]) if len(line.split()) >= 2) if v != "-"}
count = lambda text: int(text) if text.isdigit() else 0
names = list(dict.fromkeys(r[1] for r in rows))
cpu = {n: {int(r[0]): float(r[2]) for r in rows if r[1] == n} for n in names}
kam = cpu.get("kamailio", {})
floor = cpu.get("floor", {})
kam_cps = float(ramp.get("kamailio") or 0)

def above_floor(n):
    """Round by round, the proxy's CPU above the floor over Kamailio's above the floor: the ratio
    of what the two proxies' own work costs, without what any relay of these datagrams costs."""
    ratios = [(cpu[n][r] - floor[r]) / (kam[r] - floor[r])
              for r in sorted(cpu[n]) if r in floor and kam.get(r, 0) > floor[r]]
    # Plain calls only: a recorded call's own datagrams (rtpengine, the SRS) have no floor here.
    return "%.2f" % statistics.median(ratios) if ratios and n != "floor" and not n.endswith("-rec") else "-"

print("%-12s %9s %13s %7s %20s %8s %10s %7s %8s %11s %7s %10s  %s" % (
    "proxy", "CPU-s/1k", "range", "x Kam.", "x Kam. per round", "> floor", "completed", "failed", "retrans",
    "0-fail cps", "x Kam.", "rtpengine", "SRS answered/BYE'd/problems per round"))
for n in names:
    values = sorted(cpu[n].values())
    median = statistics.median(values)
    ratios = [cpu[n][r] / kam[r] for r in sorted(cpu[n]) if kam.get(r)]
    mine = [r for r in rows if r[1] == n]
    engine = [float(r[6]) for r in mine if r[6] != "-"]
    cps = float(ramp.get(n) or 0)
    print("%-12s %9.3f %13s %7s %20s %8s %10d %7d %8d %11s %7s %10s  %s" % (
        n, median, "%.3f-%.3f" % (values[0], values[-1]),
        "%.2f" % (median / statistics.median(kam.values())) if kam else "-",
        " ".join("%.2f" % x for x in ratios) or "-", above_floor(n),
        sum(count(r[3]) for r in mine), sum(count(r[4]) for r in mine),
        sum(count(r[5]) for r in mine), ramp.get(n, "-"),
        "%.2f" % (cps / kam_cps) if cps and kam_cps else "-",
        "%.3f" % statistics.median(engine) if engine else "-",
        " ".join(r[7] for r in mine) if mine[0][7] != "-" else "-"))
EOF
	if [ -s "$OUT/memory.txt" ]; then
		echo
		printf '%-10s %12s %14s %10s %18s %10s\n' proxy "idle KB" "at peak KB" "calls up" "KB per active call" "peak (replay)"
		while read -r name idle peak up per peak_replay; do
			printf '%-10s %12s %14s %10s %18s %10s\n' "$name" "$idle" "$peak" "$up" "$per" "$peak_replay"
		done <"$OUT/memory.txt"
	fi
} | tee "$OUT/summary.txt"
