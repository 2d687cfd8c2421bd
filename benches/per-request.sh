#!/usr/bin/env bash
# What one purchase costs the durable monolith, in counts that do not depend on how busy the
# machine is: instructions, heap allocations, context switches, wake-ups and system calls per
# request. See docs/PERFORMANCE.md ("Where the time goes").
#
#   benches/per-request.sh [path/to/ticketd ...]     # default: target/release/ticketd
#
# Needs wrk, perf (software events and tracepoints; no hardware counters needed) and valgrind.
# Each binary is measured in turn under the same load: wrk, 1 thread, CONNECTIONS connections,
# SECONDS seconds of `POST /api/v1/purchase {"qty": 1}`. Counts are taken from the server's
# process only, between the moment it is ready and the end of the load, and divided by the
# requests wrk completed. WORKERS sets the server's HTTP workers (default 2).
#
# SPLIT=1 measures the split pair instead, at full speed only: CPU time and context switches of
# both processes per purchase, and how many calls vacancy took per purchase (from its /metrics),
# which is what coalescing changes.
set -euo pipefail

CONNECTIONS=${CONNECTIONS:-64}
SECONDS_LOAD=${SECONDS_LOAD:-10}
WORKERS=${WORKERS:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
binaries=("$@")
if [ ${#binaries[@]} -eq 0 ]; then
    binaries=("${CARGO_TARGET_DIR:-$here/target}/release/ticketd")
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/purchase.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"qty": 1}'
wrk.headers["Content-Type"] = "application/json"
EOF

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts `$@` (a ticketd monolith, perhaps under a tool) on $port and waits until it answers.
start() {
    "$@" >"$work/server.log" 2>&1 &
    server=$!
    for _ in $(seq 1 600); do
        if "${binaries[0]}" probe "http://127.0.0.1:$port/ready" --timeout-ms 500 >/dev/null 2>&1; then
            return
        fi
        sleep 0.1
    done
    echo "the server did not become ready" >&2
    exit 1
}

stop() {
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
}

# The requests wrk completed, from its report.
requests() { awk '/requests in/ {print $1}' "$1"; }

per() { awk -v n="$1" -v d="$2" 'BEGIN { printf "%.3f", n / d }'; }

monolith() {
    local bin=$1 data=$2
    echo "$bin" monolith --host 127.0.0.1 --port "$port" --workers "$WORKERS" \
        --store embedded --initial-stock 1000000000 --data-dir "$data" \
        --log-level "warn,ticketd=info,ticketd::access=warn"
}

# The split pair: vacancy on $vport, ticket on $port.
split() {
    local bin=$1 data=$2 vport
    vport=$(free_port)
    "$bin" vacancy --host 127.0.0.1 --port "$vport" --workers "$WORKERS" \
        --initial-stock 1000000000 --data-dir "$data" \
        --log-level "warn,ticketd=info,ticketd::access=warn" >"$work/vacancy.log" 2>&1 &
    vacancy=$!
    port=$(free_port)
    start "$bin" ticket --host 127.0.0.1 --port "$port" --workers "$WORKERS" \
        --vacancy-url "http://127.0.0.1:$vport" --log-level "warn,ticketd=info,ticketd::access=warn"
    vacancy_url="http://127.0.0.1:$vport"
}

# Calls vacancy took, from its request counter.
vacancy_calls() {
    curl -s "$vacancy_url/metrics" |
        awk '/^http_requests_total/ && /route="\/api\/v1\/(events\/\{event\}\/reserve|reservations)"/ { n += $2 } END { print n + 0 }'
}

if [ "${SPLIT:-0}" = 1 ]; then
    for bin in "${binaries[@]}"; do
        echo "## split: $bin"
        data=$(mktemp -d -p "$work")
        split "$bin" "$data"
        perf stat -x, -o "$work/perf.csv" -p "$server,$vacancy" -e task-clock,context-switches \
            -- sleep "$SECONDS_LOAD" &
        perf_pid=$!
        wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_LOAD}s" -s "$work/purchase.lua" \
            "http://127.0.0.1:$port/api/v1/purchase" >"$work/wrk.txt"
        wait "$perf_pid"
        calls=$(vacancy_calls)
        stop
        kill -TERM "$vacancy" 2>/dev/null || true
        wait "$vacancy" 2>/dev/null || true
        n=$(requests "$work/wrk.txt")
        rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
        echo "purchases: $n ($rps req/s, wall clock: depends on machine load)"
        echo "vacancy calls per purchase: $(per "$calls" "$n") ($calls)"
        while IFS=, read -r value _unit event _rest; do
            case "$event" in
                task-clock) echo "cpu µs per purchase, both processes: $(per "$(awk -v v="$value" 'BEGIN { print v * 1000 }')" "$n")" ;;
                "") ;;
                *) echo "$event per purchase: $(per "$value" "$n") ($value)" ;;
            esac
        done < <(grep -v '^#' "$work/perf.csv" | grep -v '^$')
    done
    exit 0
