#!/usr/bin/env bash
# Boot a throw-away test VM with real LVM:  start.sh NAME SSH_PORT
#
# The VM boots the kernel/initrd of the rootfs built by build-image.sh, with a qcow2 copy-on-write overlay of
# root.img (so the image stays pristine and every VM can be thrown away) and a second, empty qcow2 disk for the
# volume group (serial "irisops-data": /dev/disk/by-id/virtio-irisops-data inside the VM).
# SSH is forwarded from 127.0.0.1:SSH_PORT to the VM's port 22 (user-mode network with restrict=on: the guest can
# reach nothing but the forwarded port). Log in with  ssh -i .cache/vm/id_ed25519 -p SSH_PORT root@127.0.0.1
#
# Environment: IRISOPS_VM_ACCEL=auto|tcg|kvm (auto: KVM only if /dev/kvm opens and a boot probe succeeds, the
# result is cached in .cache/vm/kvm-probe), IRISOPS_VM_MEM (MiB, 1024), IRISOPS_VM_CPUS (1),
# IRISOPS_VM_DATA_SIZE (4G), IRISOPS_VM_BOOT_TIMEOUT (seconds, 300), IRISOPS_VM_CACHE,
# IRISOPS_VM_CPU (a qemu -cpu model; default host under KVM, qemu's default under TCG),
# IRISOPS_VM_APPEND (extra kernel arguments, default mitigations=off),
# IRISOPS_VM_GUESTFWD (optional, one qemu guestfwd rule without commas, e.g.
#   tcp:10.0.2.100:22-cmd:docker exec -i CTR /usr/sbin/sshd -i
# the guest's connections to 10.0.2.100:22 then each start that command on the host, its stdin/stdout being the
# connection: a host the guest can reach although restrict=on cuts it off from everything else).
set -euo pipefail

name=${1:?usage: start.sh NAME SSH_PORT}
port=${2:?usage: start.sh NAME SSH_PORT}
case $name in *[!A-Za-z0-9_.-]*) echo "start.sh: bad VM name '$name'" >&2; exit 2;; esac
case $port in ''|*[!0-9]*) echo "start.sh: bad port '$port'" >&2; exit 2;; esac

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
cache=${IRISOPS_VM_CACHE:-$repo/.cache/vm}
inst=$cache/instances/$name
key=$cache/id_ed25519
mem=${IRISOPS_VM_MEM:-1024}
cpus=${IRISOPS_VM_CPUS:-1}
data_size=${IRISOPS_VM_DATA_SIZE:-4G}
boot_timeout=${IRISOPS_VM_BOOT_TIMEOUT:-300}
accel=${IRISOPS_VM_ACCEL:-auto}
guestfwd=${IRISOPS_VM_GUESTFWD:-}
case $guestfwd in *,*) echo "start.sh: IRISOPS_VM_GUESTFWD must not contain a comma (qemu's option separator)" >&2; exit 2;; esac

# shared lock until qemu has read kernel, initrd and root.img: build-image.sh (exclusive) replaces them
mkdir -p "$cache"
exec 9>"$cache/build.lock"
flock -s 9
[ -f "$cache/root.img" ] || { echo "start.sh: $cache/root.img missing, run build-image.sh first" >&2; exit 1; }
kernel=$(printf '%s\n' "$cache"/rootfs/boot/vmlinuz-* | sort -V | tail -1)
initrd=$(printf '%s\n' "$cache"/rootfs/boot/initrd.img-* | sort -V | tail -1)

if [ -f "$inst/qemu.pid" ] && kill -0 "$(cat "$inst/qemu.pid")" 2>/dev/null; then
    echo "start.sh: VM $name is already running (pid $(cat "$inst/qemu.pid")); stop.sh $name first" >&2
    exit 1
fi
if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
    echo "start.sh: 127.0.0.1:$port is already in use" >&2
    exit 1
fi

ssh_opts=(-i "$key" -p "$port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
          -o BatchMode=yes -o ConnectTimeout=5)

