#!/usr/bin/env bash
# Build the root image of the real-LVM test VM (Debian bookworm, cloud kernel, lvm2, sshd, restic,
# prometheus-node-exporter, the IRIS emulator's source in /opt/irisemu-src).
#
# Output, all under ${IRISOPS_VM_CACHE:-<repo>/.cache/vm}:
#   rootfs/            debootstrap tree (kernel + initrd are booted from rootfs/boot)
#   root.img           ext4 image made with `mkfs.ext4 -d rootfs` (sparse); VMs boot a qcow2 overlay of it
#   id_ed25519{,.pub}  SSH key pair authorized for root inside the image
#   image.stamp        hash of this script and of tests/emulator; the image is rebuilt only when one of them changes
#                      (or with --force)
#   rootfs.stamp       hash of this script: when only tests/emulator changed, the debootstrapped tree is kept and only
#                      /opt/irisemu-src and root.img are made again (seconds instead of minutes)
#
# Inside the image, for the VM tests (tests/vm, the demo, the benchmark), nothing of which needs the network at test
# time: restic and prometheus-node-exporter (its service disabled at boot: a test starts it with the textfile
# directory it wants), openssh-client (restic's sftp backend), tests/emulator in /opt/irisemu-src (install
# instances with python3 /opt/irisemu-src/install.py ...), the instance owner irisowner (uid/gid 51773, as in
# InterSystems' containers).
#
# Needs root (debootstrap, chroot), debootstrap, e2fsprogs >= 1.43 (mkfs.ext4 -d), ssh-keygen.
# Network: the Debian mirror only (the one apt uses on this machine, or $DEBIAN_MIRROR).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
cache=${IRISOPS_VM_CACHE:-$repo/.cache/vm}
suite=${DEBIAN_SUITE:-bookworm}
img_size=${IRISOPS_VM_ROOT_SIZE:-3G}
force=0
[ "${1:-}" = "--force" ] && force=1

packages=linux-image-cloud-amd64,lvm2,python3,systemd-sysv,udev,kmod,xfsprogs,e2fsprogs,openssh-server,iproute2,ifupdown,isc-dhcp-client,sudo,rsync,procps
# test tools of tests/vm (restic repository over sftp, node_exporter scrape)
packages=$packages,restic,prometheus-node-exporter,openssh-client
# python3-apt: Ansible's package module (the lvm_backup role's "Packages lvm2 and restic") needs it on Debian and
# would install it from the network, which the VM does not have (the demo failed there: "Unable to locate package")
packages=$packages,python3-apt
# thin_check: LVM runs it when it activates a thin pool (the thin-volume case)
packages=$packages,thin-provisioning-tools

mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
fi

emulator=$repo/tests/emulator
[ -f "$emulator/install.py" ] || { echo "build-image: $emulator/install.py is missing" >&2; exit 1; }
# the script and every file of the emulator (names and contents, without caches)
emulator_files() {
    (cd "$emulator" && find . -type f ! -path '*/__pycache__/*' ! -path '*/.pytest_cache/*' ! -name '*.pyc' -print0 \
        | LC_ALL=C sort -z | xargs -0 sha256sum)
}
base_stamp=$(sha256sum < "$0" | cut -d' ' -f1)
stamp_value=$( { echo "$base_stamp"; emulator_files; } | sha256sum | cut -d' ' -f1)
mkdir -p "$cache"
# one build at a time; start.sh takes this lock shared while it makes a VM's overlay of root.img
exec 9>"$cache/build.lock"
flock 9
if [ $force = 0 ] && [ -f "$cache/root.img" ] && [ "$(cat "$cache/image.stamp" 2>/dev/null)" = "$stamp_value" ]; then
    echo "build-image: $cache/root.img is up to date (use --force to rebuild)"
    exit 0
fi

