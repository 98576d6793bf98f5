#!/usr/bin/env bash
# Build a local Python 3.11 base image without any container registry: debootstrap Debian bookworm
# (which ships Python 3.11), then `docker import` it. Used by docker/build.sh when the default base
# (python:3.11-slim) cannot be pulled. Needs root (or sudo) for debootstrap and a reachable Debian mirror.
#
#   docker/make-base-image.sh [IMAGE]        # default IMAGE: chorus-base:bookworm-py311
#   FORCE=1 docker/make-base-image.sh        # rebuild even if IMAGE exists
set -euo pipefail

IMAGE="${1:-chorus-base:bookworm-py311}"
SUITE="${SUITE:-bookworm}"

if [[ -z "${FORCE:-}" ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "make-base-image: $IMAGE already exists (FORCE=1 to rebuild)"
    exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "make-base-image: needs root or sudo for debootstrap" >&2; exit 1; }
    SUDO="sudo"
fi

if ! command -v debootstrap >/dev/null; then
    echo "make-base-image: installing debootstrap"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq debootstrap >/dev/null
fi

ROOTFS="$(mktemp -d /tmp/chorus-rootfs.XXXXXX)"
trap '$SUDO rm -rf "$ROOTFS"' EXIT

echo "make-base-image: debootstrap $SUITE into $ROOTFS (a few minutes)"
# minbase + what a python:3.11-slim image offers us: python3.11 with venv/ensurepip, and CA certificates.
# debootstrap's default mirror is used on purpose: pass MIRROR=... to override.
$SUDO debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$ROOTFS" ${MIRROR:+"$MIRROR"} >/tmp/chorus-debootstrap.log 2>&1 || {
    tail -20 /tmp/chorus-debootstrap.log >&2; exit 1; }

# Slim it down the way the official images do: no apt lists, docs or man pages.
$SUDO chroot "$ROOTFS" apt-get clean
$SUDO rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* \
    "$ROOTFS"/usr/share/info/* "$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/var/log/*.log

echo "make-base-image: importing as $IMAGE"
$SUDO tar -C "$ROOTFS" --numeric-owner -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    --message "chorus local base: debootstrap --variant=minbase $SUITE + python3, python3-venv, ca-certificates" \
    - "$IMAGE" >/dev/null
docker run --rm "$IMAGE" python3 --version
echo "make-base-image: done: $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
