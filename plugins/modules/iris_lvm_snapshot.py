#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: iris_lvm_snapshot
short_description: Freeze IRIS/Cache instances, snapshot all their LVM volumes and thaw them, in one on-host call
version_added: 0.1.0
description:
  - Takes an application-consistent LVM snapshot of one or more InterSystems IRIS or Cache instances in B(one) module
    call, so that the freeze window pays no Ansible task overhead and no SSH round trip.
  - "Sequence: preflight (nothing frozen yet), freeze all selected instances concurrently (C(ExternalFreeze)),
    create one classic LVM snapshot per logical volume back to back, thaw all instances concurrently
    (C(ExternalThaw)) in a C(finally) block, then read the fill of every snapshot."
  - The thaw runs even when a snapshot fails, when the module raises, and when it receives SIGTERM, SIGHUP or SIGINT
    (for example because the control connection dropped). After such a failure the snapshots of this run are removed
    again (found by their run tag) and the module fails with a message naming what happened.
  - "The preflight checks, before anything is frozen: the instances exist, are running and are not frozen already;
    every database, journal, alternate journal, WIJ and installation directory of every instance is mapped to its
    logical volume (C(findmnt) and C(lvs)) or reported; every volume group has free extents for all snapshots
    together; no snapshot of an earlier run is left over; the mirror role of each instance against O(mirror_primary);
    the freeze budget against C(ExternalFreezeTimeOut)."
  - Databases that are not journalled are reported as warnings, from the report of C(ExternalFreeze) itself.
  - "With O(freeze_mode=staggered) each instance is frozen only while the snapshots it needs are taken: an instance
    that shares no logical volume with another is frozen, snapshotted and thawed on its own; instances that share
    volumes are frozen so that the shared snapshots are taken while all of them are frozen, the first half of them
    (by their own volumes) frozen before and thawed right after the shared snapshots, the second half frozen just
    before them and each thawed as soon as its own volumes are done. Every instance's snapshots are consistent for
    that instance, but the snapshots of different instances are from different moments. RV(steps) lists the
    sequence (also in check mode)."
  - Before the freeze the module arms, for every selected instance, the same on-host dead-man switch as
    M(irisops.backup.iris_freeze) (see C(docs/deadman.md)), records the freeze in it right after the freeze (a file
    write, so arming costs no frozen time) and disarms it after each successful thaw. It thaws an instance left
    frozen when the module process itself is killed inside the freeze window (SIGKILL of the Ansible worker, the
    OOM killer, a cut connection killing the remote Python), which no C(finally) block survives. When a switch
    cannot be armed, nothing is frozen.
  - The freeze budget is also capped at the time left until the switches fire (O(deadman_timeout) after arming) -
    the module stops before a C(lvcreate) that could still run when they fire. If the switch thawed an instance
    during the window anyway (it was not armed any more at the thaw), the run fails and its snapshots are removed,
    because they may not be consistent.
  - Uses the collection's private module_utils C(_iris) (discovery, freeze, thaw) and C(_lvm) (mapping, preflight,
    creation, removal); it contains no copy of their logic.
author:
  - irisops.backup maintainers (@irisops)
extends_documentation_fragment:
  - irisops.backup.iris
  - irisops.backup.iris.instances
  - irisops.backup.iris.deadman
  - irisops.backup.iris.action_group
options:
  volumes:
    description:
      - Logical volumes to snapshot in addition to the ones that hold the instances' directories, for example a
        volume with application files.
      - Each element is V(vg/lv), an absolute path on the file system to snapshot, or a dictionary with C(vg) and
        C(lv) (or C(path)) and optionally C(size) and C(name).
    type: list
    elements: raw
    default: []
  size:
    description:
      - Size of each snapshot unless a volume sets its own; an absolute size (V(512M), V(2G)) or V(N%ORIGIN),
        V(N%FREE), V(N%VG) as in M(irisops.backup.lvm_snapshot).
    type: str
    default: 20%ORIGIN
  suffix:
    description:
      - The snapshot of LV C(<lv>) is named C(<lv><suffix>).
    type: str
    default: _irisops_snap
  run_id:
    description:
      - Identifier of this backup run; every snapshot gets the LV tags C(irisops_snapshot) and C(irisops_run_<run_id>).
      - Generated from the time and process id when omitted; returned as RV(run_id).
    type: str
  existing:
    description:
      - What to do with snapshots of the same origins that an earlier run left behind (tagged C(irisops_snapshot),
        or carrying the snapshot name this run wants).
      - V(fail) fails the preflight, nothing is frozen. V(remove) removes them during the preflight, before the freeze.
    type: str
    choices: [fail, remove]
    default: fail
  unmapped_directories:
    description:
      - What to do when a directory of an instance is not on an LVM logical volume (for example the installation
        directory on the root file system).
      - V(fail) fails the preflight. V(warn) snapshots the rest and warns that the backup does not contain that
        directory.
    type: str
    choices: [fail, warn]
    default: fail
  include_install_dir:
    description:
      - Map the installation directory (with C(mgr/), the system databases, the CPF and by default the WIJ) too.
    type: bool
    default: true
  mirror_primary:
    description:
      - Policy for instances that are the primary failover member of a mirror (qlist mirror status C(Primary)).
      - V(freeze) freezes them like any other instance; the freeze is then bounded by O(max_freeze_seconds), which
        must stay below C(ExternalFreezeTimeOut).
      - V(skip) leaves them out (not frozen, their volumes not snapshotted unless another instance shares them).
      - V(fail) fails the preflight; back up the backup failover member or a DR async member instead.
    type: str
    choices: [freeze, skip, fail]
    default: fail
  freeze_mode:
    description:
      - V(together) freezes all selected instances at once, takes every snapshot, and thaws them all (one window
        for all instances; all snapshots are from one moment for every instance, for applications that keep data in
        more than one instance).
      - V(staggered) freezes each instance only while its own snapshots and the ones of volumes it shares are taken
        (see the description). The longest window is shorter when the instances have volumes of their own (about
        half the C(lvcreate)s for instances that share one volume, only their own for instances that share none);
        each instance is consistent on its own, the instances are not consistent with each other.
    type: str
    choices: [together, staggered]
    default: together
  external_freeze_timeout:
    description:
      - C(ExternalFreezeTimeOut) passed to ExternalFreeze, in seconds (IRIS default 600). It is B(not) an automatic
        thaw; after it the instance pauses all processes.
    type: int
  max_freeze_seconds:
    description:
      - Freeze budget. Before each C(lvcreate) the module checks that the freeze, plus the longest C(lvcreate) so far,
        stays within this many seconds; otherwise it stops, thaws, removes the snapshots and fails.
      - Defaults to 90% of O(external_freeze_timeout) (or of 600). Must be below it when a mirror primary is frozen.
    type: int
  wd_suspend_limit:
    description:
      - C(WDSuspendLimit) passed to ExternalFreeze - IRIS resumes the write daemon by itself after this many seconds,
        a watchdog for a module killed with SIGKILL. A backup that outlives it is not consistent.
    type: int
  text:
    description:
      - Text stored in the journal marker written by ExternalFreeze.
    type: str
  stat_fallback:
    description:
      - When C(ExternalThaw) fails, resume the write daemon with C(iris stat INST -W) (C(irisstat -W)).
    type: bool
    default: true
  lvm_timeout:
    description:
      - Seconds after which one LVM or util-linux command of the preflight or the cleanup is killed.
      - C(lvcreate) inside the freeze window is never killed (a killed C(lvcreate) can leave the origin suspended);
        the freeze budget O(max_freeze_seconds) bounds the window instead.
    type: int
    default: 120
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - The whole preflight runs (read-only C(IsWDSuspendedExt) sessions, C(lvs), C(findmnt)) and each C(lvcreate) is
        dry-run with C(--test); nothing is frozen, nothing is created and no dead-man switch is armed
        (RV(instance_results.deadman.would_arm) tells whether one would be).
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
notes:
  - Not idempotent by nature, every run takes new snapshots. The M(irisops.backup.lvm_snapshot) module mounts and
    removes them afterwards (the C(irisops.backup.lvm_backup) role does the whole backup).
  - The snapshots are classic copy-on-write snapshots; their fill grows with the writes to the origins while they
    exist. RV(snapshots) reports the fill right after the thaw.
  - Run it as root (C(become)).
