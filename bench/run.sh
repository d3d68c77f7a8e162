#!/usr/bin/env bash
# maitre beside the other WSGI servers, one core each, one run.  See bench/README.md.
#
#   bash bench/run.sh                                  # everything: 3 rounds of 10 s
#   DURATION=2 ROUNDS=1 SCENARIOS=hello,pipeline bash bench/run.sh
#
# A measurement, not a test: it never fails on a number, and a server that cannot
# be installed, started or that answers a scenario wrongly is reported as such
# ("fails: reason") while the run goes on.  It makes its own venv (bench/.venv)
# with maitre (a release build of this repo), waitress 3.0.2, bjoern, gunicorn,
# granian, pyruvate, Flask and Django, and installs wrk and libev-dev with apt-get when
# they are missing.
#
# Every run: the server (bench/run_server.py SERVER PORT APP) pinned to CPU
# $SERVER_CPU, its answer checked by bench/check.py, then `wrk -t1` pinned to CPU
# $CLIENT_CPU for $DURATION s, peak RSS (VmHWM, summed over the server's
# processes) read before the server is stopped by PID.  Around the wrk run it also
# reads the server's CPU time (summed over its processes) and how busy the client's
# core was.  Rounds alternate the servers; the table shows the median of the rounds.
#
# Environment (defaults in brackets):
#   SCENARIOS    comma- or space-separated subset of
#                hello,flask,jinja,json,django,big,stream,file,upload,
#                pipeline,slow,idle  [all]
#   SERVERS      maitre waitress bjoern gunicorn granian pyruvate       [all]
#   DURATION [10] s per wrk run     ROUNDS [3]     THREADS [4] app threads
#   CONNECTIONS [50]  BIG_CONNECTIONS [8] (file, upload)  SLOW_CONNECTIONS [100]
#   IDLE_CONNECTIONS [2000]  PIPELINE_DEPTH [16]  FILE_MIB [100]
#   WRK_TIMEOUT [30s]  BASE_PORT [18100]  SERVER_CPU [0]  CLIENT_CPU [1]
#   INSTALL [1]  (0 reuses bench/.venv as it is)     PYTHON [python3]
#   WORKERS [1]  worker processes (maitre, gunicorn, granian, bjoern); with more
#                than 1, each run's note gives how the server's CPU time split
#                over its processes ("cpu split"), i.e. how evenly they served
# Results: bench/results/bench-<time>.{txt,tsv,meta,md} (the .txt is this output)
# and bench-<time>.logs/ (each run's wrk output and server log).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
cd "$ROOT"

ALL_SCENARIOS="hello flask jinja json django big stream file upload pipeline slow idle"
ALL_SERVERS="maitre waitress bjoern gunicorn granian pyruvate"
SCENARIOS="${SCENARIOS:-$ALL_SCENARIOS}"
SCENARIOS="${SCENARIOS//,/ }"
SERVERS="${SERVERS:-$ALL_SERVERS}"
SERVERS="${SERVERS//,/ }"
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-3}"
THREADS="${THREADS:-4}"
CONNECTIONS="${CONNECTIONS:-50}"
BIG_CONNECTIONS="${BIG_CONNECTIONS:-8}"
SLOW_CONNECTIONS="${SLOW_CONNECTIONS:-100}"
IDLE_CONNECTIONS="${IDLE_CONNECTIONS:-2000}"
PIPELINE_DEPTH="${PIPELINE_DEPTH:-16}"
FILE_MIB="${FILE_MIB:-100}"
WRK_TIMEOUT="${WRK_TIMEOUT:-30s}"
BASE_PORT="${BASE_PORT:-18100}"
SERVER_CPU="${SERVER_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
INSTALL="${INSTALL:-1}"
WORKERS="${WORKERS:-1}"
PYTHON="${PYTHON:-python3}"

for scenario in $SCENARIOS; do
    case " $ALL_SCENARIOS " in
    *" $scenario "*) ;;
    *)
        echo "unknown scenario '$scenario'; expected some of: $ALL_SCENARIOS" >&2
        exit 2
        ;;
    esac
