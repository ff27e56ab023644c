#!/usr/bin/env bash
# Fleet test of playbooks/install_hooks.yml (irisops.backup.hooks): start N systemd containers from
# irisops/iris-emu:bookworm (each with the emulated instances IRIS and CACHE), install the hooks on all of them in
# one ansible-playbook run, and print how long it took. Then:
#   * a second run that must report changed=0 on every host (idempotence), also timed;
#   * a drill: the generic pre hook on every host (both instances must be frozen, IsWDSuspendedExt 5, as read by
#     `irisops-hook status --json`), then the post hook (both thawed again), timed;
#   * with --remove: removal (hooks_state=absent) on every host, timed.
# No assertion on any time. Prints hosts per minute for each step and a table of them at the end. Containers are
# removed at the end unless --keep.
#
#   bash tests/fleet/run-hooks-fleet.sh [--hosts N] [--forks F] [--remove] [--keep]   (defaults: 20 hosts, forks = hosts)
#
# The playbook runs from a collection tarball built from the working tree (ansible-galaxy collection build) and
# installed into a temporary collections path, as users get it: this also proves that the role finds
# plugins/module_utils/_iris.py in an installed collection, and later edits of the tree cannot disturb the runs.
#
# Needs the image (bash tests/harness/build-images.sh) and the venv/collections (tests/setup.sh).
set -euo pipefail

# shellcheck source=tests/harness/env.sh disable=SC1091
. "$(dirname "$0")/../harness/env.sh"
cd "$IRISOPS_REPO"

hosts=20
forks=
keep=0
remove=0
while [ $# -gt 0 ]; do
    case $1 in
        --hosts) hosts=$2; shift 2 ;;
        --forks) forks=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        --remove) remove=1; shift ;;
        *) echo "usage: $0 [--hosts N] [--forks F] [--remove] [--keep]" >&2; exit 2 ;;
    esac
done
forks=${forks:-$hosts}
prefix=irisops-fleet
work=$(mktemp -d /tmp/irisops-fleet.XXXXXX)
names=()
for i in $(seq -w 1 "$hosts"); do names+=("$prefix-$i"); done

