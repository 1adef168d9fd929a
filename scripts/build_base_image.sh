#!/usr/bin/env bash
# Build a minimal Debian bookworm + Python 3.11 base image without any registry
# (debootstrap + docker import) and tag it locally; reuse it when already present.
#   scripts/build_base_image.sh [TAG]        (default vadblocks-base:bookworm-py311)
# The host's extra CA certificates (/usr/local/share/ca-certificates) go into the image,
# so pip inside a build trusts the same HTTPS proxy as the host.
set -euo pipefail
TAG=${1:-${VADBLOCKS_BASE_IMAGE:-vadblocks-base:bookworm-py311}}
if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "base image $TAG: present"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
MIRROR=${DEBIAN_MIRROR:-$(grep -rhoE '^(URIs:|deb) *https?://[^ ]+/debian/?' /etc/apt/sources.list \
  /etc/apt/sources.list.d/ 2>/dev/null | grep -oE 'https?://[^ ]+' | head -n1 || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
ROOTFS=$(mktemp -d /tmp/vadblocks-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
echo "base image $TAG: debootstrap bookworm from $MIRROR"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$ROOTFS" "$MIRROR" \
  >/tmp/vadblocks-debootstrap.log 2>&1 || { tail -20 /tmp/vadblocks-debootstrap.log >&2; exit 1; }
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$ROOTFS/usr/local/share/ca-certificates/"
  chroot "$ROOTFS" update-ca-certificates >/dev/null
fi
chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin
tar -C "$ROOTFS" -c . | docker import -c 'CMD ["/bin/bash"]' -c 'ENV LANG=C.UTF-8' - "$TAG" >/dev/null
echo "base image $TAG: built"
