#!/usr/bin/env bash
# Debian packages the test suite needs besides Docker (CI / development machines; needs root):
#   chromium        the real headless browser of the report tests (Playwright drives /usr/bin/chromium)
#   portaudio19-dev PortAudio headers: Edge Impulse's Python SDK imports pyaudio, which compiles against them
#   postgresql      the server the two-worker `vadblocks tune` test starts (a temporary cluster per test)
#   g++             compiles the C++ sources `vadblocks export` writes for TensorFlow Lite Micro
set -euo pipefail
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -f /usr/include/portaudio.h ] || need+=(portaudio19-dev python3-dev)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
command -v g++ >/dev/null || need+=(g++)
if [ ${#need[@]} -eq 0 ]; then
  echo "system packages: present"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
echo "system packages: installed ${need[*]}"
