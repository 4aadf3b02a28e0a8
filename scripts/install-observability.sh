#!/usr/bin/env bash
# Debian's Prometheus and Alertmanager (prometheus, promtool, prometheus-alertmanager,
# amtool) for the tests marked `observability` and the promtool rule tests.
# Run as root (or with sudo); a no-op when the binaries are already there.
#   scripts/install-observability.sh
set -euo pipefail
if command -v prometheus >/dev/null && command -v promtool >/dev/null \
  && command -v prometheus-alertmanager >/dev/null && command -v amtool >/dev/null; then
  echo "prometheus and alertmanager are installed"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends prometheus prometheus-alertmanager
# The packages start their daemons where an init system runs; the tests start their own
# on free loopback ports, so stop those to leave ports 9090/9093 free.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now prometheus prometheus-alertmanager prometheus-node-exporter \
    >/dev/null 2>&1 || true
fi
command -v prometheus promtool prometheus-alertmanager amtool
