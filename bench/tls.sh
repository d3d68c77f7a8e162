#!/usr/bin/env bash
# HTTPS: maitre beside gunicorn (certfile/keyfile) and granian (ssl_cert/ssl_key),
# and maitre plain vs TLS.  A measurement, not a test.  See bench/README.md.
#
#   bash bench/tls.sh                       # 3 rounds of 10 s
#   DURATION=5 ROUNDS=1 bash bench/tls.sh
#
# Scenarios, each with wrk -t1 pinned to CPU $CLIENT_CPU against the server pinned
# to CPU $SERVER_CPU (bench/run_server.py, THREADS app threads):
#   hello      13-byte answers on $CONNECTIONS keep-alive connections
#   big        1 MiB answers on $BIG_CONNECTIONS keep-alive connections
#   file       a $FILE_MIB MiB file through wsgi.file_wrapper, $BIG_CONNECTIONS
#              connections (sendfile on plain; read and encrypted over TLS)
#   handshake  hello with "Connection: close": a new connection, so a full
#              handshake, per request (wrk does not resume sessions)
# For each: requests/s (or MiB/s), and the server's CPU time (all its processes)
# per request and per GiB sent, which is what TLS costs.
#
# Uses bench/.venv as bench/run.sh makes it (INSTALL=1 there, or here, installs
# maitre from this checkout, gunicorn, granian and trustme into it).  The
# certificate (ECDSA P-256, as most sites now use) is made at run time by trustme.
# Results: bench/results/tls-<time>.tsv and the printed table.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
VPY="$BENCH/.venv/bin/python"
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-3}"
THREADS="${THREADS:-4}"
CONNECTIONS="${CONNECTIONS:-50}"
BIG_CONNECTIONS="${BIG_CONNECTIONS:-8}"
SERVER_CPU="${SERVER_CPU:-0}"
CLIENT_CPU="${CLIENT_CPU:-1}"
PORT="${PORT:-18600}"
INSTALL="${INSTALL:-0}"
SERVERS="${SERVERS:-maitre gunicorn granian}"
SCENARIOS="${SCENARIOS:-hello big file handshake}"
FILE_MIB="${FILE_MIB:-100}"

if [ ! -x "$VPY" ] || [ "$INSTALL" = 1 ]; then
    [ -x "$VPY" ] || python3 -m venv "$BENCH/.venv"
    "$VPY" -m pip install -q -U pip gunicorn granian trustme
    "$VPY" -m pip install -q --force-reinstall --no-deps "$ROOT"
fi
if ! command -v wrk >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        for p in $(pgrep -P "$SERVER_PID" 2>/dev/null || true) "$SERVER_PID"; do
            kill "$p" 2>/dev/null || true
        done
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$VPY" - "$WORK" <<'EOF'
import sys, trustme
ca = trustme.CA()
cert = ca.issue_cert("localhost", "127.0.0.1")
cert.cert_chain_pems[0].write_to_path(f"{sys.argv[1]}/cert.pem")
cert.private_key_pem.write_to_path(f"{sys.argv[1]}/key.pem")
EOF

export BENCH_FILE="$WORK/file.bin"
head -c "$((FILE_MIB * 1024 * 1024))" /dev/urandom >"$BENCH_FILE"

mkdir -p "$BENCH/results"
TSV="$BENCH/results/tls-$(date +%Y%m%d-%H%M%S).tsv"
printf 'scenario\tround\tserver\tscheme\trequests\tbytes\tseconds\terrors\tserver_cpu_s\n' >"$TSV"

tree_ticks() {
    local total=0 p f
    for p in "$1" $(pgrep -P "$1" 2>/dev/null || true); do
        read -ra f <<<"$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null)" || continue
        total=$((total + ${f[11]:-0} + ${f[12]:-0}))
    done
    echo "$total"
}
TCK="$(getconf CLK_TCK)"

