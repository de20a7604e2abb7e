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
# The Python gRPC example, Prometheus' OpenMetrics parser (the metrics
# tests) and a DevTools client (the dashboard test) run in the suite.
python3 -c 'import grpc, grpc_tools, grpc_reflection, grpc_health, prometheus_client, websocket' 2>/dev/null ||
  python3 -m pip install -q grpcio grpcio-tools grpcio-reflection grpcio-health-checking prometheus-client websocket-client
# `berth top` is tested in a real terminal (tmux's), the dashboard in a
# real browser (Chromium, headless): installed when missing.
missing=""
command -v tmux >/dev/null || missing="$missing tmux"
command -v chromium >/dev/null || missing="$missing chromium"
if [ -n "$missing" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing$missing (the terminal and the browser the suite drives)" >&2
  # shellcheck disable=SC2086
  apt-get install -y -q $missing >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $missing >/dev/null; }
fi
# The binaries the suites start carry their test hooks (BERTH_FAULT_*
# variables: a cut raft link, a full disk, a damaged export); release
# builds never have them.
features=berth-agent/fault-injection,berth-controller/fault-injection
cargo build --workspace --bins --features "$features"
cargo test --workspace --features "$features" "$@"