t0=$(date +%s)
[ -f "$cache/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C irisops-vm-rig -f "$cache/id_ed25519"

rootfs=$cache/rootfs
if [ $force = 0 ] && [ -d "$rootfs" ] && [ "$(cat "$cache/rootfs.stamp" 2>/dev/null)" = "$base_stamp" ]; then
    # only tests/emulator changed: the debootstrapped and configured tree (rootfs.stamp = this script) is reused
    echo "build-image: only tests/emulator changed: refreshing /opt/irisemu-src in the cached rootfs"
    t1=$(date +%s)
else
rm -f "$cache/rootfs.stamp"
if [ -d "$rootfs" ]; then
    # a previous (maybe half-finished) build: start from scratch
    for m in proc sys dev/pts dev; do umount "$rootfs/$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$rootfs"
fi
echo "build-image: debootstrap $suite from $mirror"
if ! debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" > "$cache/debootstrap.log" 2>&1; then
    tail -30 "$cache/debootstrap.log" >&2
    echo "build-image: debootstrap failed, full log in $cache/debootstrap.log" >&2
    exit 1
fi
t1=$(date +%s)

# --- configuration inside the tree -------------------------------------------------------------
echo irisops-vm > "$rootfs/etc/hostname"
cat > "$rootfs/etc/hosts" <<'HOSTS'
127.0.0.1 localhost
127.0.1.1 irisops-vm
HOSTS
cat > "$rootfs/etc/fstab" <<'FSTAB'
LABEL=irisops-root / ext4 rw,errors=remount-ro 0 1
FSTAB
# net.ifnames=0 on the kernel command line (start.sh) makes the virtio NIC eth0
cat > "$rootfs/etc/network/interfaces" <<'IFACES'
auto lo
iface lo inet loopback

auto eth0
iface eth0 inet dhcp
IFACES
mkdir -p "$rootfs/root/.ssh"
chmod 700 "$rootfs/root/.ssh"
cp "$cache/id_ed25519.pub" "$rootfs/root/.ssh/authorized_keys"
chmod 600 "$rootfs/root/.ssh/authorized_keys"
cat > "$rootfs/etc/ssh/sshd_config.d/irisops-rig.conf" <<'SSHD'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
SSHD
# each VM gets its own machine-id at first boot
: > "$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
# nothing in the VM should try to reach the network on a timer
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
# a serial console log that shows when sshd is up
mkdir -p "$rootfs/etc/systemd/system/ssh.service.d"
cat > "$rootfs/etc/systemd/system/ssh.service.d/console.conf" <<'UNIT'
[Service]
ExecStartPost=/bin/sh -c 'echo IRISOPS-RIG-SSH-READY > /dev/ttyS0 || true'
UNIT
# node_exporter is started by the tests that scrape it (with their own textfile directory), not at boot
rm -f "$rootfs"/etc/systemd/system/*.wants/prometheus-node-exporter*
# the owner of the instances the tests install
chroot "$rootfs" sh -c 'getent group irisowner >/dev/null || groupadd --gid 51773 irisowner; id irisowner >/dev/null 2>&1 || useradd --uid 51773 --gid 51773 --create-home --shell /bin/bash irisowner'
# trim
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*

ls "$rootfs"/boot/vmlinuz-* "$rootfs"/boot/initrd.img-* >/dev/null
echo "$base_stamp" > "$cache/rootfs.stamp"
fi

# the IRIS emulator's source (TEST-ONLY), on every build
rsync -a --delete --exclude=__pycache__/ --exclude='*.pyc' --exclude=.pytest_cache/ "$emulator/" "$rootfs/opt/irisemu-src/"

rm -f "$cache/root.img.tmp"
truncate -s "$img_size" "$cache/root.img.tmp"
mkfs.ext4 -q -F -L irisops-root -d "$rootfs" "$cache/root.img.tmp"
mv "$cache/root.img.tmp" "$cache/root.img"
echo "$stamp_value" > "$cache/image.stamp"
t2=$(date +%s)
echo "build-image: debootstrap $((t1 - t0)) s, configure + emulator + mkfs $((t2 - t1)) s, total $((t2 - t0)) s"
echo "build-image: image $(du -h --apparent-size "$cache/root.img" | cut -f1) apparent, $(du -h "$cache/root.img" | cut -f1) allocated"
