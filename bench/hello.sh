#!/usr/bin/env bash
# Hello-world side by side: maitre vs waitress 3.0.2 vs bjoern, wrk on loopback.
#
#   bash bench/hello.sh                 # 3 rounds of 10 s per server
#   DURATION=5 ROUNDS=1 bash bench/hello.sh
#
# A measurement, not a test: it never fails on a number.  It makes its own venv
# (bench/.venv) with maitre (pip install . from this repo), waitress==3.0.2 and
# bjoern, and installs wrk and libev-dev with apt-get when they are missing.
# Each server runs bench/run_server.py (same app, bench/apps.py:hello) pinned to
# CPU $SERVER_CPU; wrk -t1 -c$CONNECTIONS runs pinned to CPU $CLIENT_CPU.  A server
# that cannot be installed or imported is skipped with the reason.
#
# Environment: DURATION (s, 10), ROUNDS (3), CONNECTIONS (50), THREADS (4, for
# maitre and waitress), BASE_PORT (18081), SERVERS ("maitre waitress bjoern"),
# INSTALL (1; 0 reuses bench/.venv as it is), SERVER_CPU (0), CLIENT_CPU (1).
# Raw results: bench/results/hello-<time>.tsv.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-3}"
CONNECTIONS="${CONNECTIONS:-50}"
THREADS="${THREADS:-4}"
BASE_PORT="${BASE_PORT:-18081}"
SERVERS="${SERVERS:-maitre waitress bjoern}"
INSTALL="${INSTALL:-1}"
SERVER_CPU="${SERVER_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
PYTHON="${PYTHON:-python3}"
export THREADS

VENV="$ROOT/bench/.venv"
VPY="$VENV/bin/python"
RESULTS_DIR="$ROOT/bench/results"
STAMP="$(date +%Y%m%d-%H%M%S)"
TSV="$RESULTS_DIR/hello-$STAMP.tsv"
WORK="$(mktemp -d)"
SERVER_PID=""

cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        sleep 0.5
        kill -9 "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '==> %s\n' "$*"; }

