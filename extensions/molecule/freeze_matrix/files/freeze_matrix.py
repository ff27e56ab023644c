# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The generated fault matrix of the freeze engine at container level (issue 12, "How it is shown").

    python3 freeze_matrix.py list                      the generated rows and the mapping of the rows that make no
                                                       sense as they stand (nothing runs)
    python3 freeze_matrix.py setup [--containers A,B]  put the test tools into the containers (converge.yml)
    python3 freeze_matrix.py run   [--containers A,B] [--only REGEX] [--records DIR]   (verify.yml)

Run on the controller (the molecule verifier does, delegate_to localhost) with the repository's environment
(. tests/harness/env.sh: ansible-playbook, ANSIBLE_COLLECTIONS_PATH, IRISOPS_EMU_SSH_KEY); the containers are the
scenario's irisops-fm-* (systemd as PID 1, network_mode none, from irisops/iris-emu:bookworm).

The matrix is generated: FREEZERS x PHASES x FAULTS, plus the extra rows of the issue (rollback thaw fails, the
write daemon resumed inside the window, two freezers at once, a controller killed while holding the lock, a
foreign state directory of a non-root run, messages.log rotated between arm and fire).  A cell that makes no sense
as it stands is MAPPED to the row that tests what it means there (printed by ``list`` and at the start of ``run``),
never dropped.