done
for server in $SERVERS; do
    case " $ALL_SERVERS " in
    *" $server "*) ;;
    *)
        echo "unknown server '$server'; expected some of: $ALL_SERVERS" >&2
        exit 2
        ;;
    esac
done

VENV="$BENCH/.venv"
VPY="$VENV/bin/python"
RESULTS_DIR="$BENCH/results"
STAMP="$(date +%Y%m%d-%H%M%S)"
OUT="$RESULTS_DIR/bench-$STAMP"
LOGS="$OUT.logs"
WORK="$(mktemp -d)"
SERVER_PID=""
SERVER_PIDS=()
IDLE_PID=""

mkdir -p "$RESULTS_DIR" "$LOGS"
# Everything printed also goes to bench/results/bench-<time>.txt.
exec > >(tee "$OUT.txt") 2>&1

# ---------------------------------------------------------------- processes
# descendants PID: print the PIDs of PID's children, grandchildren, ...
descendants() {
    local child
    for child in $(pgrep -P "$1" 2>/dev/null || true); do
        echo "$child"
        descendants "$child"
    done
}

# stop_server: TERM the server by PID, then KILL it and any of its child
# processes (gunicorn's and granian's workers) still alive after 5 s.
stop_server() {
    local pid="$SERVER_PID" p alive _
    [ -n "$pid" ] || return 0
    mapfile -t SERVER_PIDS < <(descendants "$pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        alive=0
        for p in "$pid" "${SERVER_PIDS[@]}"; do
            if kill -0 "$p" 2>/dev/null; then
                alive=1
            fi
        done
        [ "$alive" = 1 ] || break
        sleep 0.1
    done
    for p in "$pid" "${SERVER_PIDS[@]}"; do
        kill -9 "$p" 2>/dev/null || true
    done
    wait "$pid" 2>/dev/null || true
    SERVER_PID=""
    SERVER_PIDS=()
}

stop_idle() {
    if [ -n "$IDLE_PID" ]; then
        kill "$IDLE_PID" 2>/dev/null || true
        wait "$IDLE_PID" 2>/dev/null || true
        IDLE_PID=""
    fi
}

cleanup() {
    stop_idle
    stop_server
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
        DEBIAN_FRONTEND=noninteractive apt-get update -qq || true
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! command -v wrk >/dev/null 2>&1; then
    say "installing wrk"
    apt_install wrk || true
fi
if ! command -v wrk >/dev/null 2>&1; then
    echo "wrk is missing and could not be installed: nothing to measure with" >&2
    exit 1
fi
if [ ! -e /usr/include/ev.h ]; then
    say "installing libev-dev (for bjoern)"
    apt_install libev-dev || echo "libev-dev unavailable: bjoern may not install" >&2
fi

PIN_SERVER=(taskset -c "$SERVER_CPU")
PIN_CLIENT=(taskset -c "$CLIENT_CPU")
if ! command -v taskset >/dev/null 2>&1 || [ "$(nproc)" -lt 2 ]; then
    echo "warning: no taskset or fewer than 2 CPUs: running unpinned" >&2
    PIN_SERVER=()
    PIN_CLIENT=()
fi
# The idle scenario needs a few thousand descriptors in the server and the helper.
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 16384 ]; then
    ulimit -n 16384 2>/dev/null || echo "warning: ulimit -n is $(ulimit -n)" >&2
fi

# ---------------------------------------------------------------- venv
declare -A INSTALL_FAILED
pip_install() {
    "$VPY" -m pip install -q --disable-pip-version-check "$@"
}
if [ ! -x "$VPY" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
    INSTALL=1
fi
if [ "$INSTALL" = 1 ]; then
    say "installing the servers into $VENV"
    pip_install -U pip || true
    for spec in waitress==3.0.2 bjoern gunicorn granian pyruvate flask django; do
        name="${spec%%=*}"
        case " $SERVERS flask django " in *" $name "*) ;; *) continue ;; esac
        if ! pip_install "$spec" >"$WORK/pip-$name.log" 2>&1; then
            INSTALL_FAILED[$name]="pip install $spec failed: $(grep -m1 -i error \
                "$WORK/pip-$name.log" || tail -n 1 "$WORK/pip-$name.log")"
            echo "${INSTALL_FAILED[$name]}" >&2
        fi
    done
    # A release build of this repo; on failure remove any older build, so that
    # a stale engine is never measured.
    if [[ " $SERVERS " == *" maitre "* ]]; then
        say "building and installing maitre from $ROOT (about a minute)"
        if ! pip_install --force-reinstall --no-deps "$ROOT" \
            >"$WORK/pip-maitre.log" 2>&1; then
            echo "maitre install failed (last lines of the build log):" >&2
            tail -n 15 "$WORK/pip-maitre.log" >&2
            INSTALL_FAILED[maitre]="build failed: $(tail -n 1 "$WORK/pip-maitre.log")"
            "$VPY" -m pip uninstall -q -y maitre >/dev/null 2>&1 || true
        fi
    fi