# ---------------------------------------------------------------- tools
APT_UPDATED=0
apt_install() {
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "cannot install $* (need root and apt-get)" >&2
        return 1
    fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! command -v wrk >/dev/null 2>&1; then
    say "installing wrk"
    apt_install wrk
fi
if [ ! -e /usr/include/ev.h ]; then
    say "installing libev-dev (for bjoern)"
    apt_install libev-dev || echo "libev-dev unavailable: bjoern will be skipped" >&2
fi

PIN_SERVER=(taskset -c "$SERVER_CPU")
PIN_CLIENT=(taskset -c "$CLIENT_CPU")
if ! command -v taskset >/dev/null 2>&1 || [ "$(nproc)" -lt 2 ]; then
    echo "warning: no taskset or fewer than 2 CPUs: running unpinned" >&2
    PIN_SERVER=()
    PIN_CLIENT=()
fi

# ---------------------------------------------------------------- venv
if [ ! -x "$VPY" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
if [ "$INSTALL" = 1 ]; then
    say "installing waitress==3.0.2, bjoern, maitre into $VENV"
    "$VPY" -m pip install -q --disable-pip-version-check -U pip
    "$VPY" -m pip install -q --disable-pip-version-check "waitress==3.0.2" ||
        echo "waitress install failed" >&2
    "$VPY" -m pip install -q --disable-pip-version-check bjoern ||
        echo "bjoern install failed" >&2
    # Non-editable release build; on failure remove any older build, so that a
    # stale engine is never measured.
    if ! "$VPY" -m pip install -q --disable-pip-version-check \
        --force-reinstall --no-deps "$ROOT" >"$WORK/maitre-install.log" 2>&1; then
        echo "maitre install failed (last lines of the build log):" >&2
        tail -n 15 "$WORK/maitre-install.log" >&2
        "$VPY" -m pip uninstall -q -y maitre >/dev/null 2>&1 || true
    fi
fi

# ---------------------------------------------------------------- helpers
# fetch PORT: print the body of GET / (exit non-zero if nothing answers).
fetch() {
    "$VPY" - "$1" <<'PY'
import sys
import urllib.request

url = f"http://127.0.0.1:{sys.argv[1]}/"
with urllib.request.urlopen(url, timeout=2) as resp:
    sys.stdout.write(resp.read().decode("latin-1"))
PY
}

# stop_server: TERM the current server by PID, KILL it after 5 s.
stop_server() {
    local pid="$SERVER_PID" i
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    SERVER_PID=""
}

# ---------------------------------------------------------------- which servers
declare -A PORT SKIP
RUN=()
i=0
for server in $SERVERS; do
    PORT[$server]=$((BASE_PORT + i))
    i=$((i + 1))
    if why="$("$VPY" "$ROOT/bench/run_server.py" --check "$server" 2>&1)"; then
        RUN+=("$server")
    else
        SKIP[$server]="$(printf '%s' "$why" | tail -n 1)"
        echo "skipping $server: ${SKIP[$server]}" >&2
    fi
done
if [ "${#RUN[@]}" -eq 0 ]; then
    echo "no server could be imported" >&2
    exit 1
fi

mkdir -p "$RESULTS_DIR"
printf 'round\tserver\treq_per_s\tnon2xx\tsocket_errors\tpeak_rss_kb\n' >"$TSV"

say "hello world: wrk -t1 -c$CONNECTIONS -d${DURATION}s, $ROUNDS round(s)," \
    "servers on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU, threads=$THREADS"

# ---------------------------------------------------------------- rounds
for round in $(seq 1 "$ROUNDS"); do
    for server in "${RUN[@]}"; do
        port="${PORT[$server]}"
        log="$WORK/$server-$round.log"
        if fetch "$port" >/dev/null 2>&1; then
            echo "round $round $server: port $port already answers; skipped" >&2
            continue
        fi
        "${PIN_SERVER[@]}" "$VPY" "$ROOT/bench/run_server.py" "$server" "$port" \
            >"$log" 2>&1 &
        SERVER_PID=$!

        body=""
        for _ in $(seq 1 100); do
            if ! kill -0 "$SERVER_PID" 2>/dev/null; then
                break
            fi
            if body="$(fetch "$port" 2>/dev/null)"; then
                break
            fi
            body=""
            sleep 0.1
        done
        if [ "$body" != "Hello, world!" ]; then
            echo "round $round $server: bad or no answer on port $port" \
                "(got '${body:0:40}'); server log:" >&2
            tail -n 10 "$log" >&2 || true
            stop_server
            continue
        fi

        out="$WORK/wrk-$server-$round.txt"
        "${PIN_CLIENT[@]}" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" \
            "http://127.0.0.1:$port/" >"$out" 2>&1 || true
        rss="$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || true)"
        stop_server

        rps="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
        non2xx="$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")"
        sockerr="$(awk '/Socket errors:/ {
            n = 0
            for (f = 1; f <= NF; f++) if ($f ~ /^[0-9]+,?$/) n += $f + 0
            print n
        }' "$out")"
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$server" "${rps:-0}" \
            "${non2xx:-0}" "${sockerr:-0}" "${rss:-0}" >>"$TSV"
        printf '  round %s  %-9s %12s req/s  non-2xx %s  socket errors %s  peak RSS %s kB\n' \
            "$round" "$server" "${rps:-?}" "${non2xx:-0}" "${sockerr:-0}" "${rss:-?}"
    done
done

# ---------------------------------------------------------------- summary
skipped=""
for server in "${!SKIP[@]}"; do
    skipped+="$server: ${SKIP[$server]}"$'\n'
done
SKIPPED="$skipped" "$VPY" - "$TSV" <<'PY'
import csv
import os
import statistics
import sys

rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
servers = []
for row in rows:
    if row["server"] not in servers:
        servers.append(row["server"])

median = {}
print()
print(
    f"{'server':<10} {'req/s (median)':>15} {'min':>10} {'max':>10} "
    f"{'errors':>8} {'peak RSS MB':>12}  rounds"
)
for server in servers:
    mine = [r for r in rows if r["server"] == server]
    rps = [float(r["req_per_s"]) for r in mine]
    errors = sum(int(r["non2xx"]) + int(r["socket_errors"]) for r in mine)
    rss = max(int(r["peak_rss_kb"]) for r in mine) / 1024
    median[server] = statistics.median(rps)
    print(
        f"{server:<10} {median[server]:>15,.0f} {min(rps):>10,.0f} "
        f"{max(rps):>10,.0f} {errors:>8} {rss:>12.1f}  {len(rps)}"
    )
for line in os.environ.get("SKIPPED", "").splitlines():
    print(f"skipped    {line}")

print()
for other in ("waitress", "bjoern"):
    if median.get("maitre") and median.get(other):
        print(f"maitre/{other}: {median['maitre'] / median[other]:.2f}x")
    else:
        print(f"maitre/{other}: n/a (not both measured)")
print(f"\nraw results: {sys.argv[1]}")
PY
