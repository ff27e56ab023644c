#!/usr/bin/env bash
# Build the test images locally; there is no container registry on the rig machines.
#
#   bash tests/harness/build-images.sh [--no-emu] [--force]
#
#   irisops/base:bookworm     debootstrap --variant=minbase rootfs (python3, sudo, procps, iproute2, systemd, dbus),
#                             trimmed, `docker import`ed. The rootfs tarball is cached in .cache/images/ so a second
#                             run skips debootstrap; the image is re-imported only when the tarball changes.
#   irisops/systemd:bookworm  docker build (tests/harness/images/systemd.Dockerfile): systemd as PID 1,
#                             STOPSIGNAL SIGRTMIN+3, masked udev/getty/kernel mounts, empty machine-id.
#   irisops/iris-emu:bookworm docker build (tests/harness/images/iris-emu.Dockerfile) FROM the systemd image:
#                             tests/emulator in /opt/irisemu-src, instances IRIS (iris, /usr/irissys, irisowner) and
#                             CACHE (cache, /usr/cachesys, cacheusr), started at boot by irisemu-instances.service.
#                             Rebuilt whenever tests/emulator changes (docker's layer cache sees the new files).
#                             Also openssh-server (not started at boot) and restic; root accepts the test key pair
#                             .cache/images/emu_ssh_key{,.pub} (generated here once, $IRISOPS_EMU_SSH_KEY):
#                             ssh -i "$IRISOPS_EMU_SSH_KEY" -o ProxyCommand='docker exec -i CTR /usr/sbin/sshd -i' root@x
#
# --no-emu   stop after the systemd image.   --force   debootstrap and import again even if cached.
# Needs root (debootstrap), a running docker engine and the Debian mirror (the one apt uses, or $DEBIAN_MIRROR).
set -euo pipefail

# shellcheck source=tests/harness/env.sh
. "$(dirname "$0")/env.sh"
cd "$IRISOPS_REPO"

build_emu=1
force=0
for arg in "$@"; do
    case $arg in
        --no-emu) build_emu=0 ;;
        --force) force=1 ;;
        *) echo "usage: $0 [--no-emu] [--force]" >&2; exit 2 ;;
    esac
done

suite=${DEBIAN_SUITE:-bookworm}
packages=python3,sudo,procps,iproute2,systemd,systemd-sysv,dbus
images_dir=$IRISOPS_CACHE/images
mkdir -p "$images_dir"
export DOCKER_BUILDKIT=0   # no buildx on the rig machines; the classic builder is enough

mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
fi

names=()
secs=()
timed() {
    local name=$1 t0
    shift
    echo "==> build-images: $name"
    t0=$(irisops_now)
    "$@"
    names+=("$name")
    secs+=("$(irisops_elapsed "$t0")")
    echo "<== build-images: $name: ${secs[-1]} s"
}

image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

# --- 1. rootfs tarball (debootstrap) -------------------------------------------------------------------
rootfs_key=$(printf '%s\n' "$suite" "minbase" "$packages" "trim-v1" | sha256sum | cut -c1-12)
rootfs_tar=$images_dir/rootfs-$suite-$rootfs_key.tar

build_rootfs() {
    if [ $force = 0 ] && [ -s "$rootfs_tar" ]; then
        echo "cached: $rootfs_tar ($(du -h "$rootfs_tar" | cut -f1))"
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "build-images: debootstrap needs root" >&2
        return 1
    fi
    local rootfs=$images_dir/rootfs.tmp
    rm -rf --one-file-system "$rootfs"
    echo "debootstrap --variant=minbase --include=$packages $suite from $mirror"
    debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >"$images_dir/debootstrap.log" 2>&1 || {
        tail -n 30 "$images_dir/debootstrap.log" >&2
        return 1
    }
    # trim: package caches and lists, docs, man pages, logs (apt-get update works again in derived images)
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
        "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/var/cache/debconf/*-old "$rootfs"/tmp/*
    find "$rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'C.*' ! -name locale.alias -exec rm -rf {} +
    tar --numeric-owner -C "$rootfs" -cf "$rootfs_tar.tmp" .
    mv "$rootfs_tar.tmp" "$rootfs_tar"
    rm -rf --one-file-system "$rootfs"
    # older tarballs of other package sets are dead weight
    find "$images_dir" -maxdepth 1 -name "rootfs-$suite-*.tar" ! -name "$(basename "$rootfs_tar")" -delete
    echo "built: $rootfs_tar ($(du -h "$rootfs_tar" | cut -f1))"
}

