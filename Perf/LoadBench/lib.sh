# Shell functions the LoadBench scripts share; sourced, it runs nothing.

# wait_port WHO PORT PID [SECONDS]: waits until something listens on udp PORT, at most SECONDS
# (10 by default), or until PID exits; otherwise says so as WHO and fails.
wait_port() {
	local who=$1 port=$2 pid=$3 tenths=$((${4:-10} * 10)) i
	for ((i = 0; i < tenths; i++)); do
		ss -uln "sport = :$port" | grep -q ":$port" && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "$who: nothing listens on udp $port" >&2
	return 1
}

# stop_started: stops every PID in the caller's PIDS array and waits for it (an EXIT trap).
stop_started() {
	local pid
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
