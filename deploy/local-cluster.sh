#!/usr/bin/env bash
# A local Berth cluster on loopback for trying things: 3 controllers
# (raft) and 2 agents with simulated GPUs on this machine's Docker daemon.
#
#   deploy/local-cluster.sh            start it (prints BERTH_ADDR), Ctrl-C stops it
#   BASE_PORT=7460 deploy/local-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --workspace --bins
bin="$PWD/target/debug"
base="${BASE_PORT:-7460}"
data="$(mktemp -d -t berth-local-XXXX)"
peers="1=127.0.0.1:$base,2=127.0.0.1:$((base + 1)),3=127.0.0.1:$((base + 2))"
addrs="127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"
# Mutual TLS everywhere: one CA for the cluster, a certificate per agent,
# and the bootstrap admin token for the CLI (in its own config file).
token=$("$bin/berth-controller" tls init --out "$data/tls" 2>/dev/null)
for n in local-a local-b; do
  "$bin/berth-controller" tls issue --ca-dir "$data/tls" --node "$n" --out "$data/$n-tls" 2>/dev/null
done
export BERTH_CONFIG="$data/config.toml"
printf 'addr = "%s"\nca = "%s"\ntoken = "%s"\n' "$addrs" "$data/tls/ca.pem" "$token" >"$BERTH_CONFIG"
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  for n in local-a local-b; do
    ids=$(docker ps -aq --filter "label=berth.node=$n")
    [ -z "$ids" ] || docker rm -f $ids >/dev/null
  done
  echo "stopped; logs were in $data"
}
trap cleanup EXIT
trap "exit 130" INT TERM
for id in 1 2 3; do
  # Automatic image GC off: both agents drive this machine's own daemon.
  "$bin/berth-controller" --id "$id" --peers "$peers" --listen "127.0.0.1:$((base + id - 1))" \
    --data-dir "$data/c$id" --tls-dir "$data/tls" --audit-log "$data/c$id.audit" --image-gc-high 100 >"$data/c$id.log" 2>&1 &
  pids+=($!)
done
"$bin/berth-agent" --controllers "$addrs" --tls-dir "$data/local-a-tls" --name local-a --listen 127.0.0.1:0 --fake-gpus 4 --label zone=a >"$data/a.log" 2>&1 &
pids+=($!)
"$bin/berth-agent" --controllers "$addrs" --tls-dir "$data/local-b-tls" --name local-b --listen 127.0.0.1:0 --fake-gpus 2:A100-SXM4-80GB:80G --label zone=b >"$data/b.log" 2>&1 &
pids+=($!)
export BERTH_ADDR="$addrs"
for _ in $(seq 100); do "$bin/berth" nodes 2>/dev/null | grep -q local-b && break; sleep 0.1; done
"$bin/berth" controller list
"$bin/berth" nodes
echo
echo "export BERTH_CONFIG=$BERTH_CONFIG    # then: berth run --gpus 1 berth/workload berth-demo-train 3"
echo "logs: $data   (Ctrl-C stops the cluster)"
wait
