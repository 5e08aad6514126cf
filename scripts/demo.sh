#!/usr/bin/env bash
# The built-in demo: the agent on the real clip vtest.avi with the default model, publishing to a local Mosquitto,
# while a subscriber prints what it receives. Usage: scripts/demo.sh [seconds, default 60]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
[[ $seconds =~ ^[0-9]+$ ]] || { echo "usage: scripts/demo.sh [seconds]" >&2; exit 1; }
bash scripts/setup.sh runtime

work=var/demo-broker
mkdir -p "$work"
port=$(node -e "const s=require('node:net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
cat > "$work/mosquitto.conf" <<CONF
per_listener_settings true
listener $port 127.0.0.1
allow_anonymous true
persistence false
CONF
chmod 0644 "$work/mosquitto.conf"
pids=()
tailpid=
cleanup() { [[ -n $tailpid ]] && kill "$tailpid" 2>/dev/null; for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

/usr/sbin/mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

url="mqtt://127.0.0.1:$port"
echo "[demo] Mosquitto on $url; a subscriber prints each message below (agent log: var/demo/agent.log)"
node bin/edgepatrol.js tail --url "$url" --prefix edgepatrol > >(tee "$work/received.txt") &
tailpid=$!
sleep 0.5
mkdir -p var/demo
node bin/edgepatrol.js run --config examples/demo.yaml --mqtt-url "$url" 2>var/demo/agent.log &
agent=$!
echo "[demo] agent running on assets/vtest.avi for ${seconds}s (pid $agent)"
sleep "$seconds"
kill -TERM "$agent"
wait "$agent" || { echo "[demo] the agent failed; its log:" >&2; tail -20 var/demo/agent.log >&2; exit 1; }
sleep 0.5
n=$(grep -c '/event/' "$work/received.txt" || true)
echo "[demo] the subscriber received $n events; evidence JPEGs are in var/demo/evidence/, the outbox is var/demo/outbox.db"
[[ $n -gt 0 ]]
