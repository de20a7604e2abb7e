#!/usr/bin/env bash
# Quickstart: brings up `berth dev` (a single-node controller + agent on this
# machine's Docker daemon, with simulated GPUs when there is no NVIDIA driver)
# and runs sample GPU jobs end to end: placement, output, queueing, exit codes.
#
#   deploy/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

docker info >/dev/null 2>&1 || { echo "error: no Docker daemon answers (start dockerd)" >&2; exit 1; }
deploy/images/build-workload-image.sh berth/workload:latest
cargo build --workspace --bins -q
berth="$PWD/target/debug/berth"

data="$(mktemp -d)"
# berth dev makes its CA, certificates and an admin token, and writes the
# CLI's config there: the demo keeps it apart from ~/.config/berth.
export BERTH_CONFIG="$data/config.toml"
"$berth" dev --data-dir "$data" --listen 127.0.0.1:0 --fake-gpus 2:A100-SXM4-80GB:80G --name demo-node \
  --metrics-listen 127.0.0.1:0 \
  >"$data/dev.log" 2>&1 &
dev=$!
cleanup() {
  kill "$dev" 2>/dev/null || true
  ids=$(docker ps -aq --filter label=berth.node=demo-node)
  [ -z "$ids" ] || docker rm -f $ids >/dev/null
  docker rmi demo/app:1 >/dev/null 2>&1 || true
  rm -rf "$data"
}
trap cleanup EXIT
trap "exit 130" INT TERM
for _ in $(seq 100); do [ -s "$data/controller.addr" ] && break; sleep 0.1; done
export BERTH_ADDR="$(cat "$data/controller.addr")"
for _ in $(seq 100); do "$berth" nodes 2>/dev/null | grep -q ready && break; sleep 0.1; done
echo "berth dev is up at $BERTH_ADDR (log: $data/dev.log)"

say berth nodes
"$berth" nodes
say berth images
"$berth" images
say berth run --gpus 1 --shm-size 8g berth/workload berth-demo-train 3
"$berth" run --gpus 1 --shm-size 8g berth/workload berth-demo-train 3

mkdir -p "$data/app"
printf 'FROM berth/workload:latest\nRUN echo "built by berth build" > /hello\n' > "$data/app/Dockerfile"
say "berth build -t demo/app:1 DIR   (docker build on a host of the cluster)"
"$berth" build -t demo/app:1 "$data/app"
say berth run --rm demo/app:1 cat /hello
"$berth" run --rm demo/app:1 cat /hello

say "three 1-GPU jobs on 2 GPUs: the third waits in the queue"
for i in 1 2 3; do
  "$berth" run -d --gpus 1 --name "demo-$i" berth/workload sh -c "berth-demo-train 2; sleep 1; exit $i"
done
sleep 1
say berth ps
"$berth" ps
say berth nodes
"$berth" nodes
say berth wait demo-3
"$berth" wait demo-3 || true
say berth logs demo-3
"$berth" logs demo-3
say berth ps -a
"$berth" ps -a
say "berth usage   (GPU-hours per user, kept after jobs are forgotten)"
"$berth" usage
say "berth top -n 1   (live and full-screen on a terminal; plain lines here)"
"$berth" top -n 1 | cat
say "berth dashboard   (a link that signs your browser in; metrics at /metrics)"
"$berth" dashboard