# --- accelerator ------------------------------------------------------------------------------------------
kvm_probe() {
    # boot the kernel without a root fs under KVM; a working KVM reaches the "VFS: Unable to mount root" panic
    # in a few seconds. (Measured on the rig host: KVM hung after "Probing EDD" or aborted, so TCG is used.)
    local log
    log=$(mktemp)
    # qemu's exit status says nothing useful here (it aborts, hangs until the timeout, or exits on the panic)
    (timeout 30 qemu-system-x86_64 -accel kvm -cpu host -m 256 -display none -monitor none -no-reboot \
        -serial "file:$log" -kernel "$kernel" -append "console=ttyS0 panic=-1 root=/dev/nonexistent" \
        >/dev/null 2>&1) 2>/dev/null || true
    if grep -q -e "Kernel panic" -e "Unable to mount root" "$log"; then rm -f "$log"; return 0; fi
    rm -f "$log"; return 1
}
if [ "$accel" = auto ]; then
    if [ -r "$cache/kvm-probe" ]; then
        accel=$(cat "$cache/kvm-probe")
    elif [ -c /dev/kvm ] && (exec 3<>/dev/kvm) 2>/dev/null && kvm_probe; then
        accel=kvm; echo kvm > "$cache/kvm-probe"
    else
        accel=tcg; echo tcg > "$cache/kvm-probe"
    fi
fi
cpu_args=()
[ "$accel" = kvm ] && cpu_args=(-cpu host)
# e.g. IRISOPS_VM_CPU=max under TCG: the instructions TCG can emulate (AES-NI, PCLMULQDQ, SSE4.2, ...), which makes
# the guest's ssh and restic crypto several times faster than on the default qemu64 model
[ -n "${IRISOPS_VM_CPU:-}" ] && cpu_args=(-cpu "$IRISOPS_VM_CPU")

# Extra kernel arguments. Default mitigations=off: a throw-away test VM runs only the project's own code, and
# under TCG the Spectre v2 retpolines cost ~10% (measured 2026-12-07 on the rig, same VM, same commands: python3
# start 1.58 -> 1.46 s per 10, 300 execs of /bin/true 8.2 -> 7.1 s, lvs 0.62 -> 0.58 s per 3, sha256 of 64 MiB
# 2.28 -> 1.93 s). IRISOPS_VM_APPEND="" boots with the distribution's defaults.
append=${IRISOPS_VM_APPEND-mitigations=off}

# --- disks -----------------------------------------------------------------------------------------------
rm -rf "$inst"
mkdir -p "$inst"
qemu-img create -q -f qcow2 -b "$cache/root.img" -F raw "$inst/root.qcow2"
qemu-img create -q -f qcow2 "$inst/data.qcow2" "$data_size"
echo "$port" > "$inst/ssh_port"

t0=$(date +%s.%N)
qemu-system-x86_64 -name "irisops-$name" -accel "$accel" "${cpu_args[@]}" -m "$mem" -smp "$cpus" \
    -kernel "$kernel" -initrd "$initrd" \
    -append "root=LABEL=irisops-root rw console=ttyS0 net.ifnames=0 systemd.show_status=false $append" \
    -drive "file=$inst/root.qcow2,if=none,id=root,format=qcow2,cache=unsafe,discard=unmap" \
    -device virtio-blk-pci,drive=root \
    -drive "file=$inst/data.qcow2,if=none,id=data,format=qcow2,cache=unsafe" \
    -device virtio-blk-pci,drive=data,serial=irisops-data \
    -nic "user,model=virtio,restrict=on,hostfwd=tcp:127.0.0.1:$port-:22${guestfwd:+,guestfwd=$guestfwd}" \
    -serial "file:$inst/console.log" -display none -monitor none \
    -daemonize -pidfile "$inst/qemu.pid" 9>&-

exec 9>&-
pid=$(cat "$inst/qemu.pid")
deadline=$(( $(date +%s) + boot_timeout ))
until ssh "${ssh_opts[@]}" root@127.0.0.1 true 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "start.sh: qemu for $name exited during boot; console:" >&2
        tail -40 "$inst/console.log" >&2 || true
        exit 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "start.sh: $name: no SSH on 127.0.0.1:$port after ${boot_timeout}s; console tail:" >&2
        tail -40 "$inst/console.log" >&2 || true
        exit 1
    fi
    sleep 2
done
t1=$(date +%s.%N)
printf 'start.sh: VM %s up (accel %s, %s MiB, %s vCPU): SSH on 127.0.0.1:%s after %.1f s\n' \
    "$name" "$accel" "$mem" "$cpus" "$port" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')"
