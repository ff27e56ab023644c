#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: iris_lvm_snapshot
short_description: Freeze IRIS, snapshot its LVs and thaw
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
  - "Takes the host's freeze lock for the whole window (another freezer on the host is refused, naming the holder),
    and checks right before each thaw that the write daemon is still suspended by this run (C(IsWDSuspendedExt), its
    dead-man switch not fired, no other freeze or resume in the instance log). If not, the snapshots are B(invalid):
    they are removed, RV(valid) is V(false) and the module fails; give RV(run_id) to
    M(irisops.backup.iris_set_history) so that such a window is never recorded."
  - "A thin wrapper of the collection's freeze engine (module_utils C(_freeze): lock, switches, signals, validity,
    rollback) and LVM snapshot set (C(_snapset): mapping, plan, bounded creation, removal); it contains no copy of
    their logic."
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
      - Not used for a thin volume, which gets a thin snapshot (no size), refused by the preflight when its thin
        pool's data or metadata is 80% full or more.
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
      - C(lvcreate) inside the freeze window is bounded by the time left in the freeze budget instead
        (O(max_freeze_seconds), capped at the dead-man switch). When it runs over, the instances are thawed first,
        then C(lvcreate) gets 30 more seconds to finish by itself (a killed one can leave the origin's device-mapper
        table suspended), then it is killed, suspended devices of the volume group are resumed with
        C(dmsetup resume), the run's snapshots are removed and the module fails.
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
valid:
  description: V(true) when every instance stayed frozen by this run until its thaw (the snapshots are usable);
    V(false) after a failure or an invalid window (the snapshots were removed).
  returned: always
  type: bool
invalid:
  description: Instance name -> why its freeze window was not intact (the write daemon resumed, its dead-man switch
    fired, another freeze began).
  returned: always
  type: dict
trace:
  description: The freeze engine's steps with UNIX timestamps (C(t), C(event), C(detail)), for where the window's
    time went.
  returned: always
  type: list
  elements: dict
signals:
  description: Signals received inside the freeze window (the run then thawed and failed).
  returned: always
  type: list
  elements: str
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
lvm_autoextend:
  description:
    - The host's LVM autoextend settings of the C(activation) section as C(lvmconfig --typeconfig full) reports
      them (C(snapshot_autoextend_threshold), C(snapshot_autoextend_percent), C(thin_pool_autoextend_threshold),
      C(thin_pool_autoextend_percent), C(monitoring)) and C(dmeventd_running); C(error) instead when lvmconfig
      failed.
    - Reported, never changed. With thin snapshots and the pool's autoextend off, or autoextend set but nothing to
      act on it, RV(warnings_preflight) says so.
  returned: when the preflight planned snapshots
  type: dict
  version_added: 0.2.0
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.irisops.backup.plugins.module_utils import _freeze
from ansible_collections.irisops.backup.plugins.module_utils import _iris
from ansible_collections.irisops.backup.plugins.module_utils import _lvm
from ansible_collections.irisops.backup.plugins.module_utils import _snapset


