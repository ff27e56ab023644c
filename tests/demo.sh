#!/usr/bin/env bash
# Demo of the collection from a fresh clone (README's first command):
#
#   bash tests/demo.sh                the main job: an LVM snapshot backup of two emulated IRIS instances
#   bash tests/demo.sh freeze-thaw    a quicker look (about 1 min): freeze and thaw only, in two containers
#
# "backup" (the default; 523 s on the idle 2-core rig (2026-12-07), most of it Ansible's per-task cost in a VM emulated without
# KVM):
# 1. tests/setup.sh (tools, venv, collections) and tests/harness/build-images.sh (local images);
# 2. starts the repository host: a container of the emulator image used for its sshd only (sftp), no network; the VM
#    reaches it at 10.0.2.100:22 through qemu's guestfwd (IRISOPS_VM_GUESTFWD);
# 3. boots a throw-away qemu VM with real LVM (tests/harness/vm; this kernel has no device-mapper), puts two
#    emulated IRIS instances (tests/emulator: a test stand-in for the real product) on four logical volumes and
#    starts their write load (molecule scenario extensions/molecule/demo: create + prepare);
# 4. runs the collection's playbook irisops.backup.lvm_backup against it, unchanged, with the repository
#    sftp:root@10.0.2.100:/srv/restic/repo (the key and known_hosts put on the VM first, as an operator would):
#    preflight, freeze all, snapshot all, thaw all, mount read-only, restic backup, verify, ExternalSetHistory,
#    retention, clean up, report;
# 5. on the host, what the systemd timer runs: a second run (deduplicated: bytes read and added printed), then
#    `irisops-backup list`, `irisops-backup prune` (the retention policy and its floor) and a scrape of node_exporter
#    (the irisops_ metrics), extensions/molecule/demo/side_effect.yml;
# 6. prints the first run's report and what step 5 printed (also in tests/output/demo/);
# 7. destroys the VM and the repository host, also when a step fails or the demo is interrupted.
#
# "freeze-thaw":
# 1. tests/setup.sh and tests/harness/build-images.sh (local images, no registry);
# 2. starts two containers from irisops/iris-emu:bookworm, each with an emulated IRIS and Cache instance;
# 3. runs tests/demo/freeze-thaw.yml through the community.docker.docker connection: discover every instance
#    (irisops.backup.iris_instance_info), freeze them all (iris_freeze), confirm with the instances that they are
#    frozen, thaw them all (iris_thaw, in an `always:` block), confirm they are thawed;
# 4. prints a report: host, instance, flavour, how long the freeze and the thaw took, the journal file a restore
#    would start from;
# 5. removes the containers, also when a step fails or the demo is interrupted.
set -euo pipefail

# shellcheck source=tests/harness/env.sh
. "$(dirname "$0")/harness/env.sh"
cd "$IRISOPS_REPO"

MODE=${1:-backup}
case $MODE in
    backup | freeze-thaw) ;;
    *) echo "usage: bash tests/demo.sh [backup|freeze-thaw]" >&2; exit 2 ;;
esac
HOSTS=(irisops-demo-1 irisops-demo-2)
OUT=$IRISOPS_REPO/tests/output/demo
mkdir -p "$OUT"
export IRISOPS_DEMO_REPORT=$OUT/report.json
rm -f "$IRISOPS_DEMO_REPORT"

names=()
secs=()
timed() {
    local name=$1 t0
    shift
    echo
    echo "==> demo: $name"
    t0=$(irisops_now)
    "$@"
    names+=("$name")
    secs+=("$(irisops_elapsed "$t0")")
    echo "<== demo: $name: ${secs[-1]} s"
}

remove_containers() {
    docker rm -f "${HOSTS[@]}" >/dev/null 2>&1 || true
}

# The backup repository host of the "backup" demo: a container of the emulator image used only for its sshd (restic
# stores the repository over sftp), without a network; the VM reaches it at 10.0.2.100:22 through qemu's guestfwd,
# which runs `docker exec -i ... sshd -i` per connection (the VM rig does the same, tests/vm/run.py).
REPO_HOST=irisops-demo-repo
export IRISOPS_VM_GUESTFWD="tcp:10.0.2.100:22-cmd:docker exec -i $REPO_HOST sh -c 'mkdir -p /run/sshd && exec /usr/sbin/sshd -i'"
start_repo_host() {
    docker rm -f "$REPO_HOST" >/dev/null 2>&1 || true
    docker run -d --name "$REPO_HOST" --network none --entrypoint /bin/sleep --label irisops.demo=1 \
        "$IRISOPS_IMAGE_EMU" infinity >/dev/null
    docker exec "$REPO_HOST" sh -c 'mkdir -p /run/sshd /srv/restic'
    # root of the repository host accepts this checkout's key (the image may hold another checkout's)
    ssh-keygen -y -f "$IRISOPS_EMU_SSH_KEY" | docker exec -i "$REPO_HOST" sh -c \
        'umask 077 && mkdir -p /root/.ssh && cat > /root/.ssh/authorized_keys'
    # what the operator provisions on the database host: the key and the repository host's known_hosts line
    IRISOPS_DEMO_REPO_HOSTKEY="10.0.2.100 $(docker exec "$REPO_HOST" cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub)"
    export IRISOPS_DEMO_REPO_HOSTKEY
    echo "repository host $REPO_HOST: sftp:root@10.0.2.100:/srv/restic/repo (from the VM)"
}