Rows whose fault is on the host process (SIGTERM, SIGINT, SIGHUP, SIGKILL of the module or hook process) run without
ansible-playbook: fm_host.py (copied into each container) starts the module file itself (python3 -m
ansible_collections.irisops.backup.plugins.modules.X ARGS.json, PYTHONPATH = a copy of the collection and of
ansible's module_utils) or the hook program, waits for the phase (the emulator's phase.log, the fake LVM's ready
file, the switch's freeze record), delivers the fault and observes.  Rows whose fault is on the controller
(SIGKILL of ansible-playbook, a signal to it, a cut SSH connection) run files/fm_play.yml with ansible-playbook over
a real sshd (ssh -o ProxyCommand='docker exec -i CTR /usr/sbin/sshd -i'); the driver SIGKILLs the controller's
process tree, signals ansible-playbook or kills the connection's docker exec when fm_host.py reports the phase.

Rows run in parallel, one per container at a time (the host freeze lock is per host); a container is reset between
rows (fm_host.py reset: thaw, irisemu-fault --clear, phase.log emptied, state directories, switches and fake LVs
removed).

Every row writes a fault record <records>/freeze_matrix-<row>.json (the format of tests/faults/summary.py) with:
no instance frozen once the latest switch armed in the row was due plus SLACK seconds (frozen_after), no snapshot
left in the fake LVM (snapshots_after), no backup recorded for a torn window (data_lost: an ExternalSetHistory
that changed buhistory.json without a valid run, or an ``iris_set_history run_id=...`` that accepted a run that is
not valid), and the words of the message (message_expected, from the module's message, the run record, the hook
log, the dead-man log or the instance log, whichever tells what happened there).  At the end it prints the table
(row, freezer, phase, fault, outcome, seconds), the total time and "faults tried N, survived N, data lost N".
Exit status 0 when every row survived.
"""

from __future__ import absolute_import, division, print_function

import argparse
import ast
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.environ.get('IRISOPS_REPO') or os.path.abspath(os.path.join(HERE, '..', '..', '..', '..'))
SUITE = 'freeze_matrix'
HOST_DIR = '/usr/local/lib/irisops-fm'
PYLIB = '/opt/irisops-fm/pylib'

FREEZERS = ('iris_freeze', 'lvm_together', 'lvm_staggered', 'hook')
PHASES = ('during_freeze', 'after_freeze', 'during_lvcreate', 'during_thaw', 'during_rollback')
FAULTS = ('SIGTERM', 'SIGINT', 'SIGHUP', 'SIGKILL', 'KILL_PLAYBOOK', 'CUT_SSH')
PROCESS_FAULTS = ('SIGTERM', 'SIGINT', 'SIGHUP', 'SIGKILL')

FREEZER_TEXT = {'iris_freeze': 'iris_freeze ... iris_thaw (lease)', 'lvm_together': 'iris_lvm_snapshot together',
                'lvm_staggered': 'iris_lvm_snapshot staggered', 'hook': 'irisops-hook freeze ... thaw'}
PHASE_TEXT = {'during_freeze': 'during ExternalFreeze (freeze-delay)', 'after_freeze': 'after the freeze, before '
              'the snapshot', 'during_lvcreate': 'during lvcreate', 'during_thaw': 'during the thaw (thaw-delay)',
              'during_rollback': 'during the rollback thaw (CACHE freeze-fail, IRIS thaw-delay)'}
FAULT_TEXT = {'SIGTERM': 'SIGTERM of the freezer process on the host', 'SIGINT': 'SIGINT of the freezer process',
              'SIGHUP': 'SIGHUP of the freezer process', 'SIGKILL': 'SIGKILL of the freezer process',
              'KILL_PLAYBOOK': 'SIGKILL of ansible-playbook and its process tree (the controller dies)',
              'CUT_SSH': 'the SSH connection cut (its docker exec ... sshd -i killed)'}

#: deadman_timeout of the rows run on the host in which the switch is what thaws (the fault comes within a few
#: seconds of the arm) ...
D_HOST = 15
#: ... and of the rows in which it must not interfere (it is disarmed, or fires late and finds nothing to do)
D_LONG = 30
#: deadman_timeout of the ansible-playbook rows in which the switch is what thaws (the fault comes right after
#: the freeze returned) ...
D_PLAY = 20
#: ... and of the others (the play needs a few seconds per task on a loaded machine before it reaches the phase)
D_PLAY_LONG = 60
#: seconds after the latest switch is due within which every instance must be thawed (timer, discovery, thaw; up
#: to 13 s were measured on a loaded 2-core machine)
SLACK = 25
#: emulator delays that hold a phase open long enough to hit it
DELAY = 3
PLAY_DELAY = 4
SIGNALS = {'SIGTERM': signal.SIGTERM, 'SIGINT': signal.SIGINT, 'SIGHUP': signal.SIGHUP, 'SIGKILL': signal.SIGKILL}


# ---------------------------------------------------------------------------------------------------------------
# rows
# ---------------------------------------------------------------------------------------------------------------

class Row(object):
    """One row: what it tries (freezer, phase, fault), how it runs (kind host|play|extra), what it expects."""

    def __init__(self, rid, freezer, phase, fault, kind, plan, expect='fail', phrases=(), absent=(), est=20,
                 note='', mapped_from=(), desc=None):
        self.id = rid
        self.desc = desc
        self.freezer = freezer
        self.phase = phase
        self.fault = fault
        self.kind = kind
        self.plan = plan
        self.expect = expect
        self.phrases = list(phrases)
        self.absent = list(absent)
        self.est = est
        self.note = note
        self.mapped_from = list(mapped_from)


def rid(freezer, phase, fault):
    return '%s.%s.%s' % (freezer, phase, fault)


def mapping(freezer, phase, fault):
    """(freezer, phase, fault, how, note) the cell runs as; how: host | play | same-as (then the target cell)."""
    hold = freezer in ('iris_freeze', 'hook')
    if hold and phase in ('after_freeze', 'during_lvcreate'):
        where = ('right after its freeze returned, before the snapshot' if phase == 'after_freeze' else
                 'between its freeze and its thaw, while the snapshot (stand-in fm-snapshot) runs: it takes no '
                 'snapshot itself')
        if fault in PROCESS_FAULTS:
            return (freezer, phase, 'KILL_PLAYBOOK', 'same-as', 'no %s process exists on the host %s: nothing on '
                    'the host can receive %s; what stops the controller that holds the freeze here (TERM, INT, HUP '
                    'or KILL of ansible-playbook) leaves the thaw to the switch: row %s' % (
                        freezer, where, fault, rid(freezer, phase, 'KILL_PLAYBOOK')))
        if fault == 'CUT_SSH' and phase == 'after_freeze':
            return (freezer, 'during_lvcreate', 'CUT_SSH', 'same-as', 'between two tasks only the idle ssh master '
                    'connection exists: cutting it either costs nothing (the next task reconnects) or catches the end '
                    'of the freeze task; the connection that matters is the snapshot task\'s: row %s'
                    % rid(freezer, 'during_lvcreate', 'CUT_SSH'))
        return (freezer, phase, fault, 'play', 'phase for %s: %s' % (freezer, where))
    if fault in PROCESS_FAULTS:
        return (freezer, phase, fault, 'host', '')
    return (freezer, phase, fault, 'play', '')


def module_args(freezer, deadman, run_id, **extra):
    if freezer == 'iris_freeze':
        args = {'instances': ['IRIS', 'CACHE'], 'deadman_timeout': deadman, 'run_id': run_id}
    else:
        args = {'instances': ['IRIS', 'CACHE'], 'volumes': ['vgfm/shared'], 'size': '64M',
                'freeze_mode': freezer.split('_', 1)[1], 'deadman_timeout': deadman, 'run_id': run_id}
    args.update(extra)
    return args


def hook_argv(deadman, action, set_history=True, instances='IRIS,CACHE', extra=()):
    argv = ['--caller', 'generic', '--instances', instances, '--deadman-timeout', str(deadman)]
    return argv + (['--set-history'] if set_history else []) + list(extra) + [action]


def freezer_start(freezer, name, deadman, run_id, do='start', **extra):
    """The action that starts the freeze of ``freezer`` (a window for lvm, the hold for iris_freeze/hook)."""
    if freezer == 'hook':
        return {'do': do, 'name': name, 'kind': 'hook', 'argv': hook_argv(deadman, 'freeze')}
    return {'do': do, 'name': name, 'kind': 'module', 'module': 'iris_freeze' if freezer == 'iris_freeze' else
            'iris_lvm_snapshot', 'args': module_args(freezer, deadman, run_id, **extra)}


def thaw_start(freezer, name, freeze_name, do='start'):
    if freezer == 'hook':
        return {'do': do, 'name': name, 'kind': 'hook', 'argv': hook_argv(D_HOST, 'thaw')}
    return {'do': do, 'name': name, 'kind': 'module', 'module': 'iris_thaw',
            'args': {'instances': ['IRIS', 'CACHE'], 'lease': {'$ref': freeze_name, 'key': 'lease'}}}


def phrase_for(freezer, phase, fault, on_controller=False):
    """The words the row's message must contain: who thawed and why, as the engine's design says."""
    sig = 'SIGHUP' if fault in ('KILL_PLAYBOOK', 'CUT_SSH') else fault
    hold = freezer in ('iris_freeze', 'hook')
    if phase == 'during_rollback':
        # SIGKILL: the rollback's ExternalThaw session finishes on its own; otherwise the engine reports the freeze
        return 'System resumed' if sig == 'SIGKILL' else 'freeze failed on CACHE'
    if on_controller and hold and phase in ('after_freeze', 'during_lvcreate'):
        return 'instance IRIS was still frozen'        # nobody thaws but the switch
    if phase == 'during_thaw' and hold and fault in ('SIGTERM', 'SIGINT', 'SIGHUP'):
        return 'interrupted by %s' % sig               # the thaw finishes under the signal, then the run fails
    if phase == 'during_thaw' and (hold or sig == 'SIGKILL'):
        return 'System resumed'                        # the thaw process dies; its ExternalThaw session finishes
    if sig == 'SIGKILL':
        return 'instance IRIS was still frozen'        # the switch
    return 'interrupted by %s' % sig


def host_plan(freezer, phase, fault, run_id):
    # the switch is what thaws after a SIGKILL before the thaw began; elsewhere it must stay out of the way
    d = D_HOST if fault == 'SIGKILL' and phase in ('during_freeze', 'after_freeze', 'during_lvcreate') else D_LONG
    acts = []
    target = 'p'
    if phase == 'during_freeze':
        acts += [{'do': 'fault', 'inst': 'IRIS', 'args': ['--freeze-delay', DELAY]},
                 freezer_start(freezer, 'p', d, run_id),
                 {'do': 'wait', 'what': 'phase', 'inst': 'IRIS', 'event': 'freeze-delay-start'}]
    elif phase == 'after_freeze':
        acts += [{'do': 'lvm', 'ctl': {'startup': 1.0}}, freezer_start(freezer, 'p', d, run_id),
                 {'do': 'wait', 'what': 'frozen_mark', 'inst': 'IRIS'}]
    elif phase == 'during_lvcreate':
        acts += [{'do': 'lvm', 'ctl': {'block': 'shared', 'hold': DELAY}}, freezer_start(freezer, 'p', d, run_id),
                 {'do': 'wait', 'what': 'lvcreate'}]
    elif phase == 'during_thaw':
        if freezer in ('iris_freeze', 'hook'):
            acts += [freezer_start(freezer, 'f', d, run_id, do='run'),
                     {'do': 'fault', 'inst': 'IRIS', 'args': ['--thaw-delay', DELAY]},
                     thaw_start(freezer, 't', 'f')]
            target = 't'
        else:
            acts += [{'do': 'fault', 'inst': 'IRIS', 'args': ['--thaw-delay', DELAY]},
                     freezer_start(freezer, 'p', d, run_id)]
        acts.append({'do': 'wait', 'what': 'phase', 'inst': 'IRIS', 'event': 'thaw-delay-start'})
    elif phase == 'during_rollback':
        acts += [{'do': 'fault', 'inst': 'CACHE', 'args': ['--freeze-fail', 1]},
                 {'do': 'fault', 'inst': 'IRIS', 'args': ['--thaw-delay', DELAY]},
                 freezer_start(freezer, 'p', d, run_id),
                 {'do': 'wait', 'what': 'phase', 'inst': 'IRIS', 'event': 'thaw-delay-start'}]
    acts.append({'do': 'signal', 'name': target, 'sig': fault[3:]})
    return {'actions': acts, 'observe': {'slack': SLACK}, 'target': target}


def play_plan(freezer, phase, fault, run_id):
    """prep actions (before ansible-playbook starts), the wait for the phase, the fault, the play's variables."""
    hold = freezer in ('iris_freeze', 'hook')
    prep = [{'do': 'lvm', 'ctl': {'snapshot_hold': 0.1}}] if hold else []
    if phase == 'during_freeze':
        prep.append({'do': 'fault', 'inst': 'IRIS', 'args': ['--freeze-delay', PLAY_DELAY]})
        wait = {'do': 'wait', 'what': 'phase', 'inst': 'IRIS', 'event': 'freeze-delay-start'}
    elif phase == 'after_freeze':
        if hold:
            wait = {'do': 'wait', 'what': 'lease'}
        else:
            prep.append({'do': 'lvm', 'ctl': {'startup': 1.5}})
            wait = {'do': 'wait', 'what': 'frozen_mark', 'inst': 'IRIS'}
    elif phase == 'during_lvcreate':
        if hold:
            prep = [{'do': 'lvm', 'ctl': {'snapshot_hold': 0}}]
            wait = {'do': 'wait', 'what': 'snapshot'}
        else:
            prep.append({'do': 'lvm', 'ctl': {'block': 'shared', 'hold': PLAY_DELAY}})
            wait = {'do': 'wait', 'what': 'lvcreate'}
    elif phase == 'during_thaw':
        prep.append({'do': 'fault', 'inst': 'IRIS', 'args': ['--thaw-delay', PLAY_DELAY]})
        wait = {'do': 'wait', 'what': 'phase', 'inst': 'IRIS', 'event': 'thaw-delay-start'}
    else:
        prep += [{'do': 'fault', 'inst': 'CACHE', 'args': ['--freeze-fail', 1]},
                 {'do': 'fault', 'inst': 'IRIS', 'args': ['--thaw-delay', PLAY_DELAY]}]
        wait = {'do': 'wait', 'what': 'phase', 'inst': 'IRIS', 'event': 'thaw-delay-start'}
    wait['timeout'] = 120
    short = hold and phase in ('after_freeze', 'during_lvcreate')
    pvars = {'fm_freezer': 'lvm' if freezer.startswith('lvm') else freezer, 'fm_mode': freezer.split('_')[-1],
             'fm_deadman': D_PLAY if short else D_PLAY_LONG, 'fm_run_id': run_id}
    return {'prep': prep, 'wait': [wait], 'fault': fault, 'vars': pvars, 'observe': {'slack': SLACK}}


def generate():
    """(rows to run, mapping lines)."""
    rows, maps = [], []
    for freezer in FREEZERS:
        for phase in PHASES:
            for fault in FAULTS:
                f, p, x, how, note = mapping(freezer, phase, fault)
                this = rid(freezer, phase, fault)
                if how == 'same-as':
                    maps.append('%s -> %s: %s' % (this, rid(f, p, x), note))
                    continue
                run_id = 'fm-' + this.replace('_', '-').replace('.', '-')
                if how == 'host':
                    plan = host_plan(freezer, phase, fault, run_id)
                    est = D_HOST + 8 if fault == 'SIGKILL' else 9
                    rows.append(Row(this, freezer, phase, fault, 'host', plan,
                                    phrases=[phrase_for(freezer, phase, fault)], est=est))
                else:
                    plan = play_plan(freezer, phase, fault, run_id)
                    waits_switch = freezer in ('iris_freeze', 'hook') and phase in ('after_freeze',
                                                                                    'during_lvcreate')
                    rows.append(Row(this, freezer, phase, fault, 'play', plan,
                                    phrases=[phrase_for(freezer, phase, fault, on_controller=True)],
                                    est=(D_PLAY + 14) if waits_switch else 16, note=note))
                    if note:
                        maps.append('%s: %s' % (this, note))
    for r in rows:
        r.mapped_from = [m.split(' -> ')[0] for m in maps if ' -> %s:' % r.id in m]
    rows += extra_rows()
    return rows, maps


# ---------------------------------------------------------------------------------------------------------------
# the extra rows of the issue
# ---------------------------------------------------------------------------------------------------------------

def extra_rows():
    rows = []
    hold_kinds = ('iris_freeze', 'lvm_together', 'lvm_staggered', 'hook')

    def add(name, freezer, phase, desc, plan, phrases, expect='fail', absent=(), est=15, kind='host', note=''):
        rows.append(Row('extra.%s.%s' % (name, freezer), freezer, phase, name, kind, plan, expect=expect,
                        phrases=phrases, absent=absent, est=est, note=note, desc=desc))

    # controls: the same freezers without a fault succeed, and their valid backup IS recorded (so the history
    # check of every other row can see a recording)
    for fz in hold_kinds:
        run_id = 'fm-x-control-%s' % fz.replace('_', '-')
        history = {'do': 'run', 'name': 'history', 'kind': 'module', 'module': 'iris_set_history',
                   'args': {'instances': ['IRIS', 'CACHE'], 'backup_completed': True, 'run_id': run_id}}
        if fz == 'hook':
            acts = [{'do': 'run', 'name': 'f', 'kind': 'hook', 'argv': hook_argv(D_LONG, 'freeze')},
                    {'do': 'run', 'name': 't', 'kind': 'hook', 'argv': hook_argv(D_LONG, 'thaw')}]
        elif fz == 'iris_freeze':
            acts = [freezer_start(fz, 'f', D_LONG, run_id, do='run'), thaw_start(fz, 't', 'f', do='run'), history]
        else:
            acts = [freezer_start(fz, 'p', D_LONG, run_id, do='run'), history,
                    {'do': 'remove_run_snapshots', 'run_id': run_id}]
        add('control_no_fault', fz, 'none', 'no fault: the backup is valid and recorded',
            {'actions': acts, 'observe': {'slack': SLACK}, 'must_record': True}, [], expect='ok', est=9)
    for fz in hold_kinds:
        run_id = 'fm-x-%s-%s' % ('rbfail', fz.replace('_', '-'))
        # rollback thaw fails, irisstat -W still works
        add('rollback_thaw_fails', fz, 'during_rollback', 'thaw-fail 1 on the rollback thaw (stat -W works)', {
            'actions': [{'do': 'fault', 'inst': 'CACHE', 'args': ['--freeze-fail', 1]},
                        {'do': 'fault', 'inst': 'IRIS', 'args': ['--thaw-fail', 1]},
                        freezer_start(fz, 'p', D_HOST, run_id, do='run')],
            'observe': {'slack': SLACK}}, ['Write daemon resumed by irisstat -W', 'freeze failed on CACHE'], est=9)
        # ... and cannot thaw at all: the switch stays armed and fires
        run_id = 'fm-x-%s-%s' % ('rbstuck', fz.replace('_', '-'))
        add('rollback_cannot_thaw', fz, 'during_rollback', 'rollback thaw and stat -W both fail: the switch stays armed',
            {'actions': [{'do': 'fault', 'inst': 'CACHE', 'args': ['--freeze-fail', 1]},
                         {'do': 'fault', 'inst': 'IRIS', 'args': ['--thaw-fail', 20]},
                         {'do': 'statw', 'broken': True},
                         freezer_start(fz, 'p', D_HOST, run_id, do='run'),
                         {'do': 'statw', 'broken': False}, {'do': 'clear_faults'}],
             'observe': {'slack': SLACK}}, ['stays armed', 'instance IRIS was still frozen'], est=D_HOST + 10)
        # the write daemon resumes inside the window: WDSuspendLimit, a foreign ExternalThaw
        for how in ('wdsuspendlimit', 'foreign_thaw'):
            run_id = 'fm-x-%s-%s' % (how.replace('_', ''), fz.replace('_', '-'))
            if fz in ('iris_freeze', 'hook'):
                if fz == 'hook':
                    f = {'do': 'run', 'name': 'f', 'kind': 'hook', 'argv': hook_argv(30, 'freeze'),
                         'config': {'wd_suspend_limit': 2} if how == 'wdsuspendlimit' else {}}
                else:
                    f = freezer_start(fz, 'f', 30, run_id, do='run',
                                      **({'wd_suspend_limit': 2} if how == 'wdsuspendlimit' else {}))
                middle = [{'do': 'sleep', 's': 4}] if how == 'wdsuspendlimit' else [
                    {'do': 'sleep', 's': 0.5}, {'do': 'foreign_thaw', 'inst': 'IRIS'}]
                acts = [f] + middle + [thaw_start(fz, 't', 'f', do='run')]
            else:
                acts = [{'do': 'lvm', 'ctl': {'block': 'shared', 'hold': 4 if how == 'wdsuspendlimit' else 0}},
                        freezer_start(fz, 'p', 30, run_id,
                                      **({'wd_suspend_limit': 2} if how == 'wdsuspendlimit' else {}))]
                if how == 'foreign_thaw':
                    acts += [{'do': 'wait', 'what': 'lvcreate'}, {'do': 'foreign_thaw', 'inst': 'IRIS'},
                             {'do': 'release', 'what': 'lvcreate'}]
            add('wd_resumed_%s' % how, fz, 'inside the window', 'write daemon resumed: %s' % (
                'WDSuspendLimit 2 s, snapshot takes 4 s' if how == 'wdsuspendlimit' else
                'ExternalThaw by another process'), {'actions': acts, 'observe': {'slack': SLACK}},
                ['BACKUP INVALID'], est=12)
    # a cut connection with pipelining on (no pty, so no SIGHUP reaches the module)
    plan = play_plan('lvm_together', 'during_lvcreate', 'CUT_SSH', 'fm-x-cut-pipelining')
    plan['pipelining'] = True
    # the lvcreate is held until the cut connection's sshd has exited (on a loaded machine that takes longer than a
    # timed hold: the module then finished before its output lost its reader, and the row tested nothing)
    plan['prep'] = [{'do': 'lvm', 'ctl': {'block': 'shared', 'hold': 0}}]
    plan['after_fault'] = [{'do': 'wait', 'what': 'no_sshd', 'timeout': 60},
                           {'do': 'release', 'what': 'lvcreate'}]
    rows.append(Row('extra.cut_ssh_pipelining.lvm_together', 'lvm_together', 'during_lvcreate', 'CUT_SSH', 'play',
                    plan, phrases=['control connection lost'], est=20,
                    desc='the SSH connection cut, ANSIBLE_PIPELINING=True',
                    note='ANSIBLE_PIPELINING=True: the module runs without a pty, a dropped connection sends it no '
                         'SIGHUP; it finds its output without a reader after the window, removes its snapshots and '
                         'records the run invalid ("control connection lost")'))
    # the switch fires inside the window
    for fz in ('iris_freeze', 'hook'):
        run_id = 'fm-x-switchfires-%s' % fz.replace('_', '-')
        f = ({'do': 'run', 'name': 'f', 'kind': 'hook', 'argv': hook_argv(3, 'freeze')} if fz == 'hook' else
             freezer_start(fz, 'f', 3, run_id, do='run'))
        add('switch_fires_in_window', fz, 'inside the window', 'deadman_timeout 3 s, the snapshot takes 7 s', {
            'actions': [f, {'do': 'sleep', 's': 7}, thaw_start(fz, 't', 'f', do='run')],
            'observe': {'slack': SLACK}}, ['BACKUP INVALID', 'instance IRIS was still frozen'], est=14)
    for fz in ('lvm_together', 'lvm_staggered'):
        run_id = 'fm-x-slowlvc-%s' % fz.replace('_', '-')
        add('switch_due_during_lvcreate', fz, 'during_lvcreate', 'deadman_timeout 4 s, the first lvcreate takes 8 s', {
            'actions': [{'do': 'lvm', 'ctl': {'block': 'iris', 'hold': 8}},
                        freezer_start(fz, 'p', 4, run_id, do='run')],
            'observe': {'slack': SLACK}}, [('the instances were thawed first', 'freeze budget exceeded')], est=16,
            note='lvcreate is bounded by the time left until the switch fires: the engine thaws first (or, on a '
                 'loaded machine, stops before the snapshot because the switch would be due before it ends)')
        run_id = 'fm-x-earlyfire-%s' % fz.replace('_', '-')
        add('switch_fires_in_window', fz, 'during_lvcreate', 'the switch fires while lvcreate runs (timer started '
            'early: systemctl start irisops-deadman-IRIS.service)', {
                'actions': [{'do': 'lvm', 'ctl': {'block': 'shared', 'hold': 0}},
                            freezer_start(fz, 'p', 60, run_id),
                            {'do': 'wait', 'what': 'lvcreate'}, {'do': 'fire_switch', 'inst': 'IRIS'},
                            {'do': 'wait', 'what': 'thawed', 'inst': 'IRIS', 'timeout': 40},
                            {'do': 'release', 'what': 'lvcreate'}],
                'observe': {'slack': SLACK}}, ['BACKUP INVALID', 'instance IRIS was still frozen'], est=12)
    # two freezers at once
    add('hook_then_lvm', 'hook', 'two freezers', 'iris_lvm_snapshot while the hook holds its freeze', {
        'actions': [{'do': 'run', 'name': 'h', 'kind': 'hook', 'argv': hook_argv(30, 'freeze', set_history=False)},
                    freezer_start('lvm_together', 'p', 30, 'fm-x-hook-then-lvm', do='run'),
                    {'do': 'run', 'name': 't', 'kind': 'hook', 'argv': hook_argv(30, 'thaw', set_history=False)}],
        'observe': {'slack': SLACK}, 'main': 'p'}, ['leased to irisops-hook:generic'], est=8)
    add('lvm_then_hook', 'lvm_together', 'two freezers', 'the hook freezes while iris_lvm_snapshot is in its window', {
        'actions': [{'do': 'lvm', 'ctl': {'block': 'shared', 'hold': 14}},
                    freezer_start('lvm_together', 'p', 60, 'fm-x-lvm-then-hook'),
                    {'do': 'wait', 'what': 'lvcreate'},
                    {'do': 'run', 'name': 'h', 'kind': 'hook', 'argv': hook_argv(30, 'freeze', set_history=False)},
                    {'do': 'wait', 'what': 'exit', 'name': 'p', 'timeout': 60},
                    {'do': 'remove_run_snapshots', 'run_id': 'fm-x-lvm-then-hook'}],
        'observe': {'slack': SLACK}, 'main': 'h'}, ['held by iris_lvm_snapshot'], est=20,
        note='the lvm run itself succeeds (valid); its snapshots are removed afterwards as the backup would')
    rows.append(Row('extra.two_iris_freeze_plays.iris_freeze', 'iris_freeze', 'two freezers', 'two_plays', 'pair',
                    {'prep': [{'do': 'fault', 'inst': 'IRIS', 'args': ['--freeze-delay', 2]},
                              {'do': 'lvm', 'ctl': {'snapshot_hold': 3}}],
                     'vars': {'fm_freezer': 'iris_freeze', 'fm_mode': 'together', 'fm_deadman': 30},
                     'observe': {'slack': SLACK}}, phrases=['leased to iris_freeze'], est=30,
                    desc='two ansible-playbook runs of iris_freeze ... iris_thaw at once'))
    # the controller dies while holding the lock: the next run after the switch is due is not refused
    rows.append(Row('extra.controller_killed_holding_lock.iris_freeze', 'iris_freeze', 'after_freeze',
                    'KILL_PLAYBOOK', 'lockkill', {
                        'prep': [{'do': 'lvm', 'ctl': {'snapshot_hold': 60}}],
                        'vars': {'fm_freezer': 'iris_freeze', 'fm_mode': 'together', 'fm_deadman': 8,
                                 'fm_run_id': 'fm-x-lockkill'},
                        'observe': {'slack': SLACK}}, expect='ok', est=40,
                    desc='SIGKILL of ansible-playbook while its lease is held; the next freeze once the switch is due'))
    add('window_killed_frees_flock', 'lvm_together', 'during_lvcreate', 'SIGKILL of the window; the next freezer at '
        'once (existing=remove)', {
            'actions': [{'do': 'lvm', 'ctl': {'block': 'shared', 'hold': 0}},
                        freezer_start('lvm_together', 'p', D_HOST, 'fm-x-flock-1'),
                        {'do': 'wait', 'what': 'lvcreate'}, {'do': 'signal', 'name': 'p', 'sig': 'KILL'},
                        {'do': 'kill_lvcreate'},
                        freezer_start('lvm_together', 'q', D_HOST, 'fm-x-flock-2', do='run', existing='remove')],
            'observe': {'slack': SLACK}, 'main': 'q'},
        ['already frozen (IsWDSuspendedExt returned 5)'], absent=['freeze lock'], est=D_HOST + 10)
    # a non-root run with a state directory another user made
    for variant in ('foreign_owner', 'symlink'):
        make = (['sh', '-c', 'mkdir -m 0777 /tmp/irisops-51773'] if variant == 'foreign_owner' else
                ['sh', '-c', 'mkdir -p /tmp/fm-planted && ln -s /tmp/fm-planted /tmp/irisops-51773'])
        phrase = 'belongs to uid 51774' if variant == 'foreign_owner' else 'symbolic link'
        for fz in ('iris_freeze', 'hook'):
            if fz == 'hook':
                start = {'do': 'run', 'name': 'p', 'kind': 'hook', 'user': 'irisowner',
                         'argv': hook_argv(D_HOST, 'freeze', set_history=False, instances='IRIS', extra=[
                             '--state-dir', '/home/irisowner/irisops-hook-state', '--log-file', '',
                             '--no-syslog'])}
            else:
                start = freezer_start(fz, 'p', D_HOST, 'fm-x-nonroot-%s' % variant.replace('_', '-'), do='run',
                                      instances=['IRIS'])
                start['user'] = 'irisowner'
            add('nonroot_%s' % variant, fz, 'before the freeze', '/tmp/irisops-51773 %s by cacheusr' % (
                'created' if variant == 'foreign_owner' else 'planted as a symlink'), {
                    'actions': [{'do': 'shell', 'name': 'plant', 'user': 'cacheusr', 'argv': make}, start],
                    'observe': {'slack': SLACK, 'user': 'irisowner'}},
                [phrase], absent=['ExternalFreeze: Suspending system'], est=7)
    # messages.log rotated between arm and fire
    for fz in ('iris_freeze', 'hook'):
        f = ({'do': 'run', 'name': 'f', 'kind': 'hook', 'argv': hook_argv(6, 'freeze')} if fz == 'hook' else
             freezer_start(fz, 'f', 6, 'fm-x-rotate-%s' % fz.replace('_', '-'), do='run'))
        add('log_rotated_before_fire', fz, 'between arm and fire', 'irisemu-ctl IRIS rotate-log, the controller '
            'never thaws', {
                'actions': [f, {'do': 'rotate', 'inst': 'IRIS'},
                            {'do': 'wait', 'what': 'thawed', 'inst': 'IRIS', 'timeout': 40}],
                'observe': {'slack': SLACK}, 'incomplete': True}, ['rotated or unreadable'], est=16)
    return rows


# ---------------------------------------------------------------------------------------------------------------
# containers
# ---------------------------------------------------------------------------------------------------------------

def docker(args, timeout=300, data=None):
    p = subprocess.run(['docker'] + args, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, check=False)
    return p.returncode, p.stdout.decode('utf-8', 'replace'), p.stderr.decode('utf-8', 'replace')


def host_call(ctr, cmd, spec=None, timeout=400):
    argv = ['exec', ctr, 'python3', HOST_DIR + '/fm_host.py', cmd] + ([json.dumps(spec)] if spec is not None else [])
    rc, out, err = docker(argv, timeout=timeout)
    if rc != 0:
        raise RuntimeError('fm_host.py %s on %s failed (rc=%s): %s' % (cmd, ctr, rc, (err or out)[-2000:]))
    return json.loads(out.strip().splitlines()[-1])


def containers(arg):
    if arg:
        return [c for c in arg.split(',') if c]
    rc, out, err = docker(['ps', '--format', '{{.Names}}'])
    return sorted(n for n in out.split() if re.match(r'^irisops-fm-\d+$', n))


def stage_pylib(dest):
    """ansible's package (what AnsibleModule needs on a target) + the collection's plugins, for PYTHONPATH."""
    import ansible
    src = os.path.dirname(ansible.__file__)
    pkg = os.path.join(dest, 'pylib', 'ansible')
    os.makedirs(pkg)
    for name in ('__init__.py', 'release.py'):
        shutil.copy2(os.path.join(src, name), pkg)
    ignore = shutil.ignore_patterns('__pycache__', '*.pyc')
    for name in ('_vendor', 'module_utils'):
        shutil.copytree(os.path.join(src, name), os.path.join(pkg, name), ignore=ignore)
    coll = os.path.join(dest, 'pylib', 'ansible_collections', 'irisops', 'backup')
    shutil.copytree(os.path.join(REPO, 'plugins'), os.path.join(coll, 'plugins'), ignore=ignore)


def engine_modules():
    """_freeze.ENGINE_MODULES, read from the source (the hook program imports these; _lvm since the switch of a
    window removes its snapshots)."""
    with open(os.path.join(REPO, 'plugins', 'module_utils', '_freeze.py')) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == 'ENGINE_MODULES' for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise RuntimeError('ENGINE_MODULES not found in plugins/module_utils/_freeze.py')


def setup(ctrs):
    t0 = time.time()
    stage = tempfile.mkdtemp(prefix='irisops-fm-stage-')
    try:
        stage_pylib(stage)
        os.makedirs(os.path.join(stage, 'hook'))
        # the hook program and the engine files the hooks role installs (_freeze.ENGINE_MODULES: one list)
        for f in ['roles/hooks/files/irisops_hook.py'] + ['plugins/module_utils/%s.py' % m for m in engine_modules()]:
            shutil.copy2(os.path.join(REPO, f), os.path.join(stage, 'hook'))
        os.makedirs(os.path.join(stage, 'fm'))
        for f in ('fm_host.py', 'fm_lvm.py'):
            shutil.copy2(os.path.join(HERE, f), os.path.join(stage, 'fm'))
        tar = subprocess.run(['tar', '-C', stage, '-cf', '-', 'pylib', 'hook', 'fm'], stdout=subprocess.PIPE,
                             check=True).stdout
        for ctr in ctrs:
            rc, out, err = docker(['exec', '-i', ctr, 'sh', '-c',
                                   'rm -rf /opt/irisops-fm /tmp/fm-unpack && mkdir -p /opt/irisops-fm /tmp/fm-unpack '
                                   '/usr/local/lib/irisops %s && tar -C /tmp/fm-unpack -xf - --no-same-owner && '
                                   'mv /tmp/fm-unpack/pylib /opt/irisops-fm/ && cp /tmp/fm-unpack/hook/* '
                                   '/usr/local/lib/irisops/ && cp /tmp/fm-unpack/fm/* %s/ && rm -rf /tmp/fm-unpack'
                                   % (HOST_DIR, HOST_DIR)], data=tar)
            if rc != 0:
                raise RuntimeError('copying the test tools into %s failed: %s' % (ctr, err or out))
            host_call(ctr, 'install', {})
            host_call(ctr, 'reset', {})
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    print('freeze_matrix setup: %s ready in %.1f s' % (', '.join(ctrs), time.time() - t0))


# ---------------------------------------------------------------------------------------------------------------
# controller processes (ansible-playbook rows)
# ---------------------------------------------------------------------------------------------------------------

def proc_table():
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
    """``root`` and every descendant of it (ansible's workers start sessions of their own)."""
    procs = proc_table()
    found = set([root]) | set(p for p, v in procs.items() if v[1] == root)
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _pg, _c) in procs.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return [(p, procs[p][2]) for p in sorted(found) if p in procs]