seealso:
  - module: irisops.backup.lvm_snapshot
  - module: irisops.backup.iris_freeze
  - module: irisops.backup.iris_thaw
  - module: irisops.backup.iris_set_history
"""

EXAMPLES = r"""
- name: Freeze both instances, snapshot all their volumes, thaw - one task
  irisops.backup.iris_lvm_snapshot:
    instances: [IRISA, IRISB]
    size: 25%ORIGIN
    run_id: "{{ awx_job_id | default('manual') }}"
  register: snap

- name: Freeze windows and journal files to restore from
  ansible.builtin.debug:
    msg: "{{ snap.instance_results | dict2items | map(attribute='value') | map(attribute='frozen_ms') | list }}"

- name: Only the preflight (check mode)
  irisops.backup.iris_lvm_snapshot:
    instances: all
    mirror_primary: skip
  check_mode: true
"""

RETURN = r"""
run_id:
  description: The run id the snapshots are tagged with.
  returned: always
  type: str
  sample: 20261123T101500Z-4711
instances:
  description: Names of the instances frozen (to be frozen in check mode), in order.
  returned: always
  type: list
  elements: str
instance_results:
  description: Per selected instance, keyed by name.
  returned: always
  type: dict
  contains:
    action:
      description: V(frozen), V(would_freeze) (check mode), V(skipped) (mirror primary with O(mirror_primary=skip)) or
        V(failed).
      type: str
    frozen_ms:
      description: Milliseconds from the start of the freeze to the end of the thaw of this instance.
      type: int
    freeze_call_ms:
      description: Milliseconds the ExternalFreeze session took.
      type: int
    thaw_call_ms:
      description: Milliseconds the ExternalThaw session took.
      type: int
    journal_file:
      description: The journal file a restore of this backup starts with (reported by ExternalFreeze).
      type: str
    not_journalled:
      description: Database directories ExternalFreeze reported as not journalled.
      type: list
      elements: str
    mirror_member_type:
      description: Mirror member type from qlist (empty when not a mirror member).
      type: str
    mirror_status:
      description: Mirror status from qlist.
      type: str
    directories:
      description: Directory -> C(vg/lv) (or null when not on LVM) for every directory of the instance.
      type: dict
    thawed_by:
      description: V(ExternalThaw) or V(stat -W).
      type: str
    deadman:
      description:
        - The dead-man switch of this instance (armed before the freeze; absent with O(deadman_timeout=0)).
      type: dict
      contains:
        armed:
          description: Whether a switch was armed (before the freeze).
          type: bool
        freeze_recorded:
          description: Whether the freeze was recorded in the switch after it succeeded (from then on the switch
            thaws only that freeze).
          type: bool
        would_arm:
          description: Check mode only, whether the real run would arm a switch.
          type: bool
        mechanism:
          description: V(systemd) (transient timer) or V(process) (detached sleeper); null when not armed.
          type: str
        fires_at:
          description: UTC time (ISO 8601) at which it would have thawed the instance if still frozen.
          type: str
          sample: '2024-03-01T02:05:03Z'
        seconds:
          description: The O(deadman_timeout) used.
          type: int
        disarmed:
          description: Whether it was disarmed after the thaw, or after a freeze that failed and was rolled back
            (V(false) when the thaw failed - the switch stays armed and thaws the instance when it fires).
          type: bool