fi

for bin in "${binaries[@]}"; do
    echo "## $bin"
    # 1. Scheduler and system calls, at full speed.
    port=$(free_port)
    data=$(mktemp -d -p "$work")
    # shellcheck disable=SC2046
    start $(monolith "$bin" "$data")
    perf stat -x, -o "$work/perf.csv" -p "$server" \
        -e task-clock,context-switches,cpu-migrations,sched:sched_wakeup,raw_syscalls:sys_enter,syscalls:sys_enter_futex,syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync \
        -- sleep "$SECONDS_LOAD" &
    perf_pid=$!
    wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_LOAD}s" -s "$work/purchase.lua" \
        "http://127.0.0.1:$port/api/v1/purchase" >"$work/wrk.txt"
    wait "$perf_pid"
    stop
    n=$(requests "$work/wrk.txt")
    rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
    echo "requests: $n ($rps req/s, wall clock: depends on machine load)"
    while IFS=, read -r value _unit event _rest; do
        case "$event" in
            task-clock) echo "cpu µs per request: $(per "$(awk -v v="$value" 'BEGIN { print v * 1000 }')" "$n")" ;;
            "" ) ;;
            *) echo "$event per request: $(per "$value" "$n") ($value)" ;;
        esac
    done < <(grep -v '^#' "$work/perf.csv" | grep -v '^$')

    # 2. Instructions, under callgrind: counters zeroed once ready, dumped after the load.
    port=$(free_port)
    data=$(mktemp -d -p "$work")
    # shellcheck disable=SC2046
    start valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.%p" \
        $(monolith "$bin" "$data")
    callgrind_control -z "$server" >/dev/null
    wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_LOAD}s" -s "$work/purchase.lua" \
        "http://127.0.0.1:$port/api/v1/purchase" >"$work/wrk.txt"
    callgrind_control -d "$server" >/dev/null
    stop
    n=$(requests "$work/wrk.txt")
    dump=$(ls "$work"/callgrind.*.1 2>/dev/null | head -1 || true)
    ir=$(awk '/^summary:|^totals:/ {print $2; exit}' "$dump")
    echo "instructions per request: $(per "$ir" "$n") ($n requests under callgrind)"
    # Calls into the allocator, whichever it is: glibc's entry points (SQLite's, and Rust's with
    # the system allocator) and mimalloc's aligned ones (what Rust's global allocator calls).
    calls=$(python3 - "$dump" <<'PY'
import re, sys
names, total, current = {}, 0, None
entry = re.compile(r"^(malloc|calloc|realloc|mi_malloc_aligned|mi_zalloc_aligned|mi_realloc_aligned)(\s|$)")
for line in open(sys.argv[1], errors="replace"):
    if line.startswith("cfn="):
        m = re.match(r"cfn=\((\d+)\)(?: (.*))?", line)
        if m.group(2):
            names[m.group(1)] = m.group(2).strip()
        current = names.get(m.group(1), "")
    elif line.startswith("fn="):
        m = re.match(r"fn=\((\d+)\)(?: (.*))?", line)
        if m and m.group(2):
            names[m.group(1)] = m.group(2).strip()
    elif line.startswith("calls=") and current is not None:
        if entry.match(current):
            total += int(line.split("=")[1].split()[0])
        current = None
print(total)
PY
)
    echo "allocator calls per request: $(per "$calls" "$n") (under callgrind)"
    rm -f "$work"/callgrind.*

    # 3. Heap allocations, under DHAT (which sees only the system allocator's; ALLOCATIONS=0
    # skips this): a run with the load less a run without it.
    if [ "${ALLOCATIONS:-1}" = 0 ]; then
        continue
    fi
    count_blocks() { awk '/Total:/ {gsub(",", "", $6); print $6; exit}' "$1"; }
    port=$(free_port)
    data=$(mktemp -d -p "$work")
    # shellcheck disable=SC2046
    start valgrind --tool=dhat --dhat-out-file=/dev/null $(monolith "$bin" "$data")
    stop
    idle=$(count_blocks "$work/server.log")
    port=$(free_port)
    data=$(mktemp -d -p "$work")
    # shellcheck disable=SC2046
    start valgrind --tool=dhat --dhat-out-file=/dev/null $(monolith "$bin" "$data")
    wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_LOAD}s" -s "$work/purchase.lua" \
        "http://127.0.0.1:$port/api/v1/purchase" >"$work/wrk.txt"
    stop
    n=$(requests "$work/wrk.txt")
    loaded=$(count_blocks "$work/server.log")
    echo "allocations per request: $(per "$((loaded - idle))" "$n") ($n requests under DHAT)"
done