# --- 2. base image (docker import) ---------------------------------------------------------------------
import_base() {
    local stamp_file=$images_dir/base.stamp want have
    want=$(sha256sum "$rootfs_tar" | cut -d' ' -f1)
    have=$(image_id "$IRISOPS_IMAGE_BASE")
    if [ $force = 0 ] && [ -n "$have" ] && [ "$(cat "$stamp_file" 2>/dev/null)" = "$want $have" ]; then
        echo "up to date: $IRISOPS_IMAGE_BASE ($have)"
        return 0
    fi
    docker import -c 'CMD ["/bin/bash"]' -m "debootstrap $suite minbase ($packages)" "$rootfs_tar" "$IRISOPS_IMAGE_BASE" >/dev/null
    have=$(image_id "$IRISOPS_IMAGE_BASE")
    echo "$want $have" >"$stamp_file"
    echo "imported: $IRISOPS_IMAGE_BASE ($have)"
}

# --- 3. systemd image ----------------------------------------------------------------------------------
build_systemd() {
    docker build -q --build-arg "BASE_IMAGE=$IRISOPS_IMAGE_BASE" -t "$IRISOPS_IMAGE_SYSTEMD" \
        -f tests/harness/images/systemd.Dockerfile tests/harness/images
    echo "built: $IRISOPS_IMAGE_SYSTEMD"
}

# --- 4. emulator image ---------------------------------------------------------------------------------
build_emu() {
    if [ ! -f tests/emulator/install.py ]; then
        echo "build-images: tests/emulator/install.py is missing; cannot build $IRISOPS_IMAGE_EMU" >&2
        return 1
    fi
    # A clean build context: the emulator without caches, plus the image files.
    local ctx=$images_dir/emu-context
    mkdir -p "$ctx"
    rsync -a --delete --exclude=__pycache__/ --exclude='*.pyc' --exclude=.pytest_cache/ \
        tests/emulator/ "$ctx/emulator/"
    cp tests/harness/images/iris-emu.Dockerfile tests/harness/images/irisemu-instances.service "$ctx/"
    # the test key pair root accepts over `sshd -i`: made once, kept (a new key would rebuild the image layers)
    if [ ! -s "$IRISOPS_EMU_SSH_KEY" ] || [ ! -s "$IRISOPS_EMU_SSH_KEY.pub" ]; then
        rm -f "$IRISOPS_EMU_SSH_KEY" "$IRISOPS_EMU_SSH_KEY.pub"
        ssh-keygen -q -t ed25519 -N '' -C irisops-emu-test -f "$IRISOPS_EMU_SSH_KEY"
    fi
    cp "$IRISOPS_EMU_SSH_KEY.pub" "$ctx/emu_ssh_key.pub"
    local old new
    old=$(image_id "$IRISOPS_IMAGE_EMU")
    docker build -q --build-arg "BASE_IMAGE=$IRISOPS_IMAGE_SYSTEMD" -t "$IRISOPS_IMAGE_EMU" \
        -f "$ctx/iris-emu.Dockerfile" "$ctx"
    new=$(image_id "$IRISOPS_IMAGE_EMU")
    if [ -n "$old" ] && [ "$old" != "$new" ]; then
        # the replaced image is now untagged; drop it unless a container still uses it
        docker rmi "$old" >/dev/null 2>&1 || true
    fi
    echo "built: $IRISOPS_IMAGE_EMU"
}

t_all=$(irisops_now)
timed "rootfs ($suite minbase)" build_rootfs
timed "import $IRISOPS_IMAGE_BASE" import_base
timed "build $IRISOPS_IMAGE_SYSTEMD" build_systemd
if [ $build_emu = 1 ]; then
    timed "build $IRISOPS_IMAGE_EMU" build_emu
fi

echo
echo "build-images timings:"
for i in "${!names[@]}"; do
    printf '  %-45s %8s s\n' "${names[$i]}" "${secs[$i]}"
done
printf '  %-45s %8s s\n' "total" "$(irisops_elapsed "$t_all")"
