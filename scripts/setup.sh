#!/usr/bin/env bash
# Installs every Debian 12 package Sekisho needs to build, test and benchmark.
# Idempotent and non-interactive: safe to run again; does nothing when all is present.
set -euo pipefail

packages=(
  meson ninja-build pkg-config g++ clang llvm libclang-rt-14-dev   # clang + libFuzzer/ASan runtimes: tests/fuzz
  dpdk dpdk-dev libdpdk-dev libhyperscan-dev libbpf-dev libxdp-dev xdp-tools bpftool
  prometheus-cpp-dev libgtest-dev libgmock-dev libbenchmark-dev libpcap-dev libyaml-dev nlohmann-json3-dev libmicrohttpd-dev libcurl4-openssl-dev
  libsqlite3-dev libssl-dev
  postgresql-15 libpq-dev redis-server libhiredis-dev            # fleet mode (control/fleet) and its tests
  bash-completion                                                 # sekishoctl's completion and its test
  tcpdump tshark iproute2 ethtool iputils-ping netcat-openbsd postfix swaks
  prometheus freeradius-utils freeradius freeradius-postgresql python3-scapy libio-socket-inet6-perl curl openssl
  spamassassin
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
# postfix: no configuration and no daemon; the tests run smtp-sink/smtp-source only.
echo 'postfix postfix/main_mailer_type select No configuration' | $SUDO debconf-set-selections
# tshark: do not ask whether non-root users may capture.
echo 'wireshark-common wireshark-common/install-setuid boolean false' | $SUDO debconf-set-selections
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
