#!/usr/bin/env bash
# Installs the system tools the test suite drives for real: a software TPM (swtpm) with
# tpm2-tools for the attestation tests, gdb for the debugger-attach hardening tests,
# iproute2/iptables/conntrack/procps (sysctl)/tcpdump for the network-namespace lab, and Debian's chromium
# for the console's browser tests.
set -euo pipefail
missing=()
command -v swtpm >/dev/null 2>&1 || missing+=(swtpm swtpm-tools)
command -v tpm2_createprimary >/dev/null 2>&1 || missing+=(tpm2-tools)
command -v gdb >/dev/null 2>&1 || missing+=(gdb)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v conntrack >/dev/null 2>&1 || missing+=(conntrack)
command -v sysctl >/dev/null 2>&1 || missing+=(procps)
command -v tcpdump >/dev/null 2>&1 || missing+=(tcpdump)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "The tests need: ${missing[*]}. Install them (Debian/Ubuntu): sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing test dependencies: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
