# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Freeze-window benchmark: iris_lvm_snapshot (one on-host call) against the seed shell-script sequence.

Runs in a throw-away qemu VM of the rig (tests/harness/vm) with real LVM and 4 emulated IRIS instances, each with its
database and journal directories on their own LVs (installation directories on a shared LV):

  module    irisops.backup.iris_lvm_snapshot, run with `ansible -m` from this machine, inside one module process,
            in each freeze_mode of --freeze-modes: "together" (all instances frozen concurrently, every LV
            snapshotted back to back, all thawed concurrently) and "staggered" (each instance frozen only while
            its own LVs and the shared one are snapshotted).
  baseline  what the seed scripts do, as one shell script run on the host over SSH: `iris session INST -U %SYS
            "##Class(Backup.General).ExternalFreeze()"` for each instance one after the other, `lvcreate -s` for each
            volume, then ExternalThaw for each instance one after the other.

The window of an instance is the time from the start of its freeze to the end of its thaw, measured on the host in
both cases. Prints a table for 1, 2 and 4 instances; asserts nothing about time.

  . tests/harness/env.sh && [IRISOPS_VM_CPUS=2] python3 tests/benchmarks/freeze_window.py [--rounds N] [--port P]
      [--keep] [--reuse]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, '..', '..'))
RIG = os.path.join(REPO, 'tests', 'harness', 'vm')
CACHE = os.environ.get('IRISOPS_VM_CACHE') or os.path.join(REPO, '.cache', 'vm')
KEY = os.path.join(CACHE, 'id_ed25519')
VG = 'vgbench'
SIZES = (1, 2, 4)
SNAP_SIZE = '16M'

PREPARE = r'''
set -e
disk=/dev/disk/by-id/virtio-irisops-data
vgs {vg} >/dev/null 2>&1 || {{ pvcreate -q -y "$disk"; vgcreate -q {vg} "$disk"; }}
mk() {{  # lv size mountpoint
  lvs {vg}/$1 >/dev/null 2>&1 || {{ lvcreate -q -y -L $2 -n $1 {vg}; mkfs.ext4 -q /dev/{vg}/$1; }}
  mkdir -p $3; mountpoint -q $3 || mount /dev/{vg}/$1 $3
}}
mk bsys 128M /bench/sys
id irisowner >/dev/null 2>&1 || useradd -u 51773 -m -s /bin/bash irisowner
for i in 1 2 3 4; do
  mk b${{i}}db 64M /bench/b${{i}}db
  mk b${{i}}jr 32M /bench/b${{i}}jr
  chown irisowner /bench/b${{i}}db /bench/b${{i}}jr
  [ -f /bench/sys/bench$i/iris.cpf ] || python3 /opt/emulator/install.py --flavour iris --instance BENCH$i \
      --dir /bench/sys/bench$i --owner irisowner --databases USER,APP --database-dir /bench/b${{i}}db \
      --journal-dir /bench/b${{i}}jr --start >/dev/null
done
iris qlist
'''

# The seed scripts' sequence (freeze one by one, lvcreate each volume, thaw one by one), timed on the host.
BASELINE = r'''
set -u
now() {{ date +%s%N; }}
insts="{insts}"
lvs_="{lvs}"
declare -A start end
for i in $insts; do
  start[$i]=$(now)
  runuser -u irisowner -- iris session $i -U %SYS "##Class(Backup.General).ExternalFreeze()" >/dev/null 2>&1
  rc=$?; [ $rc -eq 5 ] || echo "freeze of $i: rc $rc" >&2
done
s0=$(now)
for lv in $lvs_; do lvcreate -q -y -s -L {size} -n ${{lv}}_base {vg}/$lv >/dev/null || echo "lvcreate $lv failed" >&2; done
s1=$(now)
for i in $insts; do
  runuser -u irisowner -- iris session $i -U %SYS "##Class(Backup.General).ExternalThaw()" >/dev/null 2>&1
  rc=$?; [ $rc -eq 5 ] || echo "thaw of $i: rc $rc" >&2
  end[$i]=$(now)
done
printf '{{"snapshot_ms": %d, "windows": {{' $(( (s1 - s0) / 1000000 ))
sep=""
for i in $insts; do printf '%s"%s": %d' "$sep" $i $(( (end[$i] - start[$i]) / 1000000 )); sep=", "; done
printf '}}}}\n'
'''


def ssh_argv(port):
    return ['ssh', '-i', KEY, '-p', str(port), '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
            '-o', 'LogLevel=ERROR', '-o', 'BatchMode=yes', 'root@127.0.0.1']