def kill_pids(pids, sig=signal.SIGKILL):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


class Work(object):
    """Paths and settings of one run (output directory, ansible config, inventories)."""

    def __init__(self, out_dir, records):
        self.out = out_dir
        self.records = records
        os.makedirs(self.out, exist_ok=True)
        os.makedirs(self.records, exist_ok=True)
        self.cfg = os.path.join(self.out, 'ansible.cfg')
        # ssh multiplexing (Ansible's default): one master connection per container, whose ProxyCommand
        # (docker exec -i CTR /usr/sbin/sshd -i) is the connection CUT_SSH kills
        self.cp_dir = tempfile.mkdtemp(prefix='fm-cp-')
        with open(self.cfg, 'w') as f:
            f.write('[defaults]\nhost_key_checking = False\nretry_files_enabled = False\ngathering = explicit\n'
                    'interpreter_python = /usr/bin/python3\nforks = 1\n\n[ssh_connection]\npipelining = False\n'
                    'ssh_args = -o ControlMaster=auto -o ControlPersist=60s\ncontrol_path_dir = %s\n'
                    % self.cp_dir)

    def inventory(self, ctr):
        path = os.path.join(self.out, 'inventory-%s.yml' % ctr)
        if not os.path.exists(path):
            key = os.environ.get('IRISOPS_EMU_SSH_KEY') or os.path.join(REPO, '.cache', 'images', 'emu_ssh_key')
            inv = {'all': {'hosts': {ctr: {
                'ansible_connection': 'ssh', 'ansible_host': ctr, 'ansible_user': 'root',
                'ansible_ssh_private_key_file': key, 'ansible_python_interpreter': '/usr/bin/python3',
                'ansible_ssh_common_args': '-o ProxyCommand="docker exec -i %s /usr/sbin/sshd -i" '
                                           '-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null '
                                           '-o LogLevel=ERROR' % ctr}}}}
            with open(path, 'w') as f:
                json.dump(inv, f)
        return path

    def start_play(self, ctr, pvars, log_name, pipelining=False):
        env = dict(os.environ, ANSIBLE_CONFIG=self.cfg, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0',
                   PYTHONWARNINGS='ignore', ANSIBLE_PIPELINING='True' if pipelining else 'False')
        env.pop('ANSIBLE_CALLBACKS_ENABLED', None)
        # the variable, not only the environment: ansible.cfg's [ssh_connection] pipelining = False won over
        # ANSIBLE_PIPELINING (the module ran from a file with ssh -tt, i.e. on a pty)
        argv = ['ansible-playbook', '-i', self.inventory(ctr), os.path.join(HERE, 'fm_play.yml'),
                '-e', json.dumps(dict(pvars, ansible_pipelining=bool(pipelining)))]
        log = open(os.path.join(self.out, log_name), 'wb')
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
        proc.log_path = log.name
        log.close()
        return proc