snapshots:
  description: One entry per snapshot LV, in creation order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Snapshot LV name.
      type: str
    vg:
      description: Volume group.
      type: str
    origin:
      description: Origin LV name.
      type: str
    path:
      description: Device path.
      type: str
    size:
      description: Size in bytes.
      type: int
    data_percent:
      description: Fill of the copy-on-write store in percent after the thaw (null in check mode).
      type: float
    valid:
      description: False when the snapshot is invalid or full.
      type: bool
    instances:
      description: Instances whose directories are on the origin.
      type: list
      elements: str
    created:
      description: Whether the snapshot exists after the call.
      type: bool
    origin_devices:
      description: Device paths of the origin (C(/dev/<vg>/<lv>) and the C(/dev/mapper) name).
      type: list
      elements: str
    volume:
      description: The snapshot as an element of O(irisops.backup.lvm_snapshot#module:volumes) (C(vg), C(lv), C(name)),
        to mount or remove it with that module.
      type: dict
freeze_window_ms:
  description: The longest RV(instance_results.frozen_ms).
  returned: success
  type: int
snapshot_ms:
  description: Milliseconds from the first to the end of the last C(lvcreate) (with O(freeze_mode=staggered) this
    includes the freezes and thaws between them).
  returned: success
  type: int
steps:
  description: The freeze window as run (or, in check mode, as it would run), one line per step - C(freeze NAME[,
    NAME...]), C(snapshot VG/LV), C(thaw NAME[, NAME...]).
  returned: always
  type: list
  elements: str
  sample: [freeze IRISA, snapshot vgbk/dba, freeze IRISB, snapshot vgbk/sys, thaw IRISA, snapshot vgbk/dbb, thaw IRISB]
cleaned_up:
  description: On failure, what the module undid (V(thawed), V(snapshots_removed)) and what it could not
    (V(still_frozen), V(removal_errors)); V(went_down) lists instances found down (so not frozen) at the thaw.
  returned: failure
  type: dict
warnings_preflight:
  description: Preflight findings that did not stop the run.
  returned: always
  type: list
  elements: str
commands:
  description: LVM commands run, with return code and seconds.
  returned: always
  type: list
  elements: dict
"""

import concurrent.futures
import os
import signal
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.irisops.backup.plugins.module_utils import _iris
from ansible_collections.irisops.backup.plugins.module_utils import _lvm

#: ExternalFreezeTimeOut used when the option is not set (IRIS default, CONFIRMED in the Data Integrity Guide).
EFT_DEFAULT = 600
#: Share of ExternalFreezeTimeOut used as the default freeze budget.
BUDGET_SHARE = 0.9
PRIMARY_STATUS = 'primary'


def _signal_name(signum):
    try:
        return signal.Signals(signum).name
    except (ValueError, AttributeError):
        return 'signal %s' % signum


class SignalGuard(object):
    """Records SIGTERM/SIGHUP/SIGINT while the freeze window is open; the window checks ``received`` between steps.

    The handler does not raise: an exception in the middle of an ExternalFreeze session or of an lvcreate would leave
    that child running on its own (a freeze finishing after the thaw, a snapshot after the thaw). Each step is short
    and bounded, so the thaw starts at the next step boundary.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)

    def __init__(self):
        self.received = []
        self.old = {}

    def _handler(self, signum, frame):
        self.received.append(signum)

    def __enter__(self):
        for s in self.SIGNALS:
            self.old[s] = signal.signal(s, self._handler)
        return self

    def names(self):
        return ', '.join(_signal_name(s) for s in self.received)

    def interrupted(self):
        if self.received:
            return 'interrupted by %s while the instances were frozen (the control connection dropped or the job ' \
                   'was cancelled)' % self.names()
        return None

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)
        return False


def _default_run_id():
    return '%s-%d' % (time.strftime('%Y%m%dT%H%M%SZ', time.gmtime()), os.getpid())


def _ms(seconds):
    return int(round(seconds * 1000))


def staggered_steps(names, plan_instances):
    """The freeze window of freeze_mode=staggered as steps ``('freeze', [names])``, ``('snap', plan)``,
    ``('thaw', [names])``.

    ``names``: the instances in the order given; ``plan_instances``: ``(plan, [instance names])`` per snapshot (no
    names: a volume given through ``volumes``, taken while every instance is frozen).  Each snapshot is taken while
    every instance it belongs to is frozen, and each instance is frozen once.  Instances that share no volume are
    frozen, snapshotted and thawed one after the other.  Of the ones that share volumes, the first half (by their
    own snapshots) is frozen one by one, each followed by its own snapshots, the second half is frozen right
    before the shared snapshots; the first half is thawed right after them, and each of the second half after its
    own snapshots.  The longest window is then about half of the instances' own snapshots plus the shared ones,
    instead of all of them.
    """
    owners = [(plan, list(insts) or list(names)) for plan, insts in plan_instances]
    own = dict((n, [p for p, o in owners if o == [n]]) for n in names)
    shared = [p for p, o in owners if len(o) > 1]
    sharing = set(n for p, o in owners if len(o) > 1 for n in o)
    steps = []
    for n in names:
        if n not in sharing:
            steps += [('freeze', [n])] + [('snap', p) for p in own[n]] + [('thaw', [n])]
    group = [n for n in names if n in sharing]
    if not group:
        return steps
    # the first half: the shortest prefix that holds at least half of the group's own snapshots
    total, first = sum(len(own[n]) for n in group), []
    for n in group:
        if first and 2 * sum(len(own[m]) for m in first) >= total:
            break
        first.append(n)
    second = group[len(first):]
    for n in first:
        steps += [('freeze', [n])] + [('snap', p) for p in own[n]]
    if second:
        steps.append(('freeze', second))
    steps += [('snap', p) for p in shared]
    steps.append(('thaw', first))
    for n in second:
        steps += [('snap', p) for p in own[n]] + [('thaw', [n])]
    return steps


