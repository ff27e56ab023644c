# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a backup run left behind, seen with the host's own tools (test only, copied into the VM by faults.yml).

  python3 observe.py --vg VG [--watcher-result FILE --watcher-stop FILE] [--first SHELL] [--report FILE]
                     [--mount-root DIR] [--path-left PATH ...] [--no-live] NAME=DIR,DBDIR [NAME=DIR,DBDIR ...]

One call instead of one Ansible task per look (every task costs seconds in the TCG VM). In this order it ends the
fault watcher (creates its stop file, waits up to 60 s for its result file), runs the case's own clean-up (--first,
a shell script, e.g. undo the fault), then looks. Prints one JSON object:

  watcher      the watcher's result (fault_watch.py --result), or null
  first        {"rc", "output"} of the --first script, or null
  report       the run's JSON report (FILE), or null when there is none
  snapshots    every snapshot LV of VG, as vg/lv (lvs: LVs with an origin)
  wd           IsWDSuspendedExt exit status per instance (5 frozen, 3 not frozen, other: could not ask)
  frozen       instances whose IsWDSuspendedExt said 5
  mounts       mount points below the mount root (findmnt)
  paths_left   the --path-left paths that exist (lock directory, run directory, ...)
  live         per instance: irisemu-dbcheck of its LIVE databases (DIR and DBDIR) -- for a running instance the
               write load is paused first and the check waits until the write daemon has finished the cycle it
               was in (the generation stops moving), then the load is resumed (unless it was paused before)
  live_failed  how many instances' live databases are not consistent

Exit status 0 (the caller judges the values).
"""
from __future__ import absolute_import, division, print_function

import argparse
import json
import os
import subprocess
import time


def run(argv):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    return proc.returncode, proc.stdout


def load_status(name):
    _rc, out = run(['irisemu-load', name, '--status'])
    return dict(kv.split('=', 1) for kv in out.split() if '=' in kv)


def live_check(name, paths):
    st = load_status(name)
    running = st.get('running') == '1'
    was_paused = st.get('paused') == '1'
    if running and not was_paused:
        run(['irisemu-load', name, '--pause'])
    try:
        if running:
            last = load_status(name).get('generation')
            deadline = time.time() + 60
            while time.time() < deadline:
                time.sleep(1.0)
                now = load_status(name).get('generation')
                if now == last:
                    break
                last = now
        rc, out = run(['irisemu-dbcheck'] + paths)
    finally:
        if running and not was_paused:
            run(['irisemu-load', name, '--resume'])
    return {'rc': rc, 'output': out.strip().splitlines()[:5], 'running': running}


def main():
    parser = argparse.ArgumentParser(prog='observe.py')
    parser.add_argument('--vg', required=True)
    parser.add_argument('--report')
    parser.add_argument('--mount-root', default='/run/irisops/lvm_backup')
    parser.add_argument('--path-left', action='append', default=[])
    parser.add_argument('--no-live', action='store_true')
    parser.add_argument('--watcher-result')
    parser.add_argument('--watcher-stop')
    parser.add_argument('--first')
    parser.add_argument('instances', nargs='*', metavar='NAME=DIR,DBDIR')
    args = parser.parse_args()
    out = {'report': None, 'watcher': None, 'first': None}
    if args.watcher_result:
        if args.watcher_stop:
            open(args.watcher_stop, 'a').close()
        deadline = time.time() + 60
        while not os.path.exists(args.watcher_result) and time.time() < deadline:
            time.sleep(0.2)
        if os.path.exists(args.watcher_result):
            with open(args.watcher_result) as handle:
                out['watcher'] = json.load(handle)
    if args.first:
        rc, text = run(['/bin/bash', '-c', 'set -euo pipefail\n' + args.first])
        out['first'] = {'rc': rc, 'output': text.splitlines()}
    if args.report and os.path.exists(args.report):
        with open(args.report) as handle:
            text = handle.read()
        try:
            out['report'] = json.loads(text)
        except ValueError as exc:
            out['report_error'] = '%s is not JSON (%s): %r' % (args.report, exc, text[-200:])
    rc, text = run(['lvs', '--reportformat', 'json', '-o', 'lv_name,origin', args.vg])
    lvs = json.loads(text)['report'][0]['lv'] if rc == 0 else []
    out['snapshots'] = ['%s/%s' % (args.vg, lv['lv_name']) for lv in lvs if lv.get('origin')]
    if rc != 0:
        out['lvs_error'] = text.strip()
    out['wd'] = {}
    for spec in args.instances:
        name = spec.split('=', 1)[0]
        out['wd'][name], _text = run(['runuser', '-u', 'irisowner', '--', 'iris', 'session', name, '-U', '%SYS',
                                      '##Class(Backup.General).IsWDSuspendedExt()'])
    out['frozen'] = sorted(n for n, status in out['wd'].items() if status == 5)
    _rc, text = run(['findmnt', '-rn', '-o', 'TARGET'])
    root = args.mount_root.rstrip('/') + '/'
    out['mounts'] = [m for m in text.splitlines() if m.startswith(root)]
    out['paths_left'] = [p for p in args.path_left if os.path.lexists(p)]
    out['live'] = {}
    if not args.no_live:
        for spec in args.instances:
            name, paths = spec.split('=', 1)
            out['live'][name] = live_check(name, paths.split(','))
    out['live_failed'] = sum(1 for r in out['live'].values() if r['rc'] != 0)
    print(json.dumps(out))
    return 0


if __name__ == '__main__':
    main()