def play_output(proc):
    try:
        with open(proc.log_path, 'rb') as f:
            return f.read().decode('utf-8', 'replace')
    except (IOError, OSError):
        return ''


def finish_play(proc, timeout):
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_pids([p for p, _c in tree(proc.pid)])
        proc.wait()
        return 'killed after %d s' % timeout
    return None


# ---------------------------------------------------------------------------------------------------------------
# running rows
# ---------------------------------------------------------------------------------------------------------------

def run_host_row(row, ctr, work):
    spec = dict(row.plan, id=row.id)
    return host_call(ctr, 'exec', spec)


def connection(ctr):
    """(ssh processes, docker exec processes) of the controller's ssh connections to ``ctr``: the multiplexing
    master (a daemon of its own, outside ansible-playbook's tree) and its ProxyCommand."""
    sshs, execs = [], []
    for pid, (_pp, _pg, cmd) in proc_table().items():
        if not cmd:
            continue
        base = os.path.basename(cmd[0])
        if base == 'docker' and cmd[1:4] == ['exec', '-i', ctr] and cmd[-2:] == ['/usr/sbin/sshd', '-i']:
            execs.append(pid)
        elif base == 'ssh' and any(('docker exec -i %s ' % ctr) in a for a in cmd):
            sshs.append(pid)
    return sshs, execs