# timed "step<TAB>seconds" rows for the table at the end; hosts/minute = hosts * 60 / seconds
steps=()
rate() { awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.1f", n * 60 / s; else print "-" }'; }
timed() {  # timed STEP SECONDS: print the hosts/minute line and keep the row
    steps+=("$1"$'\t'"$2")
    echo "fleet:   $1: ${#names[@]} hosts in $2 s = $(rate "${#names[@]}" "$2") hosts/minute"
}

cleanup() {
    if [ "$keep" = 1 ]; then
        echo "fleet: kept ${#names[@]} containers ($prefix-*) and $work"
        return
    fi
    docker rm -f "${names[@]}" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

docker image inspect "$IRISOPS_IMAGE_EMU" >/dev/null 2>&1 || {
    echo "fleet: image $IRISOPS_IMAGE_EMU missing - run tests/harness/build-images.sh first" >&2; exit 1; }

# Every container's systemd, logind etc. hold about 6 inotify instances of uid 0 (the containers share the host's
# uids), and fs.inotify.max_user_instances (128 by default) caps them per uid for the whole host: beyond it a new
# container's systemd exits at once (exit code 255). Say so before starting when the fleet will not fit.
inotify_check() {
    local max used need
    max=$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null) || return 0
    [ "$(id -u)" = 0 ] || return 0
    used=$(find /proc/[0-9]*/fd -lname 'anon_inode:inotify' -printf '%h\n' 2>/dev/null |
           while read -r d; do stat -c %u "${d%/fd}" 2>/dev/null; done | grep -c '^0$') || true  # processes come and go
    need=$((hosts * 6))
    echo "fleet: inotify instances of uid 0: $used in use, about $need needed, fs.inotify.max_user_instances $max"
    if [ $((used + need)) -gt "$max" ]; then
        echo "fleet: WARNING: $hosts containers will probably not all start (other containers hold $used):" \
             "use --hosts $(((max - used) / 6)) or raise the limit (sysctl -w fs.inotify.max_user_instances=512)" >&2
    fi
}
inotify_check

t0=$(irisops_now)
docker rm -f "${names[@]}" >/dev/null 2>&1 || true
for n in "${names[@]}"; do
    # same settings as the molecule scenarios: systemd as PID 1 unprivileged, no network
    docker run -d --name "$n" --hostname "$n" --add-host "$n:127.0.1.1" --network none \
        --cap-add ALL --cap-drop SYS_RESOURCE --tmpfs /run --tmpfs /run/lock \
        -v /sys/fs/cgroup:/sys/fs/cgroup:ro --stop-signal SIGRTMIN+3 \
        "$IRISOPS_IMAGE_EMU" /lib/systemd/systemd >/dev/null
done
wait_one() {
    local n=$1 i
    docker exec "$n" systemctl is-system-running --wait >/dev/null 2>&1 || true
    for i in $(seq 1 60); do
        if docker exec "$n" sh -c 'iris qlist IRIS | cut -d^ -f4 | grep -q ^running &&
                                   ccontrol qlist CACHE | cut -d^ -f4 | grep -q ^running' 2>/dev/null; then
            return 0
        fi
        [ "$(docker inspect --format '{{.State.Running}}' "$n" 2>/dev/null)" = true ] || break
        sleep 1
    done
    # a container whose systemd exits at once: with many systemd containers on the host (other scenarios running
    # too), fs.inotify.max_user_instances (128 by default, about 5 per container) is the usual limit
    echo "fleet: $n: instances did not come up (container $(docker inspect --format '{{.State.Status}}, exit code {{.State.ExitCode}}' "$n" 2>&1); $(docker ps -q | wc -l) containers running; fs.inotify.max_user_instances $(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null))" >&2
    docker logs --tail 5 "$n" 2>&1 | sed "s/^/fleet: $n: /" >&2
    return 1
}
export -f wait_one
printf '%s\n' "${names[@]}" | xargs -P 10 -I{} bash -c 'wait_one {}'
up_s=$(irisops_elapsed "$t0")
echo "fleet: ${#names[@]} containers up in $up_s s"
timed "containers up" "$up_s"

inv=$work/inventory.yml
{
    echo "all:"
    echo "  vars:"
    echo "    ansible_connection: community.docker.docker"
    echo "    ansible_python_interpreter: /usr/bin/python3"
    echo "  hosts:"
    for n in "${names[@]}"; do echo "    $n:"; done
} > "$inv"
export ANSIBLE_PIPELINING=true ANSIBLE_FORKS=$forks ANSIBLE_HOST_KEY_CHECKING=false

t=$(irisops_now)
ansible-galaxy collection build --output-path "$work/build" . > "$work/galaxy-build.log" 2>&1 || {
    cat "$work/galaxy-build.log"; exit 1; }
ANSIBLE_COLLECTIONS_PATH=$work/collections ansible-galaxy collection install --offline --no-deps --force -p "$work/collections" "$work"/build/irisops-backup-*.tar.gz \
    > "$work/galaxy-install.log" 2>&1 || { cat "$work/galaxy-install.log"; exit 1; }
test -f "$work/collections/ansible_collections/irisops/backup/plugins/module_utils/_iris.py" || {
    echo "fleet: the collection was not installed into $work/collections" >&2; cat "$work/galaxy-install.log"; exit 1; }
export ANSIBLE_COLLECTIONS_PATH=$work/collections:$ANSIBLE_COLLECTIONS_PATH
echo "fleet: collection built and installed into $work/collections in $(irisops_elapsed "$t") s"

# recap_check LOG WANT_CHANGED: all hosts ok, failed=0, unreachable=0; WANT_CHANGED 'any' / '0' / '>0'
recap_check() {
    local log=$1 want=$2
    python3 - "$log" "$want" "${#names[@]}" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
want, n = sys.argv[2], int(sys.argv[3])
rows = re.findall(r'^(irisops-fleet-\d+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', text, re.M)
bad = [r for r in rows if r[3] != '0' or r[4] != '0']
changed = [int(r[2]) for r in rows]
ok = len(rows) == n and not bad and (want == 'any' or (want == '0' and not any(changed)) or
                                     (want == '>0' and all(changed)))
print('fleet:   recap %d hosts, failed/unreachable on %d, changed per host min %s max %s -> %s' % (
    len(rows), len(bad), min(changed) if changed else '-', max(changed) if changed else '-', 'OK' if ok else 'FAIL'))
sys.exit(0 if ok else 1)
PY
}

play() {
    local label=$1 want=$2 t secs
    shift 2
    t=$(irisops_now)
    if ! ansible-playbook -i "$inv" irisops.backup.install_hooks "$@" > "$work/$label.log" 2>&1; then
        tail -40 "$work/$label.log"
        echo "fleet: $label: ansible-playbook failed (log $work/$label.log)" >&2
        keep=1
        exit 1
    fi
    secs=$(irisops_elapsed "$t")
    echo "fleet: $label on ${#names[@]} hosts (forks $forks): $secs s"
    timed "$label" "$secs"
    recap_check "$work/$label.log" "$want" || { keep=1; exit 1; }
}

targets='{"hooks_targets": ["vmware_backupscripts", "generic"]}'
play install '>0' -e "$targets"
# the role's included task files must come from the installed tarball, not from the working tree
grep -q "included: $work/collections/ansible_collections/irisops/backup/roles/hooks/tasks/" "$work/install.log" || {
    echo "fleet: the role did not run from the installed collection" >&2; keep=1; exit 1; }
play install-again 0 -e "$targets"

# drill: freeze with the generic pre hook on every host, read the state, thaw with the post hook
t=$(irisops_now)
ansible all -i "$inv" -m ansible.builtin.command -a /usr/local/sbin/irisops-pre-snapshot > "$work/pre.log" 2>&1 || {
    tail -20 "$work/pre.log"; keep=1; echo "fleet: pre hook failed" >&2; exit 1; }
ansible all -i "$inv" -m ansible.builtin.command -a '/usr/local/sbin/irisops-hook status --json' \
    > "$work/status-frozen.log" 2>&1 || true
ansible all -i "$inv" -m ansible.builtin.command -a /usr/local/sbin/irisops-post-snapshot > "$work/post.log" 2>&1 || {
    tail -20 "$work/post.log"; keep=1; echo "fleet: post hook failed" >&2; exit 1; }
ansible all -i "$inv" -m ansible.builtin.command -a '/usr/local/sbin/irisops-hook status --json' \
    > "$work/status-thawed.log" 2>&1 || true
drill_s=$(irisops_elapsed "$t")
echo "fleet: drill (pre hook, status, post hook, status) on ${#names[@]} hosts: $drill_s s"
timed "drill" "$drill_s"
python3 - "$work/status-frozen.log" "$work/status-thawed.log" "${#names[@]}" <<'PY' || { keep=1; exit 1; }
import json, re, sys
def frozen_counts(path):
    text = open(path).read()
    res = {}
    for host, body in re.findall(r'^(irisops-fleet-\d+) \| CHANGED \| rc=0 >>\n(\{.*?\n\})$', text, re.M | re.S):
        res[host] = sorted(i['name'] for i in json.loads(body)['instances'] if i['frozen'])
    return res
n = int(sys.argv[3])
fro, tha = frozen_counts(sys.argv[1]), frozen_counts(sys.argv[2])
ok = (len(fro) == n and all(v == ['CACHE', 'IRIS'] for v in fro.values())
      and len(tha) == n and all(v == [] for v in tha.values()))
print('fleet:   frozen after the pre hook on %d/%d hosts (IRIS and CACHE), thawed after the post hook on %d/%d -> %s'
      % (sum(v == ['CACHE', 'IRIS'] for v in fro.values()), n, sum(v == [] for v in tha.values()), n,
         'OK' if ok else 'FAIL'))
sys.exit(0 if ok else 1)
PY

if [ "$remove" = 1 ]; then
    play remove '>0' -e hooks_state=absent
fi
total_s=$(irisops_elapsed "$t0")
echo
echo "fleet: ${#names[@]} hosts, forks $forks"
printf '  %-16s %8s  %s\n' step seconds hosts/minute
for r in "${steps[@]}"; do
    printf '  %-16s %8s  %s\n' "${r%%$'\t'*}" "${r#*$'\t'}" "$(rate "${#names[@]}" "${r#*$'\t'}")"
done
printf '  %-16s %8s  %s\n' total "$total_s" "$(rate "${#names[@]}" "$total_s")"
echo "fleet: total $total_s s"