# run SCENARIO ROUND SERVER SCHEME
run() {
    local scenario="$1" round="$2" server="$3" scheme="$4" app=hello conns="$CONNECTIONS"
    local extra=() env=() t0 t1 out
    [ "$scenario" = big ] && app=big && conns="$BIG_CONNECTIONS"
    [ "$scenario" = file ] && app=file && conns="$BIG_CONNECTIONS"
    [ "$scenario" = handshake ] && extra=(-H "Connection: close")
    [ "$scheme" = https ] && env=(TLS_CERT="$WORK/cert.pem" TLS_KEY="$WORK/key.pem")
    PORT=$((PORT + 1))
    env "${env[@]}" THREADS="$THREADS" taskset -c "$SERVER_CPU" \
        "$VPY" "$BENCH/run_server.py" "$server" "$PORT" "$app" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        curl -skf -o /dev/null "$scheme://127.0.0.1:$PORT/" && break
        sleep 0.1
    done
    t0="$(tree_ticks "$SERVER_PID")"
    out="$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$conns" -d"${DURATION}s" --timeout 30s "${extra[@]}" \
        "$scheme://127.0.0.1:$PORT/" 2>&1 || true)"
    t1="$(tree_ticks "$SERVER_PID")"
    for p in $(pgrep -P "$SERVER_PID" 2>/dev/null || true) "$SERVER_PID"; do
        kill "$p" 2>/dev/null || true
    done
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    OUT="$out" awk -v OFS='\t' -v sc="$scenario" -v rd="$round" -v sv="$server" \
        -v scheme="$scheme" -v cpu="$(((t1 - t0)))" -v tck="$TCK" 'BEGIN {
        n = split(ENVIRON["OUT"], lines, "\n")
        for (i = 1; i <= n; i++) {
            if (lines[i] ~ /requests in/) {
                split(lines[i], w, " "); reqs = w[1]; secs = w[4] + 0
                b = w[5]; unit = b; gsub(/[0-9.]/, "", unit); b += 0
                if (unit == "KB") b *= 1024; if (unit == "MB") b *= 1048576
                if (unit == "GB") b *= 1073741824
            }
            if (lines[i] ~ /Socket errors/ || lines[i] ~ /Non-2xx/) {
                m = lines[i]; gsub(/[^0-9 ]/, " ", m); k = split(m, e, " ")
                for (j = 1; j <= k; j++) errs += e[j]
            }
        }
        print sc, rd, sv, scheme, reqs + 0, sprintf("%.0f", b), secs, errs + 0,
            sprintf("%.2f", cpu / tck)
    }' >>"$TSV"
}

for round in $(seq "$ROUNDS"); do
    for scenario in $SCENARIOS; do
        for server in $SERVERS; do
            run "$scenario" "$round" "$server" https
        done
        run "$scenario" "$round" maitre http
    done
done

# The median round of each (scenario, server, scheme).
"$VPY" - "$TSV" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
groups = {}
for r in rows:
    groups.setdefault((r["scenario"], r["server"], r["scheme"]), []).append(r)
print(f"{'scenario':10} {'server':9} {'scheme':6} {'req/s':>9} {'MiB/s':>8} "
      f"{'CPU us/req':>10} {'CPU s/GiB':>9} {'errors':>6}")
for (sc, sv, scheme), rs in groups.items():
    def per(r):
        secs = float(r["seconds"]) or 1
        return int(r["requests"]) / secs
    r = sorted(rs, key=per)[len(rs) // 2]
    reqs, secs = int(r["requests"]), float(r["seconds"]) or 1
    cpu, gib = float(r["server_cpu_s"]), int(r["bytes"]) / 2**30
    print(f"{sc:10} {sv:9} {scheme:6} {reqs / secs:9.0f} "
          f"{int(r['bytes']) / 2**20 / secs:8.1f} "
          f"{(cpu / reqs * 1e6 if reqs else 0):10.1f} "
          f"{(cpu / gib if gib > 0.01 else 0):9.2f} {r['errors']:>6}")
print(f"(rows: {sys.argv[1]})")
EOF
