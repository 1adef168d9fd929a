#!/usr/bin/env bash
# Make a Docker engine answer on this machine (CI / development machines; needs root).
# Installs Debian's docker.io (and debootstrap, used by build_base_image.sh) when missing,
# starts dockerd in the background when no daemon answers (no systemd here), and waits.
set -euo pipefail
if docker info >/dev/null 2>&1; then
  echo "docker: daemon already answers"
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io debootstrap >/dev/null
fi
if ! pgrep -x dockerd >/dev/null 2>&1; then
  nohup dockerd >/var/log/vadblocks-dockerd.log 2>&1 &
fi
for _ in $(seq 90); do
  if docker info >/dev/null 2>&1; then
    echo "docker: daemon started"
    exit 0
  fi
  sleep 1
done
echo "docker: dockerd did not answer within 90 s; see /var/log/vadblocks-dockerd.log" >&2
exit 1