class Backup(object):

    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.lvm = _lvm.Lvm(timeout=self.p['lvm_timeout'])
        self.run_id = self.p['run_id'] or _default_run_id()
        self.tags = [_lvm.SNAPSHOT_TAG, _lvm.run_tag(self.run_id)]
        self.problems = []
        self.warnings = []
        self.result = dict(changed=False, run_id=self.run_id, instances=[], instance_results={}, snapshots=[],
                           warnings_preflight=self.warnings, commands=self.lvm.commands)
        self.deadman_seconds = self.p['deadman_timeout']
        if self.deadman_seconds is None:
            self.deadman_seconds = _iris.default_deadman_timeout(self.p['external_freeze_timeout'])
        self.armed = {}           # name -> deadman_arm result, for the instances whose switch is armed
        self.arm_attempted = []   # names deadman_arm was called for (disarmed after their thaw)
        self.armed_since = None   # when arming began: the switches fire deadman_timeout after that

    # -- output -----------------------------------------------------------------------------------------------
    def fail(self, msg, **extra):
        self.result.update(extra)
        self.result['msg'] = msg
        self.module.fail_json(**self.result)

    def eft(self):
        return self.p['external_freeze_timeout'] or EFT_DEFAULT

    def budget(self):
        if self.p['max_freeze_seconds']:
            return self.p['max_freeze_seconds']
        return int(self.eft() * BUDGET_SHARE)

    def window_budget(self, t0):
        """(seconds, what) bounding the freeze window opened at ``t0``: the freeze budget, capped at the time left
        until the dead-man switches fire (they were armed before t0)."""
        budget = self.budget()
        if self.deadman_seconds:
            left = self.deadman_seconds - (t0 - (self.armed_since or t0))
            if left < budget:
                return left, 'deadman_timeout=%d (the dead-man switch thaws then)' % self.deadman_seconds
        return budget, 'budget max_freeze_seconds=%d (ExternalFreezeTimeOut %d)' % (budget, self.eft())

    # -- preflight --------------------------------------------------------------------------------------------
    def validate(self):
        errors = _iris.validate_common(self.p)
        for key in ('external_freeze_timeout', 'max_freeze_seconds', 'wd_suspend_limit', 'lvm_timeout'):
            if self.p[key] is not None and self.p[key] <= 0:
                errors.append('%s must be a positive number of seconds' % key)
        if self.p['deadman_timeout'] is not None and self.p['deadman_timeout'] < 0:
            errors.append('deadman_timeout must be 0 (disabled) or a positive number of seconds')
        elif self.deadman_seconds == 0:
            self.module.warn('deadman_timeout=0: no dead-man switch; if this module process is killed between the '
                             'freeze and the thaw, the instances stay frozen and block users after '
                             'ExternalFreezeTimeOut (%d s)' % self.eft())
        elif self.deadman_seconds >= self.eft():
            self.module.warn('deadman_timeout=%d is not below ExternalFreezeTimeOut (%d s): users may hang before the '
                             'dead-man switch thaws the instance' % (self.deadman_seconds, self.eft()))
        if self.p['text'] is not None:
            try:
                _iris.objectscript_string(self.p['text'])
            except ValueError as exc:
                errors.append('text: %s' % exc)
        if self.p['max_freeze_seconds'] and self.p['max_freeze_seconds'] >= self.eft():
            errors.append('max_freeze_seconds (%d) must be below ExternalFreezeTimeOut (%d s): after that IRIS pauses '
                          'all processes, not only database writes' % (self.p['max_freeze_seconds'], self.eft()))
        if self.p['wd_suspend_limit'] and self.p['wd_suspend_limit'] <= self.budget():
            self.warnings.append('wd_suspend_limit (%d s) is not above the freeze budget (%d s): IRIS may resume the '
                                 'write daemon while snapshots are still being created, and such a backup is not '
                                 'consistent' % (self.p['wd_suspend_limit'], self.budget()))
        reason = _lvm.validate_lv_name('x' + self.p['suffix'])
        if reason:
            errors.append('suffix %r: %s' % (self.p['suffix'], reason))
        try:
            _lvm.parse_size(self.p['size'])
        except _lvm.SizeError as exc:
            errors.append(exc.msg)
        if errors:
            self.fail('nothing frozen: ' + '; '.join(errors))

    def select(self):
        sel = _iris.prepare_selection(self.p['instances'], run_as=self.p['run_as'])
        if sel['errors']:
            self.result['instances'] = [i['name'] for i in sel['selected']]
            self.fail('nothing frozen: ' + '; '.join(sel['errors']))
        selected = []
        for inst in sel['selected']:
            mtype = inst.get('mirror_member_type') or ''
            mstatus = inst.get('mirror_status') or ''
            entry = dict(action=None, flavour=inst.get('flavour'), mirror_member_type=mtype,
                         mirror_status=mstatus, directories={}, journal_file=None, not_journalled=[],
                         frozen_ms=None, freeze_call_ms=None, thaw_call_ms=None, thawed_by=None, msg='')
            self.result['instance_results'][inst['name']] = entry
            if mstatus.strip().lower() == PRIMARY_STATUS:
                policy = self.p['mirror_primary']
                if policy == 'fail':
                    self.problems.append(
                        'instance %s is the mirror primary (%s/%s) and mirror_primary=fail: back up the backup '
                        'failover member or a DR async member instead, or set mirror_primary=freeze (bounded by '
                        'max_freeze_seconds=%d below ExternalFreezeTimeOut=%d) or mirror_primary=skip'
                        % (inst['name'], mtype or '?', mstatus, self.budget(), self.eft()))
                    entry['action'] = 'failed'
                    continue
                if policy == 'skip':
                    entry['action'] = 'skipped'
                    entry['msg'] = 'mirror primary, skipped (mirror_primary=skip)'
                    self.warnings.append('instance %s is the mirror primary and was skipped (mirror_primary=skip); '
                                         'it is NOT in this backup' % inst['name'])
                    continue
                self.warnings.append('instance %s is the mirror primary; its freeze is bounded by %d s (below '
                                     'ExternalFreezeTimeOut %d s)' % (inst['name'], self.budget(), self.eft()))
            selected.append(inst)
        if not selected and not self.problems:
            self.fail('nothing to back up: every selected instance was skipped (%s)'
                      % ', '.join(sorted(self.result['instance_results'])))
        self.selected = selected
        self.result['instances'] = [i['name'] for i in selected]

    def check_not_frozen(self):
        for inst in self.selected:
            state = _iris.is_frozen(None, inst, run_as=self.p['run_as'], username=self.p['username'],
                                    password=self.p['password'], timeout=self.p['timeout'])
            if state['failed']:
                self.problems.append('%s (command: %s)' % (state['msg'], ' '.join(state['command'])))
            elif state['frozen']:
                self.problems.append(
                    'instance %s is already frozen (IsWDSuspendedExt returned 5): another backup is running or a '
                    'freeze was left behind; find out which (messages.log), thaw it with irisops.backup.iris_thaw, '
                    'then retry' % inst['name'])

    @staticmethod
    def instance_dirs(inst, include_install):
        """(role, directory) pairs of an instance: install/data dir, databases, journals, WIJ."""
        dirs = []
        if include_install and inst.get('install_dir'):
            dirs.append(('install', inst['install_dir']))
        if include_install and inst.get('data_dir') and inst['data_dir'] != inst.get('install_dir'):
            dirs.append(('data', inst['data_dir']))
        names = dict((v, k) for k, v in (inst.get('databases') or {}).items())
        for d in inst.get('database_dirs') or []:
            dirs.append(('database %s' % names.get(d, '?'), d))
        if inst.get('journal_current_dir'):
            dirs.append(('journal', inst['journal_current_dir']))
        if inst.get('journal_alternate_dir') and inst['journal_alternate_dir'] != inst.get('journal_current_dir'):
            dirs.append(('alternate journal', inst['journal_alternate_dir']))
        if inst.get('wij_dir'):
            dirs.append(('wij', inst['wij_dir']))
        return dirs

    def map_volumes(self, lvs):
        """Build the snapshot requests: one per origin LV holding a directory of a selected instance, plus volumes."""
        origins = {}  # (vg, lv) -> dict(request, instances, directories)
        order = []

        def add(vg, lv, size, name, instance=None, directory=None):
            key = (vg, lv)
            if key not in origins:
                origins[key] = dict(request=_lvm.SnapshotRequest(vg, lv, name or (lv + self.p['suffix']),
                                                                 str(size or self.p['size'])),
                                    instances=[], directories=[])
                order.append(key)
            ent = origins[key]
            if instance and instance not in ent['instances']:
                ent['instances'].append(instance)
            if directory and directory not in ent['directories']:
                ent['directories'].append(directory)

        for inst in self.selected:
            entry = self.result['instance_results'][inst['name']]
            for role, d in self.instance_dirs(inst, self.p['include_install_dir']):
                if not os.path.isdir(d):
                    if role == 'install':
                        self.problems.append('instance %s: installation directory %s does not exist' % (inst['name'], d))
                    else:
                        self.warnings.append('instance %s: %s directory %s does not exist; nothing to snapshot for it'
                                             % (inst['name'], role, d))
                    continue
                try:
                    lv = self.lvm.lv_for_path(d, lvs)
                except _lvm.LvmError as exc:
                    entry['directories'][d] = None
                    text = 'instance %s: %s directory: %s' % (inst['name'], role, exc.msg)
                    if self.p['unmapped_directories'] == 'fail':
                        self.problems.append(text + '; a snapshot backup cannot contain it. Move it to an LVM logical '
                                                    'volume, or set unmapped_directories=warn to back up the rest')
                    else:
                        self.warnings.append(text + '; it is NOT in this backup')
                    continue
                if lv.is_snapshot:
                    self.problems.append('instance %s: %s directory %s is on %s, which is itself a snapshot'
                                         % (inst['name'], role, d, lv.full_name))
                    continue
                entry['directories'][d] = lv.full_name
                add(lv.vg, lv.name, None, None, inst['name'], d)

        for index, item in enumerate(self.p['volumes'] or []):
            size = name = path = vg = lv = None
            if isinstance(item, dict):
                unknown = set(item) - set(['vg', 'lv', 'path', 'size', 'name'])
                if unknown:
                    self.problems.append('volumes[%d]: unknown keys %s (allowed: vg, lv, path, size, name)'
                                         % (index, ', '.join(sorted(unknown))))
                    continue
                size, name, path, vg, lv = (item.get(k) for k in ('size', 'name', 'path', 'vg', 'lv'))
            elif isinstance(item, str):
                if item.startswith('/'):
                    path = item
                elif '/' in item:
                    vg, lv = item.split('/', 1)
                else:
                    self.problems.append('volumes[%d]: %r: give vg/lv or an absolute path' % (index, item))
                    continue
            else:
                self.problems.append('volumes[%d]: %r is neither a string nor a dictionary' % (index, item))
                continue
            if path:
                try:
                    found = self.lvm.lv_for_path(path, lvs)
                except _lvm.LvmError as exc:
                    self.problems.append('volumes[%d]: %s' % (index, exc.msg))
                    continue
                vg, lv = found.vg, found.name
            if not vg or not lv:
                self.problems.append('volumes[%d]: needs vg and lv (or path)' % index)
                continue
            add(vg, lv, size, name)
            if size or name:
                req = origins[(vg, lv)]['request']
                req.size = str(size or req.size)
                req.name = name or req.name
        self.origins = origins
        self.order = order

    def plan(self, lvs, vgs):
        requests = [self.origins[k]['request'] for k in self.order]
        if not requests:
            self.problems.append('no logical volume to snapshot: no directory of the selected instances is on LVM '
                                 'and no volumes were given')
            return []
        keys = set(self.order)
        names = set((r.vg, r.name) for r in requests)
        self.leftovers = []
        for lv in lvs:
            if not lv.is_snapshot or (lv.vg, lv.origin) not in keys or (lv.vg, lv.name) in names:
                continue
            if _lvm.SNAPSHOT_TAG in lv.tags:
                if self.p['existing'] == 'remove':
                    self.leftovers.append(lv)
                else:
                    self.problems.append(
                        'snapshot %s of %s/%s is left over from an earlier run (tags %s): check that no backup still '
                        'reads it, remove it (irisops.backup.lvm_snapshot state=absent) or rerun with existing=remove'
                        % (lv.full_name, lv.vg, lv.origin, ','.join(lv.tags)))
            else:
                self.warnings.append('%s is a snapshot of %s/%s not made by this collection; it slows writes to the '
                                     'origin while it exists' % (lv.full_name, lv.vg, lv.origin))
        try:
            plans = _lvm.plan_snapshots(requests, lvs, vgs, existing=self.p['existing'], run_id=self.run_id)
        except _lvm.PreflightError as exc:
            self.problems.extend(exc.problems)
            return []
        for plan in plans:
            if plan.action == 'keep':
                self.problems.append('snapshot %s already carries the tag of run %s; use a new run_id for every run'
                                     % (plan.request.full_name, self.run_id))
            elif plan.action == 'recreate':
                self.leftovers.append(plan.existing)
        return plans

    def remove_leftovers(self, mounts):
        for lv in self.leftovers:
            try:
                self.lvm.remove_lv(lv.vg, lv.name, mountpoints=self.lvm.mountpoints(lv, mounts),
                                   test=self.module.check_mode)
            except _lvm.LvmError as exc:
                self.fail('nothing frozen: cannot remove the leftover snapshot %s (existing=remove): %s'
                          % (lv.full_name, exc.msg))
            if not self.module.check_mode:
                self.result['changed'] = True
            suffix = ' (check mode: would be)' if self.module.check_mode else ''
            self.warnings.append('removed leftover snapshot %s%s' % (lv.full_name, suffix))

    def preflight(self):
        self.validate()
        self.select()
        try:
            lvs = self.lvm.lvs()
            vgs = self.lvm.vgs()
            mounts = self.lvm.mountinfo()
        except _lvm.LvmError as exc:
            self.fail('nothing frozen: cannot read the LVM state: %s' % exc.msg)
        except (IOError, OSError) as exc:
            self.fail('nothing frozen: cannot read the mount table: %s' % exc)
        self.check_not_frozen()
        self.map_volumes(lvs)
        plans = self.plan(lvs, vgs) if (self.order or not self.problems) else []
        self.result['snapshots'] = [self.describe(p.request, None, p.extents * p.extent_size) for p in plans]
        if self.problems:
            self.fail('preflight failed, nothing frozen and no snapshot created: ' + ' | '.join(self.problems),
                      problems=self.problems)
        self.remove_leftovers(mounts)
        self.plans = plans

    def describe(self, req, lv, size=None):
        ent = self.origins[(req.vg, req.lv)]
        out = dict(name=req.name, vg=req.vg, origin=req.lv, path='/dev/%s/%s' % (req.vg, req.name), size=size,
                   data_percent=None, attr=None, valid=None, tags=list(self.tags), instances=ent['instances'],
                   directories=ent['directories'], created=False,
                   origin_devices=['/dev/%s/%s' % (req.vg, req.lv), '/dev/mapper/' + _lvm.dm_name(req.vg, req.lv)],
                   volume=dict(vg=req.vg, lv=req.lv, name=req.name))
        if lv is not None:
            out.update(size=lv.size, data_percent=lv.data_percent, attr=lv.attr, valid=lv.valid, tags=lv.tags,
                       path=lv.path, created=True)
        return out

    # -- check mode -------------------------------------------------------------------------------------------
    def check_mode(self):
        for plan in self.plans:
            req = plan.request
            if plan.action == 'recreate':
                continue
            try:
                self.lvm.create_snapshot(req.vg, req.lv, req.name, plan.extents, tags=self.tags, test=True)
            except _lvm.LvmError as exc:
                self.fail('check mode: lvcreate --test refuses snapshot %s of %s: %s' % (req.full_name, req.origin,
                                                                                         exc.msg))
        for inst in self.selected:
            entry = self.result['instance_results'][inst['name']]
            entry['action'] = 'would_freeze'
            if self.deadman_seconds > 0:
                entry['deadman'] = dict(armed=False, mechanism=None, fires_at=None, would_arm=True,
                                        seconds=self.deadman_seconds)
        self.result['changed'] = True
        self.module.exit_json(msg='check mode: preflight passed; would freeze %s and snapshot %s' % (
            ', '.join(i['name'] for i in self.selected), ', '.join(p.request.full_name for p in self.plans)),
            **self.result)

    # -- the freeze window ------------------------------------------------------------------------------------
    def window_steps(self):
        """The window as ``(kind, arg)`` steps: ('freeze', [instances]), ('snap', plan), ('thaw', [instances])."""
        if self.p['freeze_mode'] == 'together':
            return ([('freeze', list(self.selected))] + [('snap', p) for p in self.plans]
                    + [('thaw', list(self.selected))])
        by_name = dict((i['name'], i) for i in self.selected)
        plan_instances = [(p, self.origins[(p.request.vg, p.request.lv)]['instances']) for p in self.plans]
        return [(kind, arg if kind == 'snap' else [by_name[n] for n in arg])
                for kind, arg in staggered_steps([i['name'] for i in self.selected], plan_instances)]

    def over_budget(self, req, frozen, frozen_at, longest):
        """Failure text when one of the ``frozen`` instances, frozen for so long already, could outlive its window
        budget during another ``lvcreate`` as long as the ``longest`` so far; else None."""
        now = time.time()
        for inst in frozen:
            elapsed = now - frozen_at[inst['name']]
            budget, bound = self.window_budget(frozen_at[inst['name']])
            if elapsed + longest > budget:
                who = '' if len(self.selected) == 1 else ' (%s)' % inst['name']
                return ('freeze budget exceeded: %.1f s frozen%s, the next lvcreate may take %.1f s, %s; stopped '
                        'before snapshot %s of %s. Make the snapshots faster (fewer volumes, less I/O) or raise '
                        'external_freeze_timeout / deadman_timeout'
                        % (elapsed, who, longest, bound, req.full_name, req.origin))
        return None

    @staticmethod
    def describe_steps(steps):
        return [('snapshot %s/%s' % (arg.request.vg, arg.request.lv)) if kind == 'snap'
                else '%s %s' % (kind, ', '.join(i['name'] for i in arg)) for kind, arg in steps]

    def arm_all(self, guard):
        """Arm the dead-man switch of every selected instance before the freeze window opens: the systemctl and
        systemd-run calls of arming cost no frozen time (the freeze is recorded in each switch afterwards by
        mark_frozen, a file write).  Returns a failure text (run() then disarms what is armed and freezes nothing),
        or None."""
        if not self.deadman_seconds:
            return None
        self.armed_since = time.time()
        for inst in self.selected:
            self.arm_attempted.append(inst['name'])
            arm = _iris.deadman_arm(inst, self.deadman_seconds, run_as=self.p['run_as'], timeout=self.p['timeout'],
                                    armed_by='iris_lvm_snapshot', before_freeze=True)
            self.result['instance_results'][inst['name']]['deadman'] = dict(
                (k, arm.get(k)) for k in ('armed', 'mechanism', 'fires_at', 'seconds', 'unit', 'pid', 'state_file'))
            if arm['failed']:
                return ('%s. Next: check that %s is writable and systemd-run works, or set deadman_timeout: 0 to run '
                        'without a switch' % (arm['msg'], _iris.deadman_dir()))
            self.armed[inst['name']] = arm
            if guard.received:
                return ('received %s while arming the dead-man switches (the control connection dropped or the job '
                        'was cancelled)' % guard.names())
        return None

    def mark_frozen(self, many):
        """Record in each switch the freeze it guards (its "System suspended" log line)."""
        for inst in self.selected:
            r = many['results'].get(inst['name'])
            if inst['name'] in self.armed and r and r.get('changed'):
                marked = _iris.deadman_mark_frozen(inst)
                self.result['instance_results'][inst['name']]['deadman']['freeze_recorded'] = marked

    def disarm(self, thawed, still_frozen_after_freeze=()):
        """Disarm the switches of every instance that is not left frozen (thawed, never frozen, rolled back, or
        down).  Returns the names whose switch was gone already: it fired (thawed the instance) inside the window."""
        fired = []
        for name in self.arm_attempted:
            entry = self.result['instance_results'][name].setdefault('deadman', {})
            t = thawed.get(name)
            left_frozen = (t is not None and t[0].get('failed') and not t[0].get('down')) or (
                name in still_frozen_after_freeze)
            if left_frozen:
                entry['disarmed'] = False  # still frozen (or unknown): the switch stays armed and thaws it later
                if name in self.armed and not entry.get('freeze_recorded'):
                    # the freeze it holds now is this run's (preflight saw it not frozen): make the switch thaw it
                    inst = [i for i in self.selected if i['name'] == name][0]
                    entry['freeze_recorded'] = _iris.deadman_mark_frozen(inst)
                continue
            try:
                d = _iris.deadman_disarm(name)
            except Exception as exc:  # pylint: disable=broad-except
                entry['disarmed'] = False
                entry['disarm_error'] = '%s: %s' % (type(exc).__name__, exc)
                continue
            entry['disarmed'] = bool(d.get('disarmed'))
            if name in self.armed and not d.get('was_armed'):
                fired.append(name)
        return fired

    def thaw_all(self, frozen, unknown):
        """Thaw ``frozen`` (known frozen) and ``unknown`` (state unknown: checked first) concurrently."""
        done = {}

        def one(args):
            inst, check = args
            r = _iris.thaw(None, inst, run_as=self.p['run_as'], username=self.p['username'],
                           password=self.p['password'], timeout=self.p['timeout'], check_state=check,
                           stat_fallback=self.p['stat_fallback'])
            done[inst['name']] = (r, time.time())

        work = [(i, False) for i in frozen] + [(i, True) for i in unknown]
        if len(work) == 1:
            one(work[0])
        elif work:
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(work)) as pool:
                list(pool.map(one, work))
        return done

    def snapshot_cleanup(self):
        """Remove every snapshot that carries this run's tag (whatever state the run ended in)."""
        removed, errors = [], []
        try:
            lvs = self.lvm.lvs()
            mounts = self.lvm.mountinfo()
        except (_lvm.LvmError, IOError, OSError) as exc:
            return removed, ['cannot list LVs to remove the snapshots of run %s: %s' % (self.run_id, exc)]
        for lv in reversed(lvs):
            if lv.is_snapshot and self.tags[1] in lv.tags:
                try:
                    self.lvm.remove_lv(lv.vg, lv.name, mountpoints=self.lvm.mountpoints(lv, mounts))
                    removed.append(lv.full_name)
                except _lvm.LvmError as exc:
                    errors.append(exc.msg)
        return removed, errors

    def run(self):
        self.preflight()
        steps = self.window_steps()
        self.result['steps'] = self.describe_steps(steps)
        if self.module.check_mode:
            self.check_mode()
        names = [i['name'] for i in self.selected]
        results = self.result['instance_results']
        failure = None
        froze = {}                # name -> freeze result, of every freeze call that returned
        rollback_failed = []      # frozen by a freeze call that failed, and its roll-back failed too
        frozen_at = {}            # name -> when its freeze call began (its window opens there)
        frozen = []               # instances frozen by this run and not thawed yet
        unknown = []              # instances of a freeze call that did not return: their state is unknown
        thawed = {}
        created = []
        create_started = create_ended = None
        longest = 0.0
        fired = []
        with SignalGuard() as guard:
            arm_failure = self.arm_all(guard)
            if arm_failure:
                self.disarm({})
                self.fail('nothing frozen: %s' % arm_failure)
            try:
                for kind, arg in steps:
                    failure = guard.interrupted()
                    if failure:
                        break
                    if kind == 'freeze':
                        started = time.time()
                        frozen_at.update((i['name'], started) for i in arg)
                        unknown = list(arg)
                        many = _iris.freeze_many(
                            None, arg, run_as=self.p['run_as'], log_file=None, text=self.p['text'],
                            external_freeze_timeout=self.p['external_freeze_timeout'],
                            wd_suspend_limit=self.p['wd_suspend_limit'], username=self.p['username'],
                            password=self.p['password'], timeout=self.p['timeout'], check_state=False)
                        unknown = []
                        froze.update(many['results'])
                        rollback_failed.extend(many['still_frozen'])
                        frozen.extend(i for i in arg if (many['results'].get(i['name']) or {}).get('changed'))
                        if many['failed']:
                            failure = many['msg']
                            break
                        self.mark_frozen(many)
                    elif kind == 'snap':
                        failure = self.over_budget(arg.request, frozen, frozen_at, longest)
                        if failure:
                            break
                        started = time.time()
                        create_started = create_started or started
                        # never killed inside the window: a killed lvcreate may leave the origin suspended
                        old_timeout, self.lvm.timeout = self.lvm.timeout, None
                        try:
                            self.lvm.create_snapshot(arg.request.vg, arg.request.lv, arg.request.name, arg.extents,
                                                     tags=self.tags)
                        except _lvm.LvmError as exc:
                            failure = ('creating snapshot %s of %s failed (snapshot %d of %d): %s'
                                       % (arg.request.full_name, arg.request.origin, len(created) + 1,
                                          len(self.plans), exc.msg))
                            break
                        finally:
                            self.lvm.timeout = old_timeout
                        create_ended = time.time()
                        longest = max(longest, create_ended - started)
                        created.append(arg.request)
                    else:
                        done = self.thaw_all([i for i in arg if i in frozen], [])
                        thawed.update(done)
                        frozen = [i for i in frozen if i['name'] not in done]
                        bad = sorted(n for n, (tr, _end) in done.items() if tr['failed'])
                        if bad:  # the message after the window says what happened to them
                            failure = 'stopped after the failed thaw of %s' % ', '.join(bad)
                            break
                failure = failure or guard.interrupted()
            except Exception as exc:  # a bug must not leave instances frozen
                failure = 'unexpected %s in the freeze window: %s' % (type(exc).__name__, exc)
            finally:
                # what this run froze and has not thawed yet, and the instances whose freeze call did not return
                thawed.update(self.thaw_all(frozen, unknown))
                fired = self.disarm(thawed, rollback_failed)
            if guard.received and not failure:
                failure = 'received %s during the thaw' % guard.names()
            if fired:
                failure = (failure + '. ' if failure else '') + (
                    'the dead-man switch of %s fired inside the freeze window (it was no longer armed at the thaw, '
                    'after deadman_timeout=%d s): the instance was thawed while snapshots were being taken, so they '
                    'may not be consistent. Next: raise deadman_timeout (keep it below external_freeze_timeout) or '
                    'make the snapshots faster' % (', '.join(fired), self.deadman_seconds))

        # -- after the window: report, clean up on failure ------------------------------------------------------
        still_frozen, went_down = [], []
        for inst in self.selected:
            entry = results[inst['name']]
            r = froze.get(inst['name'])
            if r is not None:
                entry.update(journal_file=r.get('journal_file'), not_journalled=r.get('not_journalled') or [],
                             freeze_call_ms=r.get('duration_ms'), marker_offset=r.get('marker_offset'),
                             freeze_msg=r.get('msg'))
                for d in entry['not_journalled']:
                    self.module.warn('instance %s: database %s is not journalled (reported by ExternalFreeze); '
                                     'changes to it while frozen are not in the journal' % (inst['name'], d))
            t = thawed.get(inst['name'])
            if t is not None:
                tr, t_end = t
                entry.update(thaw_call_ms=tr.get('duration_ms'), thawed_by=tr.get('thawed_by'), thaw_msg=tr['msg'])
                if r is not None and r.get('changed') or tr.get('thawed_by'):
                    entry['frozen_ms'] = _ms(t_end - frozen_at[inst['name']])
                if tr['failed']:
                    (went_down if tr.get('down') else still_frozen).append(inst['name'])
            entry['action'] = 'frozen' if r is not None and (r.get('changed') or r.get('rolled_back')) else 'failed'
        if went_down:
            failure = (failure + '. ' if failure else '') + (
                '%s went down inside the freeze window: not frozen (a stopped instance holds no freeze), but not '
                'backed up either (%s)' % (', '.join(went_down), ' | '.join(thawed[n][0]['msg'] for n in went_down)))
        if still_frozen:
            armed_note = ''
            still_armed = [n for n in still_frozen if n in self.armed]
            if still_armed:
                armed_note = '; the dead-man switch of %s stays armed and tries again at %s' % (
                    ', '.join(still_armed), ', '.join(self.armed[n]['fires_at'] for n in still_armed))
            failure = (failure + '. ' if failure else '') + (
                'THAW FAILED, STILL FROZEN: %s - run irisops.backup.iris_thaw with stat_fallback=true now (%s)%s'
                % (', '.join(still_frozen), ' | '.join(thawed[n][0]['msg'] for n in still_frozen), armed_note))
        windows = [e['frozen_ms'] for e in results.values() if e.get('frozen_ms') is not None]
        self.result['freeze_window_ms'] = max(windows) if windows else None
        if create_started is not None and create_ended is not None:
            self.result['snapshot_ms'] = _ms(create_ended - create_started)

        if failure:
            removed, errors = self.snapshot_cleanup()
            self.result['changed'] = any(r.get('changed') for r in froze.values()) or bool(created)
            self.result['cleaned_up'] = dict(
                thawed=sorted(n for n, (tr, _e) in thawed.items() if tr.get('changed')),
                still_frozen=still_frozen, went_down=went_down, snapshots_removed=removed, removal_errors=errors)
            self.result['snapshots'] = [dict(s, created=False) for s in self.result['snapshots']]
            msg = 'backup snapshot of %s failed: %s. Thawed: %s. Snapshots removed: %s' % (
                ', '.join(names), failure, ', '.join(self.result['cleaned_up']['thawed']) or 'none',
                ', '.join(removed) or 'none')
            if errors:
                msg += '. COULD NOT REMOVE: %s - remove them with irisops.backup.lvm_snapshot state=absent' % (
                    '; '.join(errors))
            elif not still_frozen:
                msg += ('. Next: fix the cause above and run the backup again; nothing of run %s is left frozen or '
                        'snapshotted' % self.run_id)
            self.fail(msg)

        self.result['changed'] = True
        try:
            lvs = dict(((lv.vg, lv.name), lv) for lv in self.lvm.lvs())
        except _lvm.LvmError as exc:
            lvs = {}
            self.module.warn('snapshots created, but lvs failed afterwards: %s' % exc.msg)
        self.result['snapshots'] = [self.describe(p.request, lvs.get((p.request.vg, p.request.name)),
                                                  p.extents * p.extent_size) for p in self.plans]
        bad = [s for s in self.result['snapshots'] if s['valid'] is False]
        if bad:
            removed, errors = self.snapshot_cleanup()
            self.result['cleaned_up'] = dict(thawed=names, still_frozen=[], went_down=[], snapshots_removed=removed,
                                             removal_errors=errors)
            self.fail('snapshot(s) %s overflowed right after creation; removed them. Give them more space (size)'
                      % ', '.join('%s/%s' % (s['vg'], s['name']) for s in bad))
        for w in self.warnings:
            self.module.warn(w)
        self.module.exit_json(
            msg='froze %s for at most %d ms, created %d snapshot(s) in %d ms, thawed' % (
                ', '.join(names), self.result['freeze_window_ms'] or 0, len(created),
                self.result.get('snapshot_ms') or 0),
            **self.result)


def main():
    argument_spec = _iris.common_argument_spec()
    argument_spec.update(_iris.instances_argument_spec())
    argument_spec.update(
        volumes=dict(type='list', elements='raw', default=[]),
        size=dict(type='str', default='20%ORIGIN'),
        suffix=dict(type='str', default=_lvm.DEFAULT_SUFFIX),
        run_id=dict(type='str'),
        existing=dict(type='str', default='fail', choices=['fail', 'remove']),
        unmapped_directories=dict(type='str', default='fail', choices=['fail', 'warn']),
        include_install_dir=dict(type='bool', default=True),
        mirror_primary=dict(type='str', default='fail', choices=['freeze', 'skip', 'fail']),
        freeze_mode=dict(type='str', default='together', choices=['together', 'staggered']),
        external_freeze_timeout=dict(type='int'),
        max_freeze_seconds=dict(type='int'),
        wd_suspend_limit=dict(type='int'),
        text=dict(type='str'),
        stat_fallback=dict(type='bool', default=True),
        lvm_timeout=dict(type='int', default=120),
        deadman_timeout=dict(type='int'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    Backup(module).run()


if __name__ == '__main__':
    main()
