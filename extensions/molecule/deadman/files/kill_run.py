# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Kill the controller after iris_freeze and check that the on-host dead-man switch thaws the instance.

Runs on the molecule controller (verify.yml, delegate_to localhost).  Starts a real ansible-playbook of hang.yml
in its own process group, waits until the freeze task has returned and the hang task holds a docker exec
connection, then:
  --mode kill      SIGKILL ansible-playbook, then the docker exec processes it left (the controller dies)
  --mode cut       SIGKILL the docker exec processes first (the connection is cut), then the whole group
  --mode disabled  like kill, with deadman_timeout 0: the instance must STAY frozen (proves the test can fail)
and watches IsWDSuspendedExt through docker exec: 5 right after the kill, then 3 before fires_at + slack
(for disabled: still 5 at timeout + slack).  At the end it reports the lease the killed freeze left on the host
freeze lock (``lease_after``: caller, instances, run id; with a switch also how many seconds after fires_at it
ends); verify.yml checks it and ends it with a forced iris_thaw.  Prints one JSON line with the measurements;
exit 0 = pass.
"""

from __future__ import absolute_import, division, print_function

import argparse
import calendar
import json
import os
import signal
import subprocess
import sys
import time

__metaclass__ = type

WD_EXPR = '##class(Backup.General).IsWDSuspendedExt()'
LINE = 'instance IRIS was still frozen'


def wd_state(host):
    p = subprocess.run(['timeout', '40', 'docker', 'exec', '-u', 'irisowner', host, 'iris', 'session', 'IRIS',
                        '-U', '%SYS', WD_EXPR], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    return p.returncode


def sh(host, cmd):
    p = subprocess.run(['docker', 'exec', host, 'sh', '-c', cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       check=False)
    return p.stdout.decode('utf-8', 'replace')


def owner_record(host):
    """The owner record of the host freeze lock (the lease a freeze left behind), or None."""
    text = sh(host, 'cat /run/irisops/freeze.owner.json 2>/dev/null')
    try:
        return json.loads(text)
    except ValueError:
        return None


def _procs():
    """pid -> (ppid, pgid, argv) for every process."""
    out = {}
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % d) as f:
                fields = f.read().rsplit(')', 1)[1].split()
            with open('/proc/%s/cmdline' % d, 'rb') as f:
                cmd = [c.decode('utf-8', 'replace') for c in f.read().split(b'\0') if c]
        except (IOError, OSError, IndexError):
            continue
        out[int(d)] = (int(fields[1]), int(fields[2]), cmd)
    return out


def tree(root):
    """The process group of ``root`` plus every descendant of ``root`` (a connection may start its own group)."""
    procs = _procs()
    found = set(p for p, v in procs.items() if v[1] == root)
    found.add(root)
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _pg, _cmd) in procs.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return [(p, procs[p][2]) for p in sorted(found) if p in procs]


def group_procs(pgid):
    return [(p, cmd) for p, (_pp, pg, cmd) in _procs().items() if pg == pgid]


def docker_execs(procs):
    return [pid for pid, cmd in procs if cmd and os.path.basename(cmd[0]) == 'docker' and 'exec' in cmd]


def kill(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def parse_utc(text):
    return calendar.timegm(time.strptime(text, '%Y-%m-%dT%H:%M:%SZ'))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--host', required=True)
    ap.add_argument('--mode', choices=('kill', 'cut', 'disabled'), required=True)
    ap.add_argument('--timeout', type=int, default=15)
    ap.add_argument('--slack', type=int, default=25)
    ap.add_argument('--playbook', required=True)
    ap.add_argument('--inventory', action='append', default=[])
    ap.add_argument('--systemd', action='store_true', help='expect the line in the journal too')
    args = ap.parse_args()
    res = {'host': args.host, 'mode': args.mode, 'ok': False}
    seconds = 0 if args.mode == 'disabled' else args.timeout
    log_before = sh(args.host, 'cat /var/log/irisops-deadman.log 2>/dev/null').count(LINE)
    journal_before = sh(args.host, 'journalctl -q -t irisops-deadman -p crit --no-pager 2>/dev/null').count(LINE)

    argv = ['ansible-playbook', args.playbook, '-l', args.host, '-e', 'deadman_target=%s' % args.host,
            '-e', 'deadman_run_timeout=%d' % seconds]
    for inv in args.inventory:
        argv[1:1] = ['-i', inv]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    pgid = proc.pid
    out_lines = []
    frozen_info = None
    try:
        deadline = time.time() + 240
        for raw in proc.stdout:
            line = raw.decode('utf-8', 'replace')
            out_lines.append(line)
            if 'DEADMAN-FROZEN' in line and frozen_info is None:
                text = line.split('DEADMAN-FROZEN', 1)[1].strip().rstrip('"').replace('\\"', '"')
                frozen_info = json.loads(text)
            if frozen_info is not None and (args.mode != 'cut' or 'TASK [Hang on the host' in line):
                break
            if time.time() > deadline:
                break
        res['frozen_info'] = frozen_info
        if frozen_info is None:
            res['error'] = 'the playbook did not report the freeze'
            return res
        execs = []
        if args.mode == 'cut':
            # let the hang task open its docker exec connection
            for _i in range(120):
                execs = docker_execs(tree(pgid))
                if execs:
                    break
                time.sleep(0.25)
            if not execs:
                res['error'] = 'the playbook did not reach the hang task with a connection open'
                return res
        res['docker_execs_killed'] = len(execs)
        victims = tree(pgid)
        killed_at = time.time()
        if args.mode == 'cut':
            kill(execs)                      # connection cut first
            time.sleep(1)
            kill([p for p, _c in tree(pgid)])
        else:
            kill([proc.pid])                 # the controller dies, then whatever it had started
            kill([p for p, _c in victims])
    finally:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
        res['playbook_tail'] = ''.join(out_lines[-8:])
    res['left_in_group'] = len(group_procs(pgid))
    if frozen_info.get('fires_at'):
        # the kill must come before the switch is due, or this run tests nothing
        res['killed_before_fires_at_s'] = round(parse_utc(frozen_info['fires_at']) - killed_at, 1)
        if res['killed_before_fires_at_s'] <= 0:
            res['error'] = 'killed only after the switch was due: raise --timeout'
            return res
    res['wd_right_after_kill'] = wd_state(args.host)
    if args.mode == 'disabled':
        res['armed'] = frozen_info.get('armed', False)
        wait_until = killed_at + args.timeout + args.slack
        while time.time() < wait_until:
            time.sleep(2)
        res['wd_after_bound'] = wd_state(args.host)
        lease = owner_record(args.host)
        res['lease_after'] = dict((k, lease.get(k)) for k in ('caller', 'instances', 'run_id')) if lease else None
        res['ok'] = (res['wd_right_after_kill'] == 5 and res['wd_after_bound'] == 5 and not res['armed'])
        return res
    fires_at = parse_utc(frozen_info['fires_at'])
    bound = fires_at + args.slack
    res['mechanism'] = frozen_info.get('mechanism')
    state = res['wd_right_after_kill']
    while time.time() < bound and state != 3:
        time.sleep(1)
        state = wd_state(args.host)
    res['thawed_after_s'] = round(time.time() - killed_at, 1) if state == 3 else None
    res['thawed_relative_to_fires_at_s'] = round(time.time() - fires_at, 1) if state == 3 else None
    res['wd_final'] = state
    time.sleep(1)
    logtext = sh(args.host, 'cat /var/log/irisops-deadman.log 2>/dev/null')
    res['log_file_line'] = logtext.count(LINE) > log_before
    res['log_file_tail'] = logtext.strip().splitlines()[-1:] if logtext.strip() else []
    jtext = sh(args.host, 'journalctl -q -t irisops-deadman -p crit --no-pager 2>/dev/null')
    res['journal_line'] = jtext.count(LINE) > journal_before
    # The killed run's lease on the host freeze lock outlives its switch: it lapses LEASE_SLACK (60) s after the
    # switch was due, so that the next freezer is refused until then (or until a forced iris_thaw ends it).
    lease = owner_record(args.host)
    res['lease_after'] = dict((k, lease.get(k)) for k in ('caller', 'instances', 'run_id')) if lease else None
    if lease and lease.get('lease_until'):
        res['lease_after']['until_after_fires_at_s'] = round(lease['lease_until'] - fires_at, 1)
    res['ok'] = (res['wd_right_after_kill'] == 5 and state == 3 and res['log_file_line']
                 and (res['journal_line'] or not args.systemd)
                 and res['mechanism'] == ('systemd' if args.systemd else 'process'))
    return res


if __name__ == '__main__':
    result = main()
    print(json.dumps(result, sort_keys=True))
    sys.exit(0 if result.get('ok') else 1)