def deliver(proc, fault, ctr):
    """The controller-side fault; returns a description."""
    if fault == 'KILL_PLAYBOOK':
        victims = [p for p, _c in tree(proc.pid)]
        sshs, execs = connection(ctr)
        kill_pids([proc.pid])
        kill_pids(victims + sshs + execs)
        return ('SIGKILL of ansible-playbook (%d), its %d descendants and its ssh master connection (%d processes)'
                % (proc.pid, len(victims) - 1, len(set(sshs + execs) - set(victims))))
    if fault == 'CUT_SSH':
        execs = []
        for _i in range(50):
            execs = connection(ctr)[1]
            if execs:
                break
            time.sleep(0.1)
        kill_pids(execs)
        return 'killed %d docker exec ... sshd -i connection(s): %s' % (len(execs), execs)
    sig = fault.replace('PLAYBOOK_', '')
    kill_pids([proc.pid], SIGNALS[sig])
    return '%s to ansible-playbook (%d)' % (sig, proc.pid)


def drop_connections(ctr):
    sshs, execs = connection(ctr)
    kill_pids(sshs + execs)


def wait_phase(ctr, proc, waits):
    """fm_host.py act (the waits for the phase) while watching the play: a play that ends first stops the wait."""
    box = {}

    def call():
        try:
            box['res'] = host_call(ctr, 'act', {'actions': waits}, timeout=200)
        except Exception as exc:  # pylint: disable=broad-except
            box['res'] = {'wait_timeouts': ['%s: %s' % (type(exc).__name__, exc)]}

    th = threading.Thread(target=call)
    th.start()
    stopped = False
    while th.is_alive():
        th.join(0.2)
        if th.is_alive() and proc.poll() is not None and not stopped:
            time.sleep(2)     # the phase may still come from a process the play left running
            if th.is_alive():
                docker(['exec', ctr, 'python3', HOST_DIR + '/fm_host.py', 'stop-wait'])
                stopped = True
    return box.get('res') or {}