def ssh(port, script, check=True):
    proc = subprocess.run(ssh_argv(port) + ['bash', '-s'], input=script, capture_output=True, text=True,
                          check=False)
    if check and proc.returncode != 0:
        raise SystemExit('ssh script failed (rc %s): %s\n%s' % (proc.returncode, proc.stderr, proc.stdout))
    return proc


def remove_snapshots(port):
    # only the benchmark's own snapshots (suffix _bench from the module, _base from the baseline)
    ssh(port, 'for lv in $(lvs --noheadings -o lv_name,origin %s | awk \'$2 != "" && $1 ~ /_(bench|base)$/ '
              '{print $1}\'); do lvremove -q -y %s/$lv >/dev/null; done' % (VG, VG))


def run_module(port, insts, run_id, deadman_timeout=None, freeze_mode='together'):
    margs = {'instances': insts, 'run_id': run_id, 'size': SNAP_SIZE, 'suffix': '_bench', 'freeze_mode': freeze_mode}
    if deadman_timeout is not None:
        margs['deadman_timeout'] = deadman_timeout
    args = json.dumps(margs)
    env = dict(os.environ, ANSIBLE_HOST_KEY_CHECKING='False', ANSIBLE_PIPELINING='True', ANSIBLE_NOCOLOR='1')
    argv = ['ansible', 'all', '-i', '127.0.0.1,', '-u', 'root', '--private-key', KEY,
            '-e', 'ansible_port=%d ansible_python_interpreter=/usr/bin/python3' % port,
            '-m', 'irisops.backup.iris_lvm_snapshot', '-a', args, '-o']
    started = time.time()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    wall = time.time() - started
    out = proc.stdout.strip()
    if '=>' not in out:
        raise SystemExit('ansible gave no result: %s %s' % (out, proc.stderr))
    res = json.loads(out.split('=>', 1)[1])
    if res.get('failed'):
        raise SystemExit('iris_lvm_snapshot failed: %s' % res.get('msg'))
    windows = dict((n, r['frozen_ms']) for n, r in res['instance_results'].items())
    return {'windows': windows, 'snapshot_ms': res['snapshot_ms'], 'task_wall_ms': int(wall * 1000),
            'split': split_window(res.get('trace') or [])}


def split_window(trace):
    """Where the freeze span (the first freeze call to the last thaw's end) went, ms, from the engine's step trace:
    ``iris`` (ExternalFreeze / ExternalThaw sessions, and the IsWDSuspendedExt check right before the thaw),
    ``lvcreate`` (each lvcreate), ``own`` (everything else: the engine's own code between them)."""
    events = sorted(trace, key=lambda e: e['t'])
    starts = [e['t'] for e in events if e['event'] == 'freeze']
    ends = [e['t'] for e in events if e['event'] == 'thawed']
    out = {'iris': 0.0, 'lvcreate': 0.0, 'own': 0.0}
    if not starts or not ends:
        return None
    for cur, nxt in zip(events, events[1:]):
        if cur['t'] < starts[0] or nxt['t'] > ends[-1]:
            continue
        ms = (nxt['t'] - cur['t']) * 1000.0
        if cur['event'] in ('freeze', 'thaw') or nxt['event'] == 'validated':
            out['iris'] += ms
        elif cur['event'] == 'snapshot':
            out['lvcreate'] += ms
        else:
            out['own'] += ms
    return dict((k, int(round(v))) for k, v in out.items())