fi

# ---------------------------------------------------------------- servers
declare -A SKIP VERSION
RUN=()
for server in $SERVERS; do
    if why="$("$VPY" "$BENCH/run_server.py" --version "$server" 2>&1)"; then
        RUN+=("$server")
        VERSION[$server]="$why"
    else
        SKIP[$server]="${INSTALL_FAILED[$server]:-$(printf '%s' "$why" | tail -n 1)}"
        echo "skipping $server: ${SKIP[$server]}" >&2
    fi
done
if [ "${#RUN[@]}" -eq 0 ]; then
    echo "no server could be imported" >&2
    exit 1
fi
for framework in flask django; do
    if [[ " $SCENARIOS " =~ " "(flask|jinja|json|django)" " ]] &&
        ! "$VPY" -c "import $framework" 2>/dev/null; then
        echo "$framework is not installed: its scenarios will fail for every server" >&2
    fi
done

# ---------------------------------------------------------------- scenarios
declare -A APP LUA CONNS UNIT URLPATH
for s in hello flask jinja json django big stream file pipeline slow idle; do
    APP[$s]="$s"
    LUA[$s]=plain
    CONNS[$s]="$CONNECTIONS"
    UNIT[$s]="req/s"
done
# The request path of each scenario: "/" except where apps.PATHS says otherwise.
for s in jinja json django; do
    URLPATH[$s]="$(cd "$BENCH" && "$VPY" -c "import apps; print(apps.path('$s'))")"
done
APP[pipeline]=hello
APP[idle]=hello
APP[upload]=upload
LUA[upload]=upload
LUA[pipeline]=pipeline
CONNS[file]="$BIG_CONNECTIONS"
CONNS[upload]="$BIG_CONNECTIONS"
CONNS[slow]="$SLOW_CONNECTIONS"
for s in big stream file upload; do UNIT[$s]="MiB/s"; done

for lua in plain upload pipeline; do
    cat "$BENCH/lua/$lua.lua" "$BENCH/lua/report.lua" >"$WORK/$lua.lua"
done

export BENCH_FILE="$WORK/file.bin"
if [[ " $SCENARIOS " == *" file "* ]]; then
    say "writing a ${FILE_MIB} MiB file of random bytes to $BENCH_FILE"
    head -c "$((FILE_MIB * 1024 * 1024))" /dev/urandom >"$BENCH_FILE"
fi
export THREADS WORKERS