def run_play_row(row, ctr, work):
    plan = row.plan
    drop_connections(ctr)
    host_call(ctr, 'prep', {'id': row.id, 'actions': plan['prep']})
    proc = work.start_play(ctr, plan['vars'], 'play-%s.log' % row.id, pipelining=plan.get('pipelining', False))
    reached = wait_phase(ctr, proc, plan['wait'])
    notes = []
    if reached.get('wait_timeouts'):
        notes.append('TEST ERROR: phase not reached (%s)' % reached['wait_timeouts'])
    if proc.poll() is not None:
        notes.append('TEST ERROR: ansible-playbook ended (rc %s) before the fault' % proc.returncode)
    fault_at = time.time()
    notes.append(deliver(proc, plan['fault'], ctr))
    if plan.get('after_fault'):
        after = host_call(ctr, 'act', {'actions': plan['after_fault']}, timeout=120)
        if after.get('wait_timeouts'):
            notes.append('TEST ERROR: after the fault, never reached %s' % after['wait_timeouts'])
    late = finish_play(proc, 120)
    if late:
        notes.append('ansible-playbook ' + late)
    kill_pids([p for p, _c in tree(proc.pid)])   # whatever a dead controller left on this machine
    res = host_call(ctr, 'observe', {'observe': plan['observe']})
    res['fault_at'] = fault_at
    res['notes'] = notes
    res['play_rc'] = proc.returncode
    res['play_tail'] = play_output(proc)[-1500:]
    return res


def run_pair_row(row, ctr, work):
    """Two plays of iris_freeze ... iris_thaw at once against one host."""
    plan = row.plan
    drop_connections(ctr)
    host_call(ctr, 'prep', {'id': row.id, 'actions': plan['prep']})
    procs = []
    for n in (1, 2):
        pvars = dict(plan['vars'], fm_run_id='fm-x-pair-%d' % n)
        procs.append(work.start_play(ctr, pvars, 'play-%s-%d.log' % (row.id, n)))
        time.sleep(1.0)
    notes = []
    for p in procs:
        late = finish_play(p, 180)
        if late:
            notes.append('a play was ' + late)
    res = host_call(ctr, 'observe', {'observe': plan['observe']})
    outs = [play_output(p) for p in procs]
    res['play_rcs'] = [p.returncode for p in procs]
    res['notes'] = notes
    res['texts'] = {'play-1': outs[0][-2500:], 'play-2': outs[1][-2500:]}
    res['pair_ok'] = sorted(p.returncode for p in procs)
    return res


def run_lockkill_row(row, ctr, work):
    """iris_freeze's controller SIGKILLed while its lease is held; once the switch is due and has thawed, the next
    freeze must not be refused (and, if it is, when it is let through)."""
    plan = row.plan
    drop_connections(ctr)
    host_call(ctr, 'prep', {'id': row.id, 'actions': plan['prep']})
    proc = work.start_play(ctr, plan['vars'], 'play-%s.log' % row.id)
    reached = wait_phase(ctr, proc, [{'do': 'wait', 'what': 'lease', 'timeout': 120}])
    notes = []
    if reached.get('wait_timeouts'):
        notes.append('TEST ERROR: the lease was never written')
    notes.append(deliver(proc, 'KILL_PLAYBOOK', ctr))
    finish_play(proc, 60)
    # the switch is due after fm_deadman s; wait until it has thawed both instances
    host_call(ctr, 'act', {'actions': [{'do': 'wait', 'what': 'thawed', 'inst': 'IRIS', 'timeout': 60},
                                       {'do': 'wait', 'what': 'thawed', 'inst': 'CACHE', 'timeout': 60},
                                       {'do': 'wait', 'what': 'switch_gone', 'inst': 'IRIS', 'timeout': 30},
                                       {'do': 'wait', 'what': 'switch_gone', 'inst': 'CACHE', 'timeout': 30}]})
    nxt = [freezer_start('iris_freeze', 'next', D_HOST, 'fm-x-lockkill-next', do='run')]
    host_call(ctr, 'act', {'actions': nxt})
    res = host_call(ctr, 'observe', {'observe': {'slack': SLACK, 'set_history': False, 'wait_exit': 5,
                                                 'poll': False}})
    refused = 'freeze lock' in (res['texts'].get('next') or '')
    retry = None
    if refused:
        # how long the lease outlives the switch: retry once the lease record says it has ended
        until = ((res.get('owner_record') or {}).get('lease_until') or time.time()) + 2
        wait_s = max(0, min(90, until - time.time()))
        time.sleep(wait_s)
        host_call(ctr, 'act', {'actions': [freezer_start('iris_freeze', 'retry', D_HOST, 'fm-x-lockkill-retry',
                                                         do='run')]})
        again = host_call(ctr, 'observe', {'observe': {'slack': SLACK, 'set_history': False, 'wait_exit': 5,
                                                       'poll': False}})
        retry = {'after_s': round(wait_s, 1), 'msg': again['texts'].get('retry')}
    # thaw what the next freeze (or the retry) holds, with its lease, and look at the host once more
    for name in ('next', 'retry') if retry else ('next',):
        host_call(ctr, 'act', {'actions': [{'do': 'run', 'name': 'thaw-' + name, 'kind': 'module',
                                            'module': 'iris_thaw', 'args': {
                                                'instances': ['IRIS', 'CACHE'],
                                                'lease': {'$ref': name, 'key': 'lease'}}}]})
    final = host_call(ctr, 'observe', {'observe': {'slack': SLACK, 'wait_exit': 5}})
    final['notes'] = notes + (['the next freeze was refused right after the switch thawed; retried after the lease '
                               'record ended (%s s later): %s' % (retry['after_s'], retry['msg'])] if retry else [])
    final['next_refused'] = refused
    final['next_msg'] = res['texts'].get('next')
    final['lockkill_first'] = res
    return final


