# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a bad-input row left behind, observed on the test host without the collection (TEST-ONLY).

    python3 observe.py '<JSON list of {"name", "flavour", "dir", "owner"}>' [REPORT_DIR]

Prints one JSON object:
  frozen        instances whose IsWDSuspendedExt (run as the owner) exits 5; an instance whose state cannot be
                told is listed as "NAME (state unknown: ...)" so that it counts as a failure too
  snapshots     LVs tagged irisops_snapshot / irisops_run_* (lvs); "lvs failed: ..." when lvs cannot answer
  dbcheck       per instance: rc and output of irisemu-dbcheck on its directory, the write load paused meanwhile
  data_lost     number of instances whose databases irisemu-dbcheck does not find consistent
  running       instances that qlist reports running
  report_status with REPORT_DIR: "status" of the newest lvm-backup-*.json report of the lvm_backup role there
                (null when there is none, "unreadable report ...: <error>" when it is not valid JSON)
"""

import glob
import json
import os
import subprocess
import sys
import time

CONTROL = {'iris': 'iris', 'cache': 'ccontrol'}
SESSION = {'iris': ['iris', 'session'], 'cache': ['csession']}


def run(argv, timeout=60):
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None, '', 'timed out after %s s' % timeout
    except OSError as exc:
        return 127, '', str(exc)
    return proc.returncode, proc.stdout.decode('utf-8', 'replace'), proc.stderr.decode('utf-8', 'replace')


def qlist_status():
    """name -> qlist status field, from one `iris qlist` and one `ccontrol qlist`; errors as a list."""
    status, errors = {}, []
    for control in sorted(set(CONTROL.values())):
        rc, out, err = run([control, 'qlist'])
        if rc != 0:
            errors.append('%s qlist: rc=%s %s' % (control, rc, (err or out).strip()[:200]))
            continue
        for line in out.splitlines():
            fields = line.strip().split('^')
            if len(fields) > 3:
                status[fields[0]] = fields[3]
    return status, errors


def frozen_state(inst):
    argv = ['runuser', '-u', inst['owner'], '--'] + SESSION[inst['flavour']] + [
        inst['name'], '-U', '%SYS', '##class(Backup.General).IsWDSuspendedExt()']
    rc, out, err = run(argv, timeout=30)
    if rc == 5:
        return True, None
    if rc == 3:
        return False, None
    return None, 'rc=%s %s' % (rc, (out + err).strip()[:200])


def snapshots():
    rc, out, err = run(['lvs', '--reportformat', 'json', '-o', 'vg_name,lv_name,lv_tags'])
    if rc != 0:
        return ['lvs failed (rc=%s): %s' % (rc, (err or out).strip()[:200])]
    found = []
    for report in json.loads(out).get('report', []):
        for lv in report.get('lv', []):
            tags = lv.get('lv_tags') or ''
            if 'irisops_snapshot' in tags or 'irisops_run_' in tags:
                found.append('%s/%s' % (lv.get('vg_name'), lv.get('lv_name')))
    return found


def dbcheck(instances, running):
    """irisemu-dbcheck on every instance directory.  Running write daemons are paused first (each finishes the cycle
    it is in, so a check that finds torn files is retried for up to 5 s) and resumed afterwards."""
    for name in running:
        run(['irisemu-load', name, '--pause'])
    try:
        deadline = time.time() + 5
        while True:
            checks = {}
            for inst in instances:
                rc, out, err = run(['irisemu-dbcheck', inst['dir']])
                checks[inst['name']] = {'rc': rc, 'output': (out + err).strip()[-500:]}
            if all(c['rc'] == 0 for c in checks.values()) or time.time() > deadline:
                return checks
            time.sleep(0.2)
    finally:
        for name in running:
            run(['irisemu-load', name, '--resume'])


def report_status(directory):
    reports = sorted(glob.glob(os.path.join(directory, 'lvm-backup-*.json')), key=os.path.getmtime)
    if not reports:
        return None
    try:
        with open(reports[-1]) as handle:
            return json.load(handle).get('status')
    except (IOError, OSError, ValueError, AttributeError) as exc:
        return 'unreadable report %s: %s' % (os.path.basename(reports[-1]), exc)


def main(argv):
    instances = json.loads(argv[1])
    result = {'frozen': [], 'running': [], 'snapshots': snapshots(), 'dbcheck': {}, 'data_lost': 0}
    status, errors = qlist_status()
    for inst in instances:
        if inst['name'] not in status:
            result['frozen'].append('%s (state unknown: not in qlist; %s)' % (inst['name'], '; '.join(errors)))
        elif status[inst['name']].startswith('running'):
            result['running'].append(inst['name'])
            frozen, why = frozen_state(inst)
            if frozen is None:
                result['frozen'].append('%s (state unknown: IsWDSuspendedExt %s)' % (inst['name'], why))
            elif frozen:
                result['frozen'].append(inst['name'])
    result['dbcheck'] = dbcheck(instances, result['running'])
    result['data_lost'] = sum(1 for c in result['dbcheck'].values() if c['rc'] != 0)
    result['report_status'] = report_status(argv[2]) if len(argv) > 2 else None
    sys.stdout.write(json.dumps(result, sort_keys=True) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