# ---------------------------------------------------------------- metadata
TSV="$OUT.tsv"
META="$OUT.meta"
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "nproc=$(nproc)"
    echo "cpu=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    echo "kernel=$(uname -sr)"
    echo "python=$("$VPY" -c 'import platform; print(platform.python_version())')"
    echo "wrk=$(wrk -v 2>&1 | head -n 1 | awk '{print $2}')"
    echo "duration=$DURATION"
    echo "rounds=$ROUNDS"
    echo "threads=$THREADS"
    echo "workers=$WORKERS"
    echo "connections=$CONNECTIONS"
    echo "big_connections=$BIG_CONNECTIONS"
    echo "slow_connections=$SLOW_CONNECTIONS"
    echo "idle_connections=$IDLE_CONNECTIONS"
    echo "pipeline_depth=$PIPELINE_DEPTH"
    echo "file_mib=$FILE_MIB"
    echo "server_cpu=$SERVER_CPU"
    echo "client_cpu=$CLIENT_CPU"
    echo "scenarios=$SCENARIOS"
    echo "servers=${RUN[*]}"
    echo "load=$(cut -d ' ' -f 1-3 /proc/loadavg)"
    for server in "${RUN[@]}"; do
        echo "version.$server=${VERSION[$server]}"
    done
    # The maitre measured: this checkout's commit, "-dirty" with local changes.
    echo "maitre_source=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
    for server in "${!SKIP[@]}"; do
        echo "skipped.$server=${SKIP[$server]}"
    done
} >"$META"
printf 'scenario\tround\tserver\tstatus\tvalue\tunit\trequests\tbytes\tseconds' >"$TSV"
printf '\terrors\tconnect\tread\twrite\ttimeout\tnon2xx\tpeak_rss_kb' >>"$TSV"
printf '\tp50_ms\tp99_ms\tnote\tserver_cpu_ms\tclient_busy_pct\n' >>"$TSV"

# ---------------------------------------------------------------- one run
NEXT_PORT="$BASE_PORT"
# port_busy PORT: true when something accepts connections on 127.0.0.1:PORT.
port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pick_port: set PORT to the next port nobody listens on (a new one for every
# run, so that no server waits for the previous one's port).
pick_port() {
    local _
    for _ in $(seq 1 50); do
        PORT="$NEXT_PORT"
        NEXT_PORT=$((NEXT_PORT + 1))
        if [ "$NEXT_PORT" -ge $((BASE_PORT + 500)) ]; then
            NEXT_PORT="$BASE_PORT"
        fi
        port_busy "$PORT" || return 0
    done
    return 1
}

# tree_hwm PID: VmHWM (kB) summed over PID and its descendants.
tree_hwm() {
    local total=0 p hwm
    for p in "$1" $(descendants "$1"); do
        hwm="$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)"
        total=$((total + ${hwm:-0}))
    done
    echo "$total"
}

# tree_cpu_ticks PID: CPU time (utime + stime, fields 14 and 15 of /proc/PID/stat,
# in clock ticks) summed over PID and its descendants.  A process that exits
# between two readings takes its CPU time with it (a gunicorn or granian worker
# that dies and is replaced during a run), so the difference then undercounts;
# acceptable for a benchmark where the workers live as long as the server.
CLK_TCK="$(getconf CLK_TCK)"
tree_cpu_ticks() {
    local total=0 p stat fields
    for p in "$1" $(descendants "$1"); do
        stat="$(cat "/proc/$p/stat" 2>/dev/null)" || continue
        # After the last ')' (the command name may hold spaces): field 3 onwards.
        read -ra fields <<<"${stat##*) }"
        total=$((total + ${fields[11]:-0} + ${fields[12]:-0}))
    done
    echo "$total"
}

# proc_ticks PID: "pid ticks" (utime + stime) for PID and each descendant.
proc_ticks() {
    local p stat fields
    for p in "$1" $(descendants "$1"); do
        stat="$(cat "/proc/$p/stat" 2>/dev/null)" || continue
        read -ra fields <<<"${stat##*) }"
        echo "$p $((${fields[11]:-0} + ${fields[12]:-0}))"
    done
}

# cpu_split BEFORE AFTER: the share (%) of the CPU time used between two
# proc_ticks readings taken by each process that used at least 5 % of it,
# largest first ("51/49"): how evenly a server's workers served.
cpu_split() {
    awk 'NR == FNR { t0[$1] = $2; next }
        { d[$1] = $2 - t0[$1]; total += d[$1] }
        END {
            if (total <= 0) exit
            n = 0
            for (p in d) if (d[p] * 20 >= total) share[++n] = 100 * d[p] / total
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
                if (share[j] > share[i]) { x = share[i]; share[i] = share[j]; share[j] = x }
            out = ""
            for (i = 1; i <= n; i++) out = out (i > 1 ? "/" : "") sprintf("%.0f", share[i])
            print out
        }' <(echo "$1") <(echo "$2")
}

# core_ticks CPU: "BUSY TOTAL" clock ticks of core CPU so far, from its cpuN line
# in /proc/stat: TOTAL is user..steal (guest time is already in user and nice),
# BUSY is TOTAL minus idle and iowait.  Nothing when there is no such core.
core_ticks() {
    awk -v cpu="cpu$1" '$1 == cpu {
        total = $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9
        print total - $5 - $6, total
    }' /proc/stat
}