def self_test(ctr):
    """The observation can fail: iris_freeze with deadman_timeout 0 and nobody thawing must be seen frozen.
    Returns None or what is wrong."""
    try:
        res = host_call(ctr, 'exec', {'id': 'self-test', 'actions': [
            freezer_start('iris_freeze', 'f', 0, 'fm-self-test', do='run')],
            'observe': {'slack': 0, 'settle': 2, 'set_history': False}})
        host_call(ctr, 'reset', {})
    except Exception as exc:  # pylint: disable=broad-except
        return '%s: %s' % (type(exc).__name__, exc)
    if sorted(res.get('frozen_after') or []) != ['CACHE', 'IRIS']:
        return 'expected CACHE and IRIS frozen, the observer saw %s' % res.get('frozen_after')
    return None


RUNNERS = {'host': run_host_row, 'play': run_play_row, 'pair': run_pair_row, 'lockkill': run_lockkill_row}


# ---------------------------------------------------------------------------------------------------------------
# verdicts and records
# ---------------------------------------------------------------------------------------------------------------

def compose_message(res):
    parts = []
    for name, text in sorted((res.get('texts') or {}).items()):
        if text:
            parts.append('%s: %s' % (name, ' '.join(str(text).split())[-1200:]))
    for rec in res.get('run_records') or []:
        if rec.get('msg'):
            parts.append('run %s (%s, valid=%s): %s' % (
                rec['run_id'], rec.get('state'), rec.get('valid'), ' '.join(rec['msg'].split())[:700]))
    if res.get('hook_log'):
        keep = [ln for ln in res['hook_log'].splitlines() if 'finished' in ln or 'BACKUP INVALID' in ln
                or 'ERROR' in ln or 'WARNING' in ln]
        if keep:
            parts.append('hook log: ' + ' | '.join(' '.join(ln.split()) for ln in keep)[-1500:])
    if res.get('deadman_log'):
        parts.append('switch: ' + ' | '.join(ln.split(': ', 1)[-1] for ln in res['deadman_log'].splitlines()))
    for inst, lines in sorted((res.get('inst_log') or {}).items()):
        if lines:
            parts.append('%s log: %s' % (inst, ' | '.join(ln.split(' [Utility.Event] ')[-1] for ln in lines)))
    for sh in (res.get('set_history') or []):
        parts.append('iris_set_history %s: %s' % (sh['run_id'], 'REFUSED: ' + ' '.join(sh['msg'].split())[:200]
                                                  if sh['failed'] else 'RECORDED %s' % sh['recorded']))
    return '\n'.join(parts)


def judge(row, res, seconds):
    """The fault record of a row and its notes."""
    notes = list(res.get('notes') or [])
    if res.get('wait_timeouts'):
        notes.append('TEST ERROR: a phase was never reached: %s' % res['wait_timeouts'])
    procs = res.get('procs') or {}
    main = row.plan.get('main') if isinstance(row.plan, dict) else None
    if row.kind == 'play':
        rc_failed = res.get('play_rc') != 0
    elif row.kind == 'pair':
        rc_failed = 1 in [1 if (rc or 0) != 0 else 0 for rc in res.get('play_rcs') or []]
        if sorted(1 if (rc or 0) != 0 else 0 for rc in res.get('play_rcs') or []) != [0, 1]:
            notes.append('expected exactly one of the two plays to fail, rc %s' % res.get('play_rcs'))
    elif row.kind == 'lockkill':
        rc_failed = bool(res.get('next_refused'))
    else:
        names = [main] if main else [n for n in procs if not n.startswith('set_history')]
        rc_failed = any(procs.get(n, {}).get('rc', -1) != 0 for n in names)
        if row.plan.get('incomplete'):
            rc_failed = True     # the freeze was never thawed by its freezer: the run did not complete
    message = compose_message(res)
    if row.kind == 'lockkill':
        message = (res.get('next_msg') or '') + '\n' + message
    # signals: the fault must hit before the switch was due, or the row tests nothing
    for s in res.get('signals') or []:
        bound = res.get('bound')
        if bound and row.fault in ('SIGKILL',) and s['at'] > bound:
            notes.append('TEST ERROR: the fault came %.1f s after the switch was due' % (s['at'] - bound))
        if not s.get('delivered'):
            notes.append('TEST ERROR: the signal found no process (it had ended already)')
    if res.get('fault_at') and res.get('bound') and res['fault_at'] > res['bound']:
        notes.append('TEST ERROR: the fault came %.1f s after the switch was due' % (res['fault_at'] - res['bound']))
    # data: a backup recorded for a window that is not valid
    valid_runs = [r for r in res.get('run_records') or [] if r.get('valid') is True]
    data_lost = sum(1 for sh in res.get('set_history') or [] if not sh['failed'])
    if res.get('recorded') and not valid_runs:
        data_lost += len(res['recorded'])
        notes.append('backup history changed without a valid run: %s' % res['recorded'])
    # a phrase is a text, or a tuple of texts of which one must be there (the one found is recorded)
    found = [next((a for a in p if a in message), None) if isinstance(p, tuple) else (p if p in message else None)
             for p in row.phrases]
    missing = [(' | '.join(p) if isinstance(p, tuple) else p) for p, f in zip(row.phrases, found) if f is None]
    present = [a for a in row.absent if a in message]
    expected = missing[0] if missing else (found[0] if found else None)
    if present:
        notes.append('the message must not contain %r' % present)
        expected = 'NOT: %s' % present[0]
    if any(n.startswith('TEST ERROR') for n in notes):
        expected = notes[[i for i, n in enumerate(notes) if n.startswith('TEST ERROR')][0]]
    if isinstance(row.plan, dict) and row.plan.get('must_record') and sorted(res.get('recorded') or []) != [
            'CACHE', 'IRIS']:
        notes.append('TEST ERROR: the valid backup was not recorded in both instances (%s): the history check '
                     'cannot see a recording' % res.get('recorded'))
        expected = notes[-1]
        rc_failed = True
    if res.get('switches_left'):
        notes.append('switch still armed at the end: %s' % res['switches_left'])
    if res.get('freezers_left_running'):
        notes.append('freezer processes still running at the end: %s' % res['freezers_left_running'])
    rec = {
        'suite': SUITE, 'case': row.id,
        'fault': '%s / %s / %s' % (FREEZER_TEXT.get(row.freezer, row.freezer), PHASE_TEXT.get(row.phase, row.phase),
                                   row.desc or FAULT_TEXT.get(row.fault, row.fault)),
        'expect': row.expect, 'rc_failed': bool(rc_failed), 'message': message[:12000],
        'message_expected': expected,
        'frozen_after': res.get('frozen_after') or [], 'snapshots_after': res.get('snapshots_after') or [],
        'data_lost': data_lost, 'report_status': None,
        'freezer': row.freezer, 'phase': row.phase, 'fault_kind': row.fault, 'runs_as': row.kind,
        'mapped_from': row.mapped_from, 'seconds': round(seconds, 1), 'notes': notes,
        'thawed_after_bound_s': res.get('thawed_after_bound_s'),
    }
    if row.expect == 'ok':
        if (expected or '').startswith(('TEST', 'NOT')):
            rec['rc_failed'] = True   # summary.py judges message_expected only for failures: fail the row this way
        else:
            rec['message_expected'] = None
    return rec


