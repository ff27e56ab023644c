# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""RTO of a restore drill: how long `irisops-backup drill` takes from the start of the restore to the restored
databases checked, and where that time goes, on the VM rig's layout (two emulated instances on four LVs as in the
demo, the drill instance IRISD on the root file system; the rig's backup reads 5.4 MiB, the demo's 1.7 MiB: the rig
adds a 2 MiB file on each database LV, so the figures are an upper bound for the demo's size).

    python3 tests/benchmarks/drill_rto.py [--lane 5] [--rounds 3] [--reuse] [--keep]

It boots a VM of the rig with tests/vm/run.py (lane 5: VM irisops-vmrig-5 on 127.0.0.1:22625; --reuse: the lane's
VM left by --keep) and runs the rig's cases full-backup and journals-and-drill there (a verified backup, shipped
journals, the drill instance and the drill configuration), then --rounds drills of IRISA, one SSH call each. Printed
per round: the drill's own rto_s and its phases (rto_phases_s: restore of the backup, restore of the shipped
journals, start of the drill instance, journal restore, integrity check), the size of the backup and the journal
chain; then min / median / max. The VM is destroyed at the end unless --keep. It asserts nothing about the figures;
it fails when the rig's cases or a drill fail. Under TCG every figure is many times what a real host takes: compare
phases with each other, and runs of this script with each other, not with a production RTO.
"""

from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
DRILL_CONFIG = '/etc/irisops/vmrig/journals-and-drill.json'
FULL_REPORT = '/var/lib/irisops/backup/reports/backup-vmrig-full.json'
PHASES = ('restore_backup', 'restore_journals', 'start_drill_instance', 'journal_restore', 'integrity_check')


def ssh(lane, command, timeout=1800):
    key = os.path.join(REPO, '.cache', 'vm', 'id_ed25519')
    argv = ['ssh', '-i', key, '-p', str(22620 + lane), '-o', 'StrictHostKeyChecking=no', '-o',
            'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-o', 'BatchMode=yes', 'root@127.0.0.1', command]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=timeout, check=False)
    return p.returncode, p.stdout, p.stderr


def rig(lane, extra):
    env = dict(os.environ, IRISOPS_VMRIG_ROLE_PLAYBOOK='')
    argv = [sys.executable, os.path.join(REPO, 'tests', 'vm', 'run.py'), '--lane', str(lane)] + extra
    print('drill_rto: %s' % ' '.join(argv[1:]), flush=True)
    return subprocess.run(argv, env=env, check=False).returncode


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    ap.add_argument('--lane', type=int, default=5)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--reuse', action='store_true', help="the lane's VM left running by an earlier --keep")
    ap.add_argument('--keep', action='store_true', help='leave the VM running (stop it with run.py --destroy)')
    args = ap.parse_args()
    t0 = time.time()
    rc = rig(args.lane, ['--cases', 'full-backup,journals-and-drill', '--keep'] + (['--reuse'] if args.reuse else []))
    if rc != 0:
        print('drill_rto: the rig cases failed (rc %s); nothing measured' % rc)
        if not args.keep:
            rig(args.lane, ['--destroy'])
        return 1
    print('drill_rto: rig ready in %.0f s' % (time.time() - t0))
    rows = []
    try:
        _rc, out, _err = ssh(args.lane, 'cat %s' % FULL_REPORT)
        full = json.loads(out) if out.strip().startswith('{') else {}
        size = full.get('bytes_processed')
        for n in range(1, args.rounds + 1):
            t = time.time()
            rc, out, err = ssh(args.lane, 'irisops-backup --config %s drill --instance IRISA --json' % DRILL_CONFIG)
            wall = time.time() - t
            try:
                rep = json.loads(out[out.index('{'):])
            except ValueError:
                rep = {}
            if rc != 0 or rep.get('status') != 'success':
                print('drill_rto: drill %d failed (rc %s): %s %s' % (n, rc, rep.get('error'), err[-800:]))
                return 1
            rows.append((n, wall, rep))
            ph = rep.get('rto_phases_s') or {}
            print('round %d: RTO %.1f s (ssh call %.1f s); %s; chain %s' % (
                n, rep['rto_s'], wall, ', '.join('%s %.1f' % (k, ph.get(k, 0.0)) for k in PHASES),
                ', '.join(rep.get('journal_chain') or [])), flush=True)
    finally:
        if not args.keep:
            rig(args.lane, ['--destroy'])
    print()
    print('restore drill of IRISA on the VM rig (TCG, 1 vCPU): backup of %s bytes read (IRISA and IRISB, 4 LVs), '
          '%d round(s)' % (size, len(rows)))
    print('  %-22s %8s %8s %8s' % ('seconds', 'min', 'median', 'max'))
    for key in ('rto_s',) + PHASES + ('whole drill command',):
        if key == 'whole drill command':   # + picking the backup, stopping the drill instance, removing the
            vals = [w for _n, w, _r in rows]   # restored files, recording the result (one ssh call)
        else:
            vals = [(r['rto_s'] if key == 'rto_s' else (r.get('rto_phases_s') or {}).get(key, 0.0))
                    for _n, _w, r in rows]
        print('  %-22s %8.1f %8.1f %8.1f' % (key, min(vals), statistics.median(vals), max(vals)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