# busy_pct "BUSY TOTAL" "BUSY TOTAL": the core's busy share between two
# core_ticks readings, in percent with one decimal (empty without readings).
busy_pct() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (split(a, x, " ") == 2 && split(b, y, " ") == 2 && y[2] > x[2])
            printf "%.1f", 100 * (y[1] - x[1]) / (y[2] - x[2])
    }'
}

# record SCENARIO ROUND SERVER STATUS NOTE [wrk-output RSS SERVER-CPU-MS CLIENT-BUSY-%]
record() {
    local scenario="$1" round="$2" server="$3" status="$4" note="$5"
    local out="${6:-}" rss="${7:-0}" cpu_ms="${8:-}" busy="${9:-}" line=""
    if [ -n "$out" ]; then
        line="$(grep -m1 '^BENCH ' "$out" || true)"
    fi
    NOTE="$note" LINE="$line" awk -v OFS='\t' -v sc="$scenario" -v rd="$round" \
        -v sv="$server" -v st="$status" -v unit="${UNIT[$scenario]}" -v rss="$rss" \
        -v cpu_ms="$cpu_ms" -v busy="$busy" -v upload="$((8 * 1024 * 1024))" 'BEGIN {
        n = split(ENVIRON["LINE"], kv, " ")
        for (i = 2; i <= n; i++) { split(kv[i], p, "="); v[p[1]] = p[2] + 0 }
        secs = v["duration_us"] / 1e6
        value = 0
        if (secs > 0) {
            if (unit == "req/s") value = v["requests"] / secs
            else if (sc == "upload") value = v["requests"] * upload / secs / 1048576
            else value = v["bytes"] / secs / 1048576
        }
        errors = v["connect"] + v["read"] + v["write"] + v["timeout"] + v["status"]
        note = ENVIRON["NOTE"]; gsub(/[\t\n]/, " ", note)
        print sc, rd, sv, st, sprintf("%.1f", value), unit, v["requests"] + 0,
            sprintf("%.0f", v["bytes"]), sprintf("%.2f", secs), errors, v["connect"] + 0,
            v["read"] + 0, v["write"] + 0, v["timeout"] + 0, v["status"] + 0, rss,
            sprintf("%.2f", v["p50_us"] / 1000), sprintf("%.2f", v["p99_us"] / 1000),
            note, cpu_ms, busy
    }' >>"$TSV"
    if [ "$status" = ok ]; then
        tail -n 1 "$TSV" | awk -F'\t' '{
            printf "  %-8s round %s  %-9s %12s %-5s  errors %s  peak RSS %.1f MiB" \
                "  server CPU %s ms  client core %s%% busy%s\n",
                $1, $2, $3, $5, $6, $10, $16 / 1024, $20, $21,
                ($19 != "" ? "  (" $19 ")" : "")
        }'
    else
        printf '  %-8s round %s  %-9s fails: %s\n' "$scenario" "$round" "$server" "$note"
    fi
}

