#!/usr/bin/env bash
# Issue 17: the cold start of a Python plugin that connects to the bus and
# reads one key, from process start to value (bench/coldstart/plugin.py),
# measured with hyperfine against a release server on a free port.
#
#   bench/coldstart/run.sh                  # /usr/bin/python3: hyperfine -N -w 5, 50 runs a command
#                                           # in 5 rounds of 10 (ROUNDS=1: one hyperfine -r 50)
#   PY=python3 RUNS=20 bench/coldstart/run.sh
#   BEFORE=/tmp/old/clients/python bench/coldstart/run.sh   # also another client, in the same run
#   PYRO=/tmp/pyro-lib bench/coldstart/run.sh   # also the old Pyro4 datastore (pip install --target /tmp/pyro-lib Pyro4)
#   COMPAT=1 bench/coldstart/run.sh         # also the plugin through ipcbus.compat (IPCClientX)
#   IMPORTTIME=1 bench/coldstart/run.sh     # then print the plugin's slowest imports (-X importtime)
#
# Bytecode is cached (in a temporary PYTHONPYCACHEPREFIX, even where
# PYTHONDONTWRITEBYTECODE is set), as for an installed package; NOPYC=1
# measures compiling the client's own sources at every start instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-/usr/bin/python3}
BIN=${IPCBUS_BIN:-target/release/ipcbus}
RUNS=${RUNS:-50}
WARMUP=${WARMUP:-5}
ROUNDS=${ROUNDS:-5}
CLIENT=${CLIENT:-$PWD/clients/python}
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release -p ipcbus" >&2; exit 1; }

work=$(mktemp -d /tmp/ipcbus-coldstart.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BIN" serve --port "$port" --no-selftest --data-dir "$work/data" 2>"$work/server.log" &
pids+=($!)
for _ in $(seq 100); do
    grep -q "WebSocket at" "$work/server.log" 2>/dev/null && break
    kill -0 "${pids[0]}" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.05
done

# Only the client's settings: the server has --data-dir.
unset IPCBUS_TOKEN IPCBUS_TOKEN_FILE PYTHONDONTWRITEBYTECODE PYTHONPATH
export IPCBUS_URL="ws://127.0.0.1:$port/ws" IPCBUS_DATA_DIR="$work/data"
"$BIN" set coldstart.key '{"temp": 21.5, "city": "Oslo"}' >/dev/null
# The same for ipcbus.compat: author "coldstart", name "key", in its envelope.
"$BIN" set ipcx.coldstart.key '{"v": {"temp": 21.5, "city": "Oslo"}, "ts": 1764950400.0}' >/dev/null
if [ -n "${NOPYC:-}" ]; then
    # The clients' sources only, compiled at every start; the standard
    # library and websocket-client keep the bytecode they came with.
    export PYTHONDONTWRITEBYTECODE=1
    for var in CLIENT BEFORE; do
        [ -n "${!var:-}" ] || continue
        mkdir -p "$work/$var" && cp -r "${!var}/ipcbus" "$work/$var/" && rm -rf "$work/$var"/ipcbus/{,compat/}__pycache__
        printf -v "$var" %s "$work/$var"
    done
else
    export PYTHONPYCACHEPREFIX="$work/pycache"
fi

plugin=bench/coldstart/plugin.py
echo "$("$PY" -VV | head -1) ($PY); websocket-client $("$PY" -c 'import websocket; print(websocket.__version__)')"
echo "plugin prints: $("$PY" "$plugin" --no-msgpack --client "$CLIENT")," \
    "with --compat: $("$PY" "$plugin" --no-msgpack --compat --client "$CLIENT")"
cmds=(-n "python -c pass" "$PY -c pass")
msgpack=$("$PY" -c "import msgpack" 2>/dev/null && echo yes || echo "")
[ -n "$msgpack" ] || echo "($PY has no msgpack: JSON only)"
for client in ${BEFORE:+"$BEFORE"} "$CLIENT"; do
    what=$([ "$client" = "$CLIENT" ] && echo plugin || echo "plugin (BEFORE)")
    cmds+=(-n "$what, JSON" "$PY $plugin --no-msgpack --client $client")
    [ -z "$msgpack" ] || cmds+=(-n "$what, MessagePack" "$PY $plugin --client $client")
    [ -z "${COMPAT:-}" ] || cmds+=(-n "$what, compat API, JSON" "$PY $plugin --no-msgpack --compat --client $client")
done
if [ -n "${PYRO:-}" ]; then
    "$PY" bench/coldstart/pyro_daemon.py "$PYRO" >"$work/pyro.port" &
    pids+=($!)
    for _ in $(seq 100); do [ -s "$work/pyro.port" ] && break; sleep 0.05; done
    pyro_port=$(cat "$work/pyro.port")
    echo "Pyro4 plugin prints: $("$PY" bench/coldstart/pyro_plugin.py "$PYRO" "$pyro_port")"
    cmds+=(-n "Pyro4 plugin (old datastore)" "$PY bench/coldstart/pyro_plugin.py $PYRO $pyro_port")
fi
# In ROUNDS rounds of RUNS/ROUNDS runs each, the commands taking turns, so
# that a burst of load on this shared machine does not fall on one command.
for round in $(seq "$ROUNDS"); do
    hyperfine -N -w "$WARMUP" -r $((RUNS / ROUNDS)) --export-json "$work/round$round.json" "${cmds[@]}" \
        >"$work/hyperfine.txt" 2>&1 || { cat "$work/hyperfine.txt"; exit 1; }
done
"$PY" - "$work"/round*.json <<'PY'
import json, statistics, sys
times = {}
for path in sys.argv[1:]:
    for r in json.load(open(path))["results"]:
        times.setdefault(r["command"], []).extend(r["times"])
for command, t in times.items():
    q = statistics.quantiles(t, n=4)
    print("%-34s median %6.1f ms  (quartiles %.1f-%.1f, min %.1f, max %.1f; %d runs)" % (
        command, statistics.median(t) * 1e3, q[0] * 1e3, q[2] * 1e3, min(t) * 1e3, max(t) * 1e3, len(t)))
PY
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "${IMPORTTIME:-}" ]; then
    echo "slowest imports of the plugin, JSON (-X importtime: self µs | cumulative µs | module):"
    "$PY" -X importtime "$plugin" --no-msgpack --client "$CLIENT" 2>&1 >/dev/null | sort -t'|' -k2 -n | tail -25
fi