def run_baseline(port, insts):
    lvs = ['bsys'] + ['b%sdb' % i[-1] for i in insts] + ['b%sjr' % i[-1] for i in insts]
    script = BASELINE.format(insts=' '.join(insts), lvs=' '.join(lvs), size=SNAP_SIZE, vg=VG)
    proc = ssh(port, script)
    # only the script's own messages are errors; LVM may print dmeventd monitoring warnings on a loaded host
    errors = [line for line in proc.stderr.splitlines() if line.startswith(('freeze of', 'thaw of', 'lvcreate '))]
    if errors:
        raise SystemExit('baseline reported errors: %s' % '; '.join(errors))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    global VG
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--port', type=int, default=int(os.environ.get('IRISOPS_BENCH_SSH_PORT', '22613')))
    ap.add_argument('--name', default='irisops-bench')
    ap.add_argument('--rounds', type=int, default=3, help='runs of each variant per instance count (median shown)')
    ap.add_argument('--keep', action='store_true', help='leave the VM running')
    ap.add_argument('--reuse', action='store_true', help='use a VM already running on --port (no start/stop)')
    ap.add_argument('--deadman-timeout', type=int, default=None,
                    help="the module's deadman_timeout (0 = no dead-man switch; default: the module's default)")
    ap.add_argument('--freeze-modes', default='together,staggered',
                    help="the module's freeze_mode values to measure, comma-separated (default: both)")
    ap.add_argument('--vg', default=VG, help='volume group (made on the data disk when missing; an existing one is used)')
    a = ap.parse_args()
    VG = a.vg
    modes = [m.strip() for m in a.freeze_modes.split(',') if m.strip()]

    if not a.reuse:
        subprocess.run([os.path.join(RIG, 'build-image.sh')], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([os.path.join(RIG, 'start.sh'), a.name, str(a.port)], check=True)
    try:
        tar = subprocess.run(['tar', '-C', os.path.join(REPO, 'tests'), '--exclude=__pycache__', '-cz', 'emulator'],
                             capture_output=True, check=True).stdout
        subprocess.run(ssh_argv(a.port) + ['tar', '-C', '/opt', '-xz'], input=tar, check=True)
        print(ssh(a.port, PREPARE.format(vg=VG)).stdout)
        remove_snapshots(a.port)
        rows = []
        for n in SIZES:
            insts = ['BENCH%d' % i for i in range(1, n + 1)]
            mod, base = dict((m, []) for m in modes), []
            for r in range(a.rounds):
                # the variants alternate within each round, so that a change of the host's load hits all of them
                for m in modes:
                    mod[m].append(run_module(a.port, insts, 'bench-%d-%d-%s-%d' % (n, r, m[0], os.getpid()),
                                             a.deadman_timeout, m))
                    remove_snapshots(a.port)
                base.append(run_baseline(a.port, insts))
                remove_snapshots(a.port)
            rows.append((n, mod, base))
            print('measured %d instance(s): %s | baseline %s' % (
                n, ' | '.join('%s %s' % (m, [x['windows'] for x in mod[m]]) for m in modes),
                [b['windows'] for b in base]), flush=True)
    finally:
        if not a.keep and not a.reuse:
            subprocess.run([os.path.join(RIG, 'stop.sh'), a.name], check=False)

    med = statistics.median
    for m in modes:
        print()
        print('freeze_mode=%s: freeze window per instance, ms (median of %d rounds; window = start of its freeze to '
              'end of its thaw)' % (m, a.rounds))
        print('%-10s | %-10s %-10s %-12s | %-10s %-10s %-12s | %s' % (
            'instances', 'module', 'module', 'module', 'baseline', 'baseline', 'baseline', 'module/baseline'))
        print('%-10s | %-10s %-10s %-12s | %-10s %-10s %-12s | %s' % (
            '', 'longest', 'shortest', 'lvcreates', 'longest', 'shortest', 'lvcreates', '(longest)'))
        for n, mod, base in rows:
            ml = med([max(x['windows'].values()) for x in mod[m]])
            ms = med([min(x['windows'].values()) for x in mod[m]])
            msn = med([x['snapshot_ms'] for x in mod[m]])
            bl = med([max(b['windows'].values()) for b in base])
            bs = med([min(b['windows'].values()) for b in base])
            bsn = med([b['snapshot_ms'] for b in base])
            print('%-10d | %-10d %-10d %-12d | %-10d %-10d %-12d | %.2f' % (n, ml, ms, msn, bl, bs, bsn, ml / bl))
        print('module task wall time incl. Ansible overhead (ms, median): %s' % ', '.join(
            '%d inst: %d' % (n, med([x['task_wall_ms'] for x in mod[m]])) for n, mod, _b in rows))
        if m == 'together':
            print('outside the lvcreates (ms, median of longest minus lvcreates): %s' % ', '.join(
                '%d inst: module %d, baseline %d' % (
                    n, med([max(x['windows'].values()) - x['snapshot_ms'] for x in mod[m]]),
                    med([max(b['windows'].values()) - b['snapshot_ms'] for b in base])) for n, mod, base in rows))
        else:
            print('("lvcreates" of staggered: first lvcreate to the end of the last, with the freezes and thaws '
                  'between them)')
        # issue 16: the span from the first freeze call to the end of the last thaw, split by the engine's trace
        print('freeze span split by the engine\'s trace (ms, median): %s' % ', '.join(
            '%d inst: IRIS sessions %d, lvcreates %d, own code %d' % (
                n, med([x['split']['iris'] for x in mod[m] if x['split']]),
                med([x['split']['lvcreate'] for x in mod[m] if x['split']]),
                med([x['split']['own'] for x in mod[m] if x['split']])) for n, mod, _b in rows
            if [x for x in mod[m] if x['split']]))
    print()
    print('LVs snapshotted: 1 (installation dirs) + 2 per instance; snapshot size %s; VM with %s vCPU(s) '
          '(IRISOPS_VM_CPUS)' % (SNAP_SIZE, os.environ.get('IRISOPS_VM_CPUS', '1')))
    return 0


if __name__ == '__main__':
    sys.exit(main())
