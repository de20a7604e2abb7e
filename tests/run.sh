#!/usr/bin/env bash
# The whole test suite: unit tests of the pure cores, the binaries' own
# tests, and the end-to-end suites on this machine's real Docker daemon.
#
#   tests/run.sh [cargo test args...]
#
# Needs a running Docker daemon; builds the workload image (installing
# busybox-static when missing) and the binaries the end-to-end tests start.
set -euo pipefail
cd "$(dirname "$0")/.."
docker info >/dev/null 2>&1 || { echo "error: no Docker daemon answers (start dockerd)" >&2; exit 1; }
deploy/images/build-workload-image.sh berth/workload:latest
# The Python gRPC example and Prometheus' OpenMetrics parser (the metrics
# tests) run in the suite.
python3 -c 'import grpc, grpc_tools, grpc_reflection, grpc_health, prometheus_client' 2>/dev/null ||
  python3 -m pip install -q grpcio grpcio-tools grpcio-reflection grpcio-health-checking prometheus-client
# `berth top` is tested in a real terminal: tmux's.
if ! command -v tmux >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing tmux (the terminal berth top is tested in)" >&2
  apt-get install -y -q tmux >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q tmux >/dev/null; }
fi
# The binaries the suites start carry their test hooks (BERTH_FAULT_*
# variables: a cut raft link, a full disk, a damaged export); release
# builds never have them.
features=berth-agent/fault-injection,berth-controller/fault-injection
cargo build --workspace --bins --features "$features"
cargo test --workspace --features "$features" "$@"