cleanup() {
    local rc=$?
    echo
    if [ "$MODE" = backup ]; then
        echo "==> demo: destroying the demo VM"
        molecule destroy -s demo >"$OUT/destroy.log" 2>&1 || echo "demo: molecule destroy -s demo failed, see $OUT/destroy.log" >&2
        docker rm -f "$REPO_HOST" >/dev/null 2>&1 || true
    else
        echo "==> demo: removing the demo containers"
        remove_containers
    fi
    if [ $rc -ne 0 ]; then
        echo "demo: FAILED (rc=$rc); see the output above" >&2
    fi
    exit $rc
}

start_containers() {
    remove_containers  # leftovers of an interrupted run
    local h
    for h in "${HOSTS[@]}"; do
        # systemd as PID 1 without privileges; no network, but the container's own name resolves (sudo needs it)
        docker run -d --name "$h" --hostname "$h" --network none --add-host "$h:127.0.1.1" \
            --tmpfs /run --tmpfs /run/lock -v /sys/fs/cgroup:/sys/fs/cgroup:ro \
            --label irisops.demo=1 "$IRISOPS_IMAGE_EMU" >/dev/null
        echo "started $h"
    done
}

child=
run_playbook() {
    # in the background + wait, so that a TERM/INT to this script acts at once (see on_signal)
    ansible-playbook -i tests/demo/inventory.yml tests/demo/freeze-thaw.yml &
    child=$!
    wait "$child"
    child=
}

on_signal() {
    if [ -n "$child" ]; then
        kill -TERM "$child" 2>/dev/null || true
    fi
    exit 130
}

print_report() {
    python3 - "$IRISOPS_DEMO_REPORT" <<'PY'
import json, sys

rows = json.load(open(sys.argv[1]))
if not rows:
    sys.exit("demo: the report is empty")
cols = [("host", "host"), ("instance", "instance"), ("flavour", "flavour"), ("freeze ms", "freeze_ms"),
        ("thaw ms", "thaw_ms"), ("frozen at (UTC)", "frozen_at"), ("journal file to restore from", "journal_file")]
table = [[str(r.get(k) if r.get(k) is not None else "-") for _, k in cols] for r in rows]
widths = [max(len(h), *(len(t[i]) for t in table)) for i, (h, _) in enumerate(cols)]
line = "  ".join("%-*s" % (w, h) for w, (h, _) in zip(widths, cols))
print("\nFreeze/thaw report (%d instances on %d hosts)" % (len(rows), len({r["host"] for r in rows})))
print(line.rstrip())
print("  ".join("-" * w for w in widths))
for t in table:
    print("  ".join("%-*s" % (w, c) for w, c in zip(widths, t)).rstrip())
PY
}

# molecule in the background + wait, so that a TERM/INT to this script acts at once (see on_signal)
molecule_step() {
    molecule "$1" -s demo &
    child=$!
    wait "$child"
    child=
}

trap cleanup EXIT
trap on_signal INT TERM
t_all=$(irisops_now)
timed "setup" bash tests/setup.sh
if [ "$MODE" = backup ]; then
    rm -f "$OUT"/*-report.txt "$OUT"/*-list.txt "$OUT"/*-after.txt
    timed "build images (the repository host's)" bash tests/harness/build-images.sh
    timed "repository host (sshd, sftp)" start_repo_host
    # molecule's create sequence includes prepare: VM image (cached), boot, VG and LVs, instances, write load
    timed "VM with LVM, 2 emulated instances, write load" molecule_step create
    timed "playbook irisops.backup.lvm_backup" molecule_step converge
    # the second run (what the timer runs), list, prune, metrics: extensions/molecule/demo/side_effect.yml
    timed "second run, list, prune, metrics" molecule_step side-effect
    for r in "$OUT"/*-report.txt "$OUT"/*-after.txt; do
        [ -f "$r" ] || { echo "demo: no report was fetched" >&2; exit 1; }
        echo
        cat "$r"
    done
else
    timed "build images" bash tests/harness/build-images.sh
    timed "start ${#HOSTS[@]} containers" start_containers
    timed "freeze/thaw playbook" run_playbook
    print_report
fi
echo
echo "demo timings:"
for i in "${!names[@]}"; do
    printf '  %-46s %8s s\n' "${names[$i]}" "${secs[$i]}"
done
printf '  %-46s %8s s\n' "total" "$(irisops_elapsed "$t_all")"
if [ "$MODE" = backup ]; then
    echo "demo: OK (report also in ${OUT#"$IRISOPS_REPO"/}/)"
else
    echo "demo: OK (report also in ${IRISOPS_DEMO_REPORT#"$IRISOPS_REPO"/})"
fi
