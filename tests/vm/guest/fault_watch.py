# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fault injector of the VM rig (test only; tests/vm/guest/rig.py starts it inside the VM).

Waits for a trigger, then injects one fault, and prints one JSON line saying what it saw and did:

  fault_watch.py [--timeout S] [--stop-file PATH] [--result FILE] TRIGGER ACTION

The watcher gives up (exit 3, nothing done) after --timeout seconds or as soon as --stop-file exists (the test
creates it after the backup run, so a trigger that never came does not keep the watcher running; a stop file found
at the start is a leftover and is removed). With --result the JSON line is also written to FILE (atomically, when
the watcher ends), where rig.py (watcher_result) picks it up.

TRIGGER (polled every 10 ms):
  --frozen STATE_JSON      the emulated instance whose state file this is has a freeze pending or acknowledged
  --acked STATE_JSON       the same, and its write daemon has acknowledged the freeze (the instance is frozen)
  --mounted PATH           PATH is a mount point (/proc/self/mountinfo)

ACTION:
  --run CMD [ARG...]       run the command (everything after --run) and report its exit status and output
  --flock FILE --hold-until-freeze-age S
                           take an exclusive flock(2) on FILE (LVM's file lock of a volume group, so every LVM
                           command on that VG waits) and keep it until the freeze seen by the trigger is S seconds
                           old (needs --frozen/--acked)
"""
from __future__ import absolute_import, division, print_function

import argparse
import fcntl
import json
import os
import subprocess
import sys
import time


def read_state(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (IOError, OSError, ValueError):
        return None  # rewritten in place by the emulator: try again


def mounted(path):
    path = os.path.normpath(path)
    with open('/proc/self/mountinfo') as handle:
        for line in handle:
            parts = line.split()
            if len(parts) > 4 and parts[4].replace('\\040', ' ') == path:
                return True
    return False


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    run = None
    if '--run' in argv:
        at = argv.index('--run')
        run, argv = argv[at + 1:], argv[:at]
    parser = argparse.ArgumentParser(prog='fault_watch.py')
    parser.add_argument('--timeout', type=float, default=3000)
    parser.add_argument('--stop-file')
    parser.add_argument('--result')
    trigger = parser.add_mutually_exclusive_group(required=True)
    trigger.add_argument('--frozen')
    trigger.add_argument('--acked')
    trigger.add_argument('--mounted')
    parser.add_argument('--flock')
    parser.add_argument('--hold-until-freeze-age', type=float)
    args = parser.parse_args(argv)
    if not run and not args.flock:
        parser.error('give --run CMD or --flock FILE')

    for stale in (args.stop_file, args.result):
        if stale and os.path.exists(stale):
            os.unlink(stale)  # left by an earlier run of the test
    out = {'trigger': None, 'action': None}
    deadline = time.time() + args.timeout
    freeze = None
    while time.time() < deadline:
        if args.stop_file and os.path.exists(args.stop_file):
            break
        if args.mounted:
            if mounted(args.mounted):
                out['trigger'] = 'mounted %s' % args.mounted
                break
        else:
            st = read_state(args.frozen or args.acked)
            fr = (st or {}).get('freeze')
            if fr and (args.frozen or fr.get('acked')):
                freeze = fr
                out['trigger'] = '%s %s' % ('frozen' if args.frozen else 'acked', args.frozen or args.acked)
                break
        time.sleep(0.01)
    if out['trigger'] is None:
        out['action'] = 'none: trigger not seen (timeout %s s or stop file)' % args.timeout
        out['rc'] = None
        return finish(out, args.result, 3)
    out['triggered_at'] = time.time()

    if run:
        proc = subprocess.run(run, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                              check=False)
        out.update(action='ran %s' % ' '.join(run), rc=proc.returncode, output=proc.stdout[-2000:])
    else:
        if freeze is None or args.hold_until_freeze_age is None:
            parser.error('--flock needs --frozen/--acked and --hold-until-freeze-age')
        handle = open(args.flock, 'a')
        fcntl.flock(handle, fcntl.LOCK_EX)
        out['locked_at_freeze_age'] = round(time.time() - freeze['start'], 3)
        left = freeze['start'] + args.hold_until_freeze_age - time.time()
        if left > 0:
            time.sleep(left)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
        out.update(action='held flock on %s' % args.flock,
                   released_at_freeze_age=round(time.time() - freeze['start'], 3))
    out['seconds_after_trigger'] = round(time.time() - out.pop('triggered_at'), 3)
    return finish(out, args.result, 0)


def finish(out, result_file, status):
    text = json.dumps(out)
    print(text)
    if result_file:
        with open(result_file + '.tmp', 'w') as handle:
            handle.write(text + '\n')
        os.replace(result_file + '.tmp', result_file)
    return status


if __name__ == '__main__':
    sys.exit(main())