def survived(rec):
    reasons = []
    if rec['rc_failed'] != (rec['expect'] == 'fail'):
        reasons.append('the run %s' % ('failed' if rec['rc_failed'] else 'succeeded'))
    if rec['message_expected'] and rec['message_expected'] not in (rec['message'] or ''):
        reasons.append('no %r in the message' % rec['message_expected'][:80])
    if rec['frozen_after']:
        reasons.append('frozen after the bound: %s' % ', '.join(rec['frozen_after']))
    if rec['snapshots_after']:
        reasons.append('snapshots left: %s' % ', '.join(rec['snapshots_after']))
    if rec['data_lost']:
        reasons.append('torn backup recorded (%d)' % rec['data_lost'])
    return not reasons, reasons


def outcome_text(rec, res):
    ok, reasons = survived(rec)
    how = []
    if 'thawed it' in (res.get('deadman_log') or ''):
        how.append('switch thawed')
    elif rec['rc_failed']:
        how.append('failed')
    else:
        how.append('ok')
    return ('survived (%s)' % ', '.join(how)) if ok else 'NOT SURVIVED: %s' % '; '.join(reasons)


# ---------------------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------------------

EXTRA_MAPPING = [
    'extra.nonroot_*.lvm_*: not run - iris_lvm_snapshot needs root for LVM (lvs, lvcreate); a non-root run stops at '
    'its LVM preflight before it reaches the state directory; the state directory check is the same engine code '
    'that extra.nonroot_*.iris_freeze and .hook run',
    'extra.log_rotated_before_fire.lvm_*: not run - the switch\'s log check is the same for every freezer (run with '
    'iris_freeze and the hook); an lvm window is only left to its switch by a SIGKILL (rows *.SIGKILL)',
]


def print_mapping(rows, maps, out=sys.stdout):
    by = {}
    for r in rows:
        by.setdefault((r.kind, r.freezer), 0)
        by[(r.kind, r.freezer)] += 1
    matrix = [r for r in rows if not r.id.startswith('extra.')]
    out.write('freeze matrix: %d freezers x %d phases x %d faults = %d cells -> %d rows run (%d on the host, %d '
              'through ansible-playbook), %d cells mapped onto another row; %d extra rows\n' % (
                  len(FREEZERS), len(PHASES), len(FAULTS), len(FREEZERS) * len(PHASES) * len(FAULTS), len(matrix),
                  len([r for r in matrix if r.kind == 'host']), len([r for r in matrix if r.kind == 'play']),
                  len([m for m in maps if ' -> ' in m]), len(rows) - len(matrix)))
    out.write('mapping of the cells that make no sense as they stand:\n')
    for m in maps + EXTRA_MAPPING:
        out.write('  %s\n' % m)


def render_table(results):
    head = ('row', 'freezer', 'phase', 'fault', 'outcome', 'seconds')
    lines = [(r['case'], r['freezer'], r['phase'], r['fault_kind'], r['outcome'], '%.1f' % r['seconds'])
             for r in results]
    widths = [max([len(head[i])] + [len(ln[i]) for ln in lines]) for i in range(len(head))]
    widths[4] = min(widths[4], 90)

    def fmt(cells):
        return ' | '.join((c if len(c) <= w else c[:w - 3] + '...').ljust(w) for c, w in zip(cells, widths)).rstrip()

    return [fmt(head), '-|-'.join('-' * w for w in widths)] + [fmt(ln) for ln in lines]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    ap.add_argument('command', choices=('list', 'setup', 'run'))
    ap.add_argument('--containers', default=os.environ.get('IRISOPS_FM_CONTAINERS', ''),
                    help='comma-separated container names (default: every running irisops-fm-N)')
    ap.add_argument('--only', default=os.environ.get('IRISOPS_FM_ONLY', ''), help='regex of the row ids to run')
    ap.add_argument('--records', default=os.path.join(REPO, 'tests', 'output', 'faults'))
    ap.add_argument('--out', default=os.path.join(REPO, 'tests', 'output', 'freeze_matrix'))
    args = ap.parse_args(argv)
    rows, maps = generate()
    if args.only:
        rows = [r for r in rows if re.search(args.only, r.id)]
    if args.command == 'list':
        print_mapping(rows, maps)
        for r in rows:
            words = ' / '.join(' | '.join(p) if isinstance(p, tuple) else p for p in r.phrases)
            print('  %-62s %-8s %s' % (r.id, r.kind, words))
        return 0
    ctrs = containers(args.containers)
    if not ctrs:
        sys.stderr.write('freeze_matrix: no container irisops-fm-N is running\n')
        return 2
    if args.command == 'setup':
        setup(ctrs)
        return 0
    work = Work(args.out, args.records)
    for old in os.listdir(args.records):
        if old.startswith(SUITE + '-') and old.endswith('.json'):
            os.unlink(os.path.join(args.records, old))
    print_mapping(rows, maps)
    sys.stdout.flush()
    t0 = time.time()
    problem = self_test(ctrs[0])
    if problem:
        print('freeze_matrix: the observer self-test failed, no row is run: %s' % problem)
        return 2
    print('observer self-test on %s: a freeze without a switch (deadman_timeout 0) is seen frozen after the bound: '
          'ok (%.1f s)' % (ctrs[0], time.time() - t0))
    todo = queue.Queue()
    for r in sorted(rows, key=lambda r: -r.est):
        todo.put(r)
    results, lock = [], threading.Lock()
    obs_dir = os.path.join(args.out, 'rows')
    os.makedirs(obs_dir, exist_ok=True)

    def worker(ctr):
        while True:
            try:
                row = todo.get_nowait()
            except queue.Empty:
                return
            t = time.time()
            try:
                res = RUNNERS[row.kind](row, ctr, work)
            except Exception as exc:  # pylint: disable=broad-except
                res = {'notes': ['TEST ERROR: %s: %s' % (type(exc).__name__, exc)]}
            secs = time.time() - t
            rec = judge(row, res, secs)
            rec['outcome'] = outcome_text(rec, res)
            rec['container'] = ctr
            with open(os.path.join(args.records, '%s-%s.json' % (SUITE, row.id)), 'w') as f:
                json.dump(dict((k, v) for k, v in rec.items() if k != 'outcome'), f, indent=1)
                f.write('\n')
            with open(os.path.join(obs_dir, '%s.json' % row.id), 'w') as f:
                json.dump({'record': rec, 'observation': res}, f, indent=1, default=str)
            with lock:
                results.append(rec)
                print('[%5.0fs] %-14s %-62s %5.1fs %s' % (time.time() - t0, ctr, row.id, secs, rec['outcome']))
                sys.stdout.flush()

    threads = [threading.Thread(target=worker, args=(c,)) for c in ctrs]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for c in ctrs:
        drop_connections(c)
    shutil.rmtree(work.cp_dir, ignore_errors=True)
    total = time.time() - t0
    results.sort(key=lambda r: r['case'])
    print()
    for line in render_table(results):
        print(line)
    bad = [r for r in results if not survived(r)[0]]
    lost = [r for r in results if r['data_lost']]
    by = {}
    for r in results:
        key = 'extra' if r['case'].startswith('extra.') else r['runs_as']
        by[key] = by.get(key, 0) + 1
    print()
    if bad:
        print('did not survive:')
        for r in bad:
            print('  %s: %s%s' % (r['case'], '; '.join(survived(r)[1]), (' [%s]' % '; '.join(r['notes']))
                                  if r['notes'] else ''))
    print('freeze matrix: %d rows (%s) on %d containers in %.0f s' % (
        len(results), ', '.join('%s %d' % kv for kv in sorted(by.items())), len(ctrs), total))
    print('faults tried %d, survived %d, data lost %d' % (len(results), len(results) - len(bad), len(lost)))
    with open(os.path.join(args.out, 'summary.json'), 'w') as f:
        json.dump({'seconds': round(total, 1), 'rows': len(results), 'survived': len(results) - len(bad),
                   'data_lost': len(lost), 'containers': ctrs, 'mapping': maps,
                   'table': [dict((k, r[k]) for k in ('case', 'freezer', 'phase', 'fault_kind', 'outcome', 'seconds'))
                             for r in results]}, f, indent=1)
    return 0 if not bad else 1


if __name__ == '__main__':
    sys.exit(main())
