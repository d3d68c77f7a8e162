#!/usr/bin/env bash
# What the access log and the metrics listener cost: hello-world CPU per request of
# maitre with both off, with the access log to a file, with metrics_listen, with
# both; and gunicorn (gthread, 1 worker) without and with its access log to a file.
# Same run, rounds alternating the variants, server pinned to one core and wrk to
# the other (as bench/run.sh); the server's CPU time (utime + stime of its process
# tree) over the wrk run divided by the requests wrk completed.
#
#   DURATION=5 ROUNDS=3 bash bench/investigations/observe.sh
#
# Uses the Python in $PYTHON [.venv/bin/python] with maitre (and gunicorn) installed.
# BASE_PYTHON, if set, is another Python with an earlier maitre build: its hello
# world ("base:off") shows what the always-on counters cost.
# A measurement, never a test: it prints numbers, it does not judge them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
DURATION="${DURATION:-5}"
ROUNDS="${ROUNDS:-3}"
CONNECTIONS="${CONNECTIONS:-50}"
PORT="${PORT:-18400}"
SERVER_CPU="${SERVER_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
VARIANTS="${VARIANTS:-maitre:off maitre:log maitre:metrics maitre:both gunicorn:off gunicorn:log}"
[[ -n "${BASE_PYTHON:-}" ]] && VARIANTS="base:off $VARIANTS"
TICK="$(getconf CLK_TCK)"

tree_ticks() { # utime+stime of PID and its descendants
    local total=0 p stat fields
    for p in $1 $(pgrep -P "$1" 2>/dev/null || true); do
        stat="$(cat "/proc/$p/stat" 2>/dev/null)" || continue
        read -ra fields <<<"${stat##*) }"
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}

printf '%-16s %5s %10s %10s %12s\n' variant round requests req/s cpu_us/req
for round in $(seq 1 "$ROUNDS"); do
    for variant in $VARIANTS; do
        server="${variant%%:*}" mode="${variant##*:}"
        log="$TMP/access-$round-${variant/:/-}.log"
        env=(THREADS=4)
        case "$mode" in
        log) env+=(ACCESS_LOG="$log") ;;
        metrics) env+=(METRICS_LISTEN="127.0.0.1:$((PORT + 1))") ;;
        both) env+=(ACCESS_LOG="$log" METRICS_LISTEN="127.0.0.1:$((PORT + 1))") ;;
        esac
        py="$PYTHON"
        if [[ "$server" == base ]]; then
            py="$BASE_PYTHON" server=maitre
        fi
        env "${env[@]}" taskset -c "$SERVER_CPU" "$py" "$ROOT/bench/run_server.py" \
            "$server" "$PORT" hello >"$TMP/server.out" 2>&1 &
        pid=$!
        for _ in $(seq 1 100); do
            curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
            sleep 0.1
        done
        before="$(tree_ticks "$pid")"
        out="$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" \
            "http://127.0.0.1:$PORT/")"
        after="$(tree_ticks "$pid")"
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        requests="$(awk '/requests in/ {print $1}' <<<"$out")"
        rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
        cpu_us="$(awk -v a="$after" -v b="$before" -v n="$requests" -v t="$TICK" \
            'BEGIN {printf "%.2f", (a - b) * 1e6 / t / n}')"
        lines=""
        [[ -f "$log" ]] && lines=" ($(wc -l <"$log") log lines)"
        printf '%-16s %5s %10s %10s %12s%s\n' "$variant" "$round" "$requests" "$rps" \
            "$cpu_us" "$lines"
    done
done
