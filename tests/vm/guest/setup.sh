#!/usr/bin/env bash
# Golden set-up of the VM rig (runs INSIDE the VM, once per boot, as root; tests/vm/run.py unpacks the rig into
# /opt/irisops-vmrig and runs this in the same ssh call):
#
#   * the on-host backup engine: the files of _backup.ENGINE_FILES (plugins/module_utils/_*.py) in
#     /usr/local/lib/irisops (byte-compiled) and the command /usr/local/sbin/irisops-backup
#     (python3 -I -B /usr/local/lib/irisops/_backup.py "$@");
#   * the sftp repository host 10.0.2.100 (qemu guestfwd to `sshd -i` in the rig's container): the test key, its
#     host key in known_hosts, the repository password files, ssh client settings for that host (a cheap key
#     exchange: the default post-quantum one costs 3-4 s of CPU per connection under TCG);
#   * the layout of the old lvm_backup molecule scenario: VG vgbk on the data disk, LVs sys (192m ext4,
#     /iris/sys: installation directories), dba and dbb (320m XFS, /iris/dba and /iris/dbb: databases of IRISA and
#     IRISB), jrn (128m ext4, /iris/jrn: both journal directories); about 3 GiB of the 4 GiB disk stay free for
#     snapshots;
#   * two emulated IRIS instances (tests/emulator from /opt/irisemu-src in the image) IRISA and IRISB, owner
#     irisowner, databases USER and APP, started: their write daemons are the write load;
#   * a static file on dba and dbb (rig-ballast.bin, random, never rewritten): what a deduplicated second backup
#     does not store again;
#   * the engine's configuration /etc/irisops/backup.json (the rig's base configuration, cases write their own),
#     the repository initialised with `irisops-backup init` (restic's key derivation is calibrated in the VM, so
#     every later open costs what it costs here);
#   (the lvm_snapshot module case uses ansible's module_utils and the collection's plugins that run.py put under
#   /opt/irisops-vmrig/ansible, byte-compiled: nothing to do here).
#
# Prints one "setup: <step> <seconds> s" line per step.
set -euo pipefail

rig=/opt/irisops-vmrig
vg=vgbk
disk=/dev/disk/by-id/virtio-irisops-data
ballast_mib=${RIG_BALLAST_MIB:-2}

t_last=$(date +%s.%N)
step() {
    local now
    now=$(date +%s.%N)
    printf 'setup: %-34s %6.1f s\n' "$1" "$(awk -v a="$t_last" -v b="$now" 'BEGIN {print b - a}')"
    t_last=$now
}

# --- engine ------------------------------------------------------------------------------------------------------
install -d -m 0755 /usr/local/lib/irisops
# byte-compiled by run.py (same Python minor version): copied with their mtimes, so nothing is compiled here
cp -p "$rig"/engine/*.py /usr/local/lib/irisops/
cp -rp "$rig"/engine/__pycache__ /usr/local/lib/irisops/
cat > /usr/local/sbin/irisops-backup <<'WRAPPER'
#!/bin/sh
exec python3 -I -B /usr/local/lib/irisops/_backup.py "$@"
WRAPPER
chmod 0755 /usr/local/sbin/irisops-backup
step "engine"
# run.py --reuse --no-setup: only the engine and the rig's files (unpacked by the same ssh call), the VM's state kept
if [ "${RIG_SETUP_ONLY:-}" = engine ]; then
    echo "setup: done (engine only)"
    exit 0
fi

# --- repository host ---------------------------------------------------------------------------------------------
install -d -m 0700 /etc/irisops
install -m 0600 "$rig/keys/repo_key" /etc/irisops/repo_key
install -m 0644 "$rig/keys/known_hosts" /etc/irisops/known_hosts
printf '%s\n' 'vmrig-repository-password' > /etc/irisops/restic-password
printf '%s\n' 'not-the-repository-password' > /etc/irisops/restic-password.wrong
chmod 0600 /etc/irisops/restic-password /etc/irisops/restic-password.wrong
cat > /etc/ssh/ssh_config.d/irisops-vmrig.conf <<'SSHCONF'
# the rig's sftp repository host (qemu guestfwd to sshd -i in a container): a key exchange that is cheap under TCG,
# and one connection shared by the restic calls that follow each other (a handshake costs seconds under TCG); a
# stopped container ends the shared connection too
Host 10.0.2.100
    KexAlgorithms curve25519-sha256
    ConnectTimeout 20
    ControlMaster auto
    ControlPath /run/irisops-vmrig-ssh-%C
    ControlPersist 20
SSHCONF
step "repository host settings"

# --- LVM ---------------------------------------------------------------------------------------------------------
if ! vgs "$vg" >/dev/null 2>&1; then
    pvcreate -q "$disk"
    vgcreate -q "$vg" "$disk"
fi
mk() {  # lv size fstype mountpoint
    lvs "$vg/$1" >/dev/null 2>&1 || lvcreate -q -y -n "$1" -L "$2" "$vg" >/dev/null
    blkid -o value -s TYPE "/dev/$vg/$1" >/dev/null 2>&1 || "mkfs.$3" -q "/dev/$vg/$1" >/dev/null
    mkdir -p "$4"
    mountpoint -q "$4" || mount -t "$3" "/dev/$vg/$1" "$4"
}
mk sys 192m ext4 /iris/sys
mk dba 320m xfs /iris/dba
mk dbb 320m xfs /iris/dbb
mk jrn 128m ext4 /iris/jrn
step "volume group, 4 LVs, mkfs, mounts"

# --- emulated instances ------------------------------------------------------------------------------------------
install -d -o irisowner -m 0755 /iris/dba /iris/dbb /iris/jrn/irisa /iris/jrn/irisb
for spec in IRISA:/iris/sys/irisa:/iris/dba:/iris/jrn/irisa IRISB:/iris/sys/irisb:/iris/dbb:/iris/jrn/irisb; do
    IFS=: read -r name dir dbdir jrndir <<<"$spec"
    [ -f "$dir/iris.cpf" ] || python3 /opt/irisemu-src/install.py --flavour iris --instance "$name" --dir "$dir" \
        --owner irisowner --databases USER,APP --database-dir "$dbdir" --journal-dir "$jrndir" --start >/dev/null
done
iris qlist
# the rig's write load between the cases (rig.py RIG_LOAD), set by the reset
python3 "$rig/rig.py" reset
step "instances IRISA, IRISB installed, started"

for d in /iris/dba /iris/dbb; do
    [ -f "$d/rig-ballast.bin" ] || head -c $((ballast_mib * 1024 * 1024)) /dev/urandom > "$d/rig-ballast.bin"
done
sync
step "ballast ${ballast_mib} MiB on dba, dbb"

# --- engine configuration, repository ----------------------------------------------------------------------------
python3 "$rig/rig.py" write-config /etc/irisops/backup.json
python3 "$rig/rig.py" golden-repository
step "config, repository initialised"

echo "setup: done"