class Backup(object):
    """The module around the freeze engine (_freeze.FreezeEngine.window) and the snapshot set (_snapset)."""

    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.lvm = _lvm.Lvm(timeout=self.p['lvm_timeout'])
        self.run_id = self.p['run_id'] or _freeze.default_run_id('iris_lvm_snapshot')
        self.result = dict(changed=False, run_id=self.run_id, instances=[], instance_results={}, snapshots=[],
                           warnings_preflight=[], commands=self.lvm.commands)
        self.entries = self.result['instance_results']
        self.engine = None

    def fail(self, msg, **extra):
        self.result.update(extra)
        self.result['msg'] = msg
        self.module.fail_json(**self.result)

    def preflight(self):
        p = self.p
        err = _freeze.check_run_id(self.run_id)
        probe = _freeze.FreezeEngine([], 'iris_lvm_snapshot', p, run_id=self.run_id)
        errors, warnings = _snapset.validate_options(p, probe.eft(), probe.budget(), probe.deadman_seconds)
        if err:
            errors.append(err)
        for w in warnings:
            self.module.warn(w)
        if errors:
            self.fail('nothing frozen: ' + '; '.join(errors))
        sel = _iris.prepare_selection(p['instances'], run_as=p['run_as'])
        if sel['errors']:
            self.result['instances'] = [i['name'] for i in sel['selected']]
            self.fail('nothing frozen: ' + '; '.join(sel['errors']))
        problems, notes = [], self.result['warnings_preflight']
        selected = _snapset.apply_mirror_policy(sel['selected'], p['mirror_primary'], probe.budget(), probe.eft(),
                                                self.entries, problems, notes)
        if not selected and not problems:
            self.fail('nothing to back up: every selected instance was skipped (%s)' % ', '.join(sorted(self.entries)))
        self.result['instances'] = [i['name'] for i in selected]
        self.snapset = _snapset.SnapshotSet(self.lvm, selected, p, self.run_id, self.entries)
        try:
            self.result['snapshots'] = self.snapset.preflight()
        except _lvm.LvmError as exc:
            self.fail('nothing frozen: cannot read the LVM state: %s' % exc.msg)
        except (IOError, OSError) as exc:
            self.fail('nothing frozen: cannot read the mount table: %s' % exc)
        problems += self.snapset.problems
        notes += self.snapset.warnings
        self.result['lvm_autoextend'] = self.snapset.autoextend
        if problems:
            self.fail('preflight failed, nothing frozen and no snapshot created: ' + ' | '.join(problems),
                      problems=problems)
        try:
            notes += self.snapset.remove_leftovers(test=self.module.check_mode)
        except _lvm.LvmError as exc:
            self.fail('nothing frozen: cannot remove a leftover snapshot (existing=remove): %s' % exc.msg)
        if self.snapset.leftovers and not self.module.check_mode:
            self.result['changed'] = True
        self.engine = _freeze.FreezeEngine(selected, 'iris_lvm_snapshot', p, run_id=self.run_id,
                                           switch_cleanup=self.snapset.switch_cleanup())

    def check_mode(self):
        failure = self.snapset.test_creates()
        if failure:
            self.fail('check mode: ' + failure)
        _states, problems = self.engine.check_not_frozen()
        if problems:
            self.fail('preflight failed, nothing frozen and no snapshot created: ' + ' | '.join(problems),
                      problems=problems)
        for inst in self.snapset.instances:
            entry = self.entries[inst['name']]
            entry['action'] = 'would_freeze'
            if self.engine.deadman_seconds > 0:
                entry['deadman'] = dict(armed=False, mechanism=None, fires_at=None, would_arm=True,
                                        seconds=self.engine.deadman_seconds)
        self.result['changed'] = True
        self.module.exit_json(msg='check mode: preflight passed; would freeze %s and snapshot %s' % (
            ', '.join(i['name'] for i in self.snapset.instances),
            ', '.join(p.request.full_name for p in self.snapset.plans)), **self.result)

    def report_instances(self, res):
        for inst in self.snapset.instances:
            name = inst['name']
            entry = self.entries[name]
            got = self.engine.results.get(name) or {}
            r, t = got.get('freeze'), got.get('thaw')
            if r is not None:
                entry.update(journal_file=r.get('journal_file'), not_journalled=r.get('not_journalled') or [],
                             freeze_call_ms=r.get('duration_ms'), marker_offset=r.get('marker_offset'),
                             freeze_msg=r.get('msg'))
                for d in entry['not_journalled']:
                    self.module.warn('instance %s: database %s is not journalled (reported by ExternalFreeze); '
                                     'changes to it while frozen are not in the journal' % (name, d))
            if t is not None:
                entry.update(thaw_call_ms=t.get('duration_ms'), thawed_by=t.get('thawed_by'), thaw_msg=t['msg'])
            if 'deadman' in got:
                entry['deadman'] = got['deadman']
            entry['frozen_ms'] = res['frozen_ms'].get(name)
            entry['action'] = 'frozen' if r is not None and (r.get('changed') or r.get('rolled_back')) else 'failed'
            if name in res['invalid']:
                entry['invalid'] = res['invalid'][name]

    def run(self):
        self.preflight()
        steps = self.snapset.steps()
        self.result['steps'] = _freeze.describe_steps(steps)
        if self.module.check_mode:
            self.check_mode()
        res = self.engine.window(steps, snapshot=self.snapset.create, cleanup=self.snapset.cleanup)
        self.report_instances(res)
        for key in ('freeze_window_ms', 'snapshot_ms', 'valid', 'invalid', 'trace', 'signals'):
            self.result[key] = res.get(key)
        if res['failed']:
            self.result['changed'] = self.result['changed'] or any(
                (g.get('freeze') or {}).get('changed') for g in self.engine.results.values()) or bool(res['created'])
            cleaned = res.get('cleaned_up') or dict(thawed=[], still_frozen=[], went_down=[], removed=[],
                                                    removal_errors=[])
            self.result['cleaned_up'] = dict(thawed=cleaned['thawed'], still_frozen=cleaned['still_frozen'],
                                             went_down=cleaned['went_down'], snapshots_removed=cleaned['removed'],
                                             removal_errors=cleaned['removal_errors'])
            self.result['snapshots'] = [dict(s, created=False) for s in self.result['snapshots']]
            if res['msg'].startswith('nothing frozen'):
                self.fail(res['msg'])
            self.fail('backup snapshot of %s failed: %s' % (', '.join(self.result['instances']), res['msg']))
        self.result['changed'] = True
        if _freeze.stdout_reader_gone():
            # the control connection was cut (pipelining gives no SIGHUP): no later task will mount, copy or remove
            # these snapshots, so they go now; the instances were thawed and the window was valid
            removed, _errors = self.snapset.cleanup()
            self.engine.record('failed', valid=False, msg='control connection lost after the window')
            self.fail('the control connection was lost during the run: removed the snapshots (%s) that no task '
                      'would use; nothing is frozen. Next: run the backup again' % (', '.join(removed) or 'none'))
        try:
            self.result['snapshots'] = self.snapset.describe_created()
        except _lvm.LvmError as exc:
            self.module.warn('snapshots created, but lvs failed afterwards: %s' % exc.msg)
        bad = [s for s in self.result['snapshots'] if s['valid'] is False]
        if bad:
            removed, errors = self.snapset.cleanup()
            self.result['valid'] = False
            self.engine.record('failed', valid=False, msg='snapshot overflowed right after creation')
            self.result['cleaned_up'] = dict(thawed=self.result['instances'], still_frozen=[], went_down=[],
                                             snapshots_removed=removed, removal_errors=errors)
            self.fail('snapshot(s) %s overflowed right after creation; removed them. Give them more space (size)'
                      % ', '.join('%s/%s' % (s['vg'], s['name']) for s in bad))
        for w in self.result['warnings_preflight']:
            self.module.warn(w)
        self.module.exit_json(
            msg='froze %s for at most %d ms, created %d snapshot(s) in %d ms, thawed' % (
                ', '.join(self.result['instances']), res['freeze_window_ms'] or 0, len(res['created']),
                res.get('snapshot_ms') or 0),
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