declare -A FAILED
# run_one SCENARIO ROUND SERVER
run_one() {
    local scenario="$1" round="$2" server="$3"
    local app="${APP[$scenario]}" conns="${CONNS[$scenario]}"
    local log="$LOGS/$scenario-$server-$round.server.log"
    local out="$LOGS/$scenario-$server-$round.wrk.txt"
    local many="" note check rss ready="" idle_out="$LOGS/$scenario-$server-$round.idle.txt"
    local ticks0 ticks1 core0 cpu_ms busy procs0
    local _ args=()

    if ! pick_port; then
        record "$scenario" "$round" "$server" fail "no free port near $BASE_PORT"
        return
    fi
    if [ "$scenario" = idle ]; then
        many=$((IDLE_CONNECTIONS + conns + 100))
    fi
    MANY_CONNECTIONS="$many" "${PIN_SERVER[@]}" "$VPY" "$BENCH/run_server.py" \
        "$server" "$PORT" "$app" >"$log" 2>&1 &
    SERVER_PID=$!

    for _ in $(seq 1 300); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        if port_busy "$PORT"; then
            ready=1
            break
        fi
        sleep 0.1
    done
    if [ -z "$ready" ]; then
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            note="did not listen on port $PORT within 30 s"
        else
            note="exited at start"
        fi
        note+=": $(tail -n 3 "$log" | tr '\n' ' ' | tr -s ' ')"
        stop_server
        record "$scenario" "$round" "$server" fail "$note"
        FAILED[$scenario.$server]=1
        return
    fi

    if ! check="$("${PIN_CLIENT[@]}" "$VPY" "$BENCH/check.py" "$scenario" "$PORT" 2>&1)"; then
        check="$(printf '%s' "$check" | tail -n 1)"
        kill -0 "$SERVER_PID" 2>/dev/null ||
            check+=" (server exited: $(tail -n 2 "$log" | tr '\n' ' '))"
        stop_server
        record "$scenario" "$round" "$server" fail "${check#fails: }"
        FAILED[$scenario.$server]=1
        return
    fi
    note="${check#ok}"
    note="${note#: }"

    if [ "$scenario" = idle ]; then
        : >"$idle_out"
        "${PIN_CLIENT[@]}" "$VPY" "$BENCH/idle.py" "$PORT" "$IDLE_CONNECTIONS" \
            "$((DURATION + 120))" >"$idle_out" 2>&1 &
        IDLE_PID=$!
        for _ in $(seq 1 1500); do
            grep -q '^READY' "$idle_out" && break
            kill -0 "$IDLE_PID" 2>/dev/null || break
            sleep 0.1
        done
        ready="$(grep -m1 '^READY' "$idle_out" || true)"
        if [[ "$ready" != "READY opened=$IDLE_CONNECTIONS answered=$IDLE_CONNECTIONS "* ]]; then
            stop_idle
            stop_server
            record "$scenario" "$round" "$server" fail \
                "could not open $IDLE_CONNECTIONS idle connections: ${ready:-$(tail -n 1 "$idle_out")}"
            FAILED[$scenario.$server]=1
            return
        fi
    fi

    if [ "$scenario" = pipeline ]; then
        args=(-- "$PIPELINE_DEPTH")
    fi
    # The server's CPU time and the client core's ticks, just before and just
    # after wrk: server_cpu_ms and client_busy_pct cover the wrk run only.
    ticks0="$(tree_cpu_ticks "$SERVER_PID")"
    procs0="$(proc_ticks "$SERVER_PID")"
    core0="$(core_ticks "$CLIENT_CPU")"
    timeout "$((DURATION + 90))" "${PIN_CLIENT[@]}" wrk -t1 -c"$conns" \
        -d"${DURATION}s" --timeout "$WRK_TIMEOUT" -s "$WORK/${LUA[$scenario]}.lua" \
        "http://127.0.0.1:$PORT${URLPATH[$scenario]:-/}" "${args[@]}" >"$out" 2>&1 || true
    busy="$(busy_pct "$core0" "$(core_ticks "$CLIENT_CPU")")"
    ticks1="$(tree_cpu_ticks "$SERVER_PID")"
    cpu_ms=$(((ticks1 - ticks0) * 1000 / CLK_TCK))
    if [ "$WORKERS" -gt 1 ]; then
        note="${note:+$note; }cpu split $(cpu_split "$procs0" "$(proc_ticks "$SERVER_PID")")"
    fi

    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        stop_idle
        note="server died during the run: $(tail -n 2 "$log" | tr '\n' ' ')"
        stop_server
        record "$scenario" "$round" "$server" fail "$note" "$out"
        FAILED[$scenario.$server]=1
        return
    fi

    if [ "$scenario" = idle ]; then
        kill -USR1 "$IDLE_PID" 2>/dev/null || true
        for _ in $(seq 1 600); do
            kill -0 "$IDLE_PID" 2>/dev/null || break
            sleep 0.1
        done
        stop_idle
        check="$(grep -m1 '^CHECK' "$idle_out" || true)"
        local served sample closed
        served="$(sed -n 's/^CHECK served=\([0-9]*\) .*/\1/p' "$idle_out")"
        sample="$(sed -n 's/^CHECK .* sample=\([0-9]*\) .*/\1/p' "$idle_out")"
        closed="$(sed -n 's/^CHECK .* closed=\([0-9]*\)$/\1/p' "$idle_out")"
        if [ -z "$check" ] || [ "$served" != "$sample" ]; then
            rss="$(tree_hwm "$SERVER_PID")"
            stop_server
            record "$scenario" "$round" "$server" fail \
                "afterwards only ${served:-?} of ${sample:-?} sampled idle connections were served (${closed:-?} found closed by the server)" \
                "$out" "$rss" "$cpu_ms" "$busy"
            FAILED[$scenario.$server]=1
            return
        fi
        note="${note:+$note; }$IDLE_CONNECTIONS idle connections held, $served/$sample sampled still served"
    fi

    rss="$(tree_hwm "$SERVER_PID")"
    stop_server
    if ! grep -q '^BENCH ' "$out"; then
        record "$scenario" "$round" "$server" fail \
            "wrk gave no result: $(tail -n 2 "$out" | tr '\n' ' ')"
        return
    fi
    if grep -q '^BENCH requests=0 ' "$out"; then
        record "$scenario" "$round" "$server" fail \
            "no response completed in ${DURATION} s ($(grep -m1 '^BENCH' "$out"))" \
            "$out" "$rss" "$cpu_ms" "$busy"
        FAILED[$scenario.$server]=1
        return
    fi
    record "$scenario" "$round" "$server" ok "$note" "$out" "$rss" "$cpu_ms" "$busy"
}

