#!/usr/bin/env bash
# Server CPU and context switches per request, for servers given as variants,
# rounds interleaved (A B C A B C ...): "What running the app on the loop thread
# would gain" in docs/performance.md.
#
#   VARIANTS="maitre maitre:THREADS=1 bjoern" SCENARIOS=hello,flask,django \
#       ROUNDS=5 DURATION=5 bash bench/investigations/onethread.sh
#
# A variant is SERVER[:VAR=VALUE[,VAR=VALUE...]]: the variables are set in the
# server's environment only (e.g. maitre:THREADS=1).  Each run: the server
# (bench/run_server.py) pinned to SERVER_CPU [0], its answer checked
# (bench/check.py), a 1 s warm-up, then `wrk -t1 -c CONNECTIONS [50]` pinned to
# CLIENT_CPU [1] for DURATION s while `perf stat -e task-clock,context-switches
# -p PID` counts the server, and /proc/PID/stat gives its user and system time
# over the same window.  Prints one line per run and, at the end, medians per
# variant and each variant's CPU per request relative to the LAST variant's in
# the same round (put the reference last).  Uses bench/.venv as it is.
# Loopback only, every run bounded in time, every process stopped by its PID.
set -u
BENCH="$(cd "$(dirname "$0")/.." && pwd)"
VPY="${VPY:-$BENCH/.venv/bin/python}"
VARIANTS="${VARIANTS:-maitre bjoern}"
SCENARIOS="${SCENARIOS:-hello,flask,django}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
CONNECTIONS="${CONNECTIONS:-50}"
SERVER_CPU="${SERVER_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
PORT="${PORT:-18700}"
export THREADS="${THREADS:-4}"
OUT="${OUT:-$BENCH/results/onethread-$(date -u +%Y%m%dT%H%M%S).tsv}"
mkdir -p "$(dirname "$OUT")"
TICK="$(getconf CLK_TCK)"

SERVER_PID="" PERF_PID=""
cleanup() {
    [ -n "$PERF_PID" ] && kill -INT "$PERF_PID" 2>/dev/null
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null
}
trap cleanup EXIT

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# utime+stime of a process, in clock ticks: fields 14 and 15 of /proc/PID/stat.
ticks() { awk '{sub(/.*\) /, ""); print $12, $13}' "/proc/$1/stat"; }

printf 'scenario\tvariant\tround\trequests\tcpu_us_per_req\tcs_per_req\tuser_us\tsys_us\tload1\n' >"$OUT"
for round in $(seq 1 "$ROUNDS"); do
    for scenario in ${SCENARIOS//,/ }; do
        path="$(cd "$BENCH" && "$VPY" -c "import apps; print(apps.path('$scenario'))")"
        for variant in $VARIANTS; do
            server="${variant%%:*}"
            envs=()
            [ "$server" != "$variant" ] && IFS=, read -ra envs <<<"${variant#*:}"
            PORT=$((PORT + 1))
            while port_busy "$PORT"; do PORT=$((PORT + 1)); done
            env "${envs[@]}" taskset -c "$SERVER_CPU" "$VPY" "$BENCH/run_server.py" \
                "$server" "$PORT" "$scenario" >/tmp/onethread-server.$$.log 2>&1 &
            SERVER_PID=$!
            for _ in $(seq 1 300); do
                port_busy "$PORT" && break
                sleep 0.1
            done
            if ! taskset -c "$CLIENT_CPU" "$VPY" "$BENCH/check.py" "$scenario" "$PORT" >/dev/null 2>&1; then
                echo "$scenario $variant: check failed: $(tail -n 2 /tmp/onethread-server.$$.log)" >&2
                kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null; SERVER_PID=""
                continue
            fi
            timeout 20 taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d1s \
                "http://127.0.0.1:$PORT$path" >/dev/null 2>&1
            read -r u0 s0 < <(ticks "$SERVER_PID")
            # No workload command: perf counts until it is interrupted (with one, it
            # would wait for that command to end).
            timeout $((DURATION + 40)) perf stat -x, -e task-clock,context-switches \
                -p "$SERVER_PID" -o /tmp/onethread-perf.$$.txt &
            PERF_PID=$!
            sleep 0.2
            wrkout="$(timeout $((DURATION + 30)) taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" \
                -d"${DURATION}s" "http://127.0.0.1:$PORT$path" 2>&1)"
            read -r u1 s1 < <(ticks "$SERVER_PID")
            kill -INT "$PERF_PID" 2>/dev/null; wait "$PERF_PID" 2>/dev/null; PERF_PID=""
            kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null; SERVER_PID=""
            reqs="$(printf '%s\n' "$wrkout" | awk '/requests in/ {print $1}')"
            clock_ms="$(awk -F, '$3 ~ /task-clock/ {print $1}' /tmp/onethread-perf.$$.txt)"
            cs="$(awk -F, '$3 ~ /context-switches/ {print $1}' /tmp/onethread-perf.$$.txt)"
            load="$(cut -d' ' -f1 /proc/loadavg)"
            if [ -z "$reqs" ] || [ -z "$clock_ms" ]; then
                echo "$scenario $variant: no result" >&2
                continue
            fi
            line="$(awk -v r="$reqs" -v c="$clock_ms" -v x="$cs" -v u="$((u1 - u0))" \
                -v s="$((s1 - s0))" -v t="$TICK" -v l="$load" \
                -v sc="$scenario" -v va="$variant" -v ro="$round" 'BEGIN {
                    printf "%s\t%s\t%s\t%d\t%.1f\t%.3f\t%.1f\t%.1f\t%s\n", sc, va, ro, r,
                        c * 1000 / r, x / r, u * 1e6 / t / r, s * 1e6 / t / r, l }')"
            printf '%s\n' "$line" | tee -a "$OUT"
        done
    done
done
rm -f /tmp/onethread-server.$$.log /tmp/onethread-perf.$$.txt
echo "results: $OUT"
"$VPY" - "$OUT" <<'EOF'
# Medians per variant, and the median of each run's CPU per request divided by
# that of the last variant in the same round and scenario (the reference, e.g.
# bjoern): pairing by round cancels part of the machine's drift.
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
keys = []
for r in rows:
    k = (r["scenario"], r["variant"])
    if k not in keys:
        keys.append(k)
ref = keys[-1][1] if keys else ""
cpu = {(r["scenario"], r["variant"], r["round"]): float(r["cpu_us_per_req"]) for r in rows}
print(f"median per variant (ratio: paired with {ref} in the same round):")
print("scenario variant runs cpu_us/req cs/req user_us sys_us load ratio")
for k in keys:
    rs = [r for r in rows if (r["scenario"], r["variant"]) == k]
    med = lambda f: statistics.median(float(r[f]) for r in rs)
    ratios = [
        float(r["cpu_us_per_req"]) / cpu[(k[0], ref, r["round"])]
        for r in rs
        if (k[0], ref, r["round"]) in cpu
    ]
    ratio = f"{statistics.median(ratios):.3f}" if ratios else "-"
    print(f"{k[0]:8} {k[1]:42} {len(rs)} {med('cpu_us_per_req'):9.1f} "
          f"{med('cs_per_req'):7.3f} {med('user_us'):8.1f} {med('sys_us'):7.1f} "
          f"{med('load1'):5.2f} {ratio}")
EOF