# ---------------------------------------------------------------- app alone
# The app called in a loop without a server (bench/app_loop.py), pinned to the
# server's core: the floor under every server's CPU per request, printed next
# to it so that the server's own share is visible.
for scenario in $SCENARIOS; do
    case " hello flask jinja json django " in *" $scenario "*) ;; *) continue ;; esac
    if loop="$(cd "$BENCH" && "${PIN_SERVER[@]}" "$VPY" app_loop.py "$scenario" 2>&1)" &&
        [[ "$loop" =~ us_per_call=([0-9.]+) ]]; then
        echo "app_loop.$scenario=${BASH_REMATCH[1]}" >>"$META"
        say "$scenario: the app alone, called in a loop: ${BASH_REMATCH[1]} µs of CPU per call"
    else
        echo "app_loop.$scenario failed: $(printf '%s' "$loop" | tail -n 1)" >&2
    fi
done

# ---------------------------------------------------------------- rounds
say "servers: $(for s in "${RUN[@]}"; do printf '%s %s  ' "$s" "${VERSION[$s]}"; done)"
say "${DURATION} s x $ROUNDS round(s) per scenario; servers on CPU $SERVER_CPU," \
    "wrk -t1 on CPU $CLIENT_CPU; $THREADS app threads"
for scenario in $SCENARIOS; do
    say "$scenario: app ${APP[$scenario]}, wrk -c${CONNS[$scenario]}" \
        "${LUA[$scenario]/plain/GET ${URLPATH[$scenario]:-/}}"
    for round in $(seq 1 "$ROUNDS"); do
        for server in "${RUN[@]}"; do
            if [ -n "${FAILED[$scenario.$server]:-}" ]; then
                continue
            fi
            run_one "$scenario" "$round" "$server"
        done
    done
done

# ---------------------------------------------------------------- summary
echo "load_end=$(cut -d ' ' -f 1-3 /proc/loadavg)" >>"$META"
"$VPY" "$BENCH/summarize.py" "$OUT"
