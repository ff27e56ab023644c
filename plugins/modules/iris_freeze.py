#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: iris_freeze
short_description: Freeze IRIS/Cache for a snapshot backup
version_added: 0.1.0
description:
  - Calls the C(Backup.General) class method C(ExternalFreeze) in the C(%SYS) namespace of one or more instances, as the
    instance's manager user, so that a storage or VM snapshot taken afterwards is application consistent.
  - Checks C(IsWDSuspendedExt) first; an instance that is already frozen (by hand, outside the collection) is
    reported as ok, not changed, and left to whoever froze it.
  - Several instances are frozen concurrently and all or nothing, if one freeze fails, every instance this task
    froze is thawed again (with the C(stat -W) fallback) before the task fails; an instance that cannot be thawed
    is named in the error and keeps its dead-man switch.
  - "Takes the host's freeze lock (see C(docs/deadman.md)): another freezer of the collection on the same host
    (a second play, M(irisops.backup.iris_lvm_snapshot), the snapshot hooks, C(irisops-backup)) is refused with a
    message naming the holder. The lock stays held as a B(lease) after the task returns (RV(lease)), until
    M(irisops.backup.iris_thaw) is called with that lease, or until the dead-man switches are due."
  - Before each freeze the module arms a dead-man switch on the managed host that thaws the instance after
    O(deadman_timeout) seconds unless M(irisops.backup.iris_thaw) disarms it first. It does not depend on the
    Ansible connection, so it also fires when the controller dies between the freeze and the thaw task, or while
    C(ExternalFreeze) still runs. A switch that cannot be armed stops the task before anything is frozen.
  - Always pair this module with M(irisops.backup.iris_thaw) in an C(always) section, passing RV(lease).
    A frozen instance blocks users after O(external_freeze_timeout).
author:
  - irisops.backup maintainers (@irisops)
extends_documentation_fragment:
  - irisops.backup.iris
  - irisops.backup.iris.instances
  - irisops.backup.iris.attributes
  - irisops.backup.iris.action_group
  - irisops.backup.iris.deadman
options:
  log_file:
    description:
      - File on the managed host that ExternalFreeze appends its messages to (its C(LogFile) argument).
      - By default a private temporary file is created for the call (writable by O(run_as)), read and deleted;
        the captured text is returned in RV(instance_results.log).
      - When given, the file must be writable by O(run_as); only the part appended by this call is parsed.
    type: path
  text:
    description:
      - Text stored in the journal marker (ExternalFreeze C(Text) argument).
    type: str
  switch_journal:
    description:
      - Switch to a new journal file and set a journal marker before freezing (C(SwitchJournalFile)).
      - When omitted, the IRIS default (V(true)) applies.
    type: bool
  external_freeze_timeout:
    description:
      - Seconds the instance may stay frozen before it stops all processes instead of only database writes
        (ExternalFreeze C(ExternalFreezeTimeOut)). IRIS default 600. It is B(not) an automatic thaw.
    type: int
  run_id:
    description:
      - Identifier of this freeze, recorded on the host with the verdict of the thaw (intact or not); give it to
        M(irisops.backup.iris_set_history) so that a torn backup is never recorded.
      - Generated from the time and process id when omitted; returned as RV(run_id). Letters, digits, C(.), C(_),
        C(:) and C(-) only.
    type: str
  wd_suspend_limit:
    description:
      - Seconds after which IRIS resumes the write daemon by itself (ExternalFreeze C(WDSuspendLimit)).
        If that happens before the snapshot is taken, the backup is not consistent.
      - When omitted, the write daemon stays suspended until M(irisops.backup.iris_thaw) runs.
    type: int
notes:
  - In check mode the module discovers the instances, checks they exist and are running, queries C(IsWDSuspendedExt)
    (read only) and reports which instances would be frozen; nothing is frozen.
  - The C(Username)/C(Password) positional arguments of ExternalFreeze are never used, because they would be visible
    in the process list; login credentials (O(username), O(password)) are fed on standard input.
seealso:
  - module: irisops.backup.iris_thaw
  - module: irisops.backup.iris_set_history
  - module: irisops.backup.iris_instance_info
  - name: External Backup (IRIS Data Integrity Guide)
    description: How ExternalFreeze and ExternalThaw fit in a snapshot backup.
    link: https://docs.intersystems.com/irislatest/csp/docbook/DocBook.UI.Page.cls?KEY=GCDI_backup#GCDI_backup_methods_ext
"""

EXAMPLES = r"""
- name: Freeze every running instance, snapshot, and always thaw with the lease
  block:
    - name: Freeze
      irisops.backup.iris_freeze:
        instances: all
        external_freeze_timeout: 600
        text: "nightly snapshot {{ ansible_date_time.iso8601 }}"
      register: frozen

    - name: Snapshot the volumes here
      ansible.builtin.debug:
        msg: "restore journals from {{ frozen.instance_results['IRIS'].journal_file }}"
  always:
    - name: Thaw
      irisops.backup.iris_thaw:
        instances: all
        lease: "{{ frozen.lease | default(omit) }}"

- name: Freeze one Cache instance whose terminal service needs a password
  irisops.backup.iris_freeze:
    instance: CACHE
    run_as: cacheusr
    username: backup
    password: "{{ vault_iris_backup_password }}"
    timeout: 30
"""

RETURN = r"""
lease:
  description:
    - The lease on the host's freeze lock that this freeze holds until its thaw; pass it (or its C(token)) to
      M(irisops.backup.iris_thaw) as O(irisops.backup.iris_thaw#module:lease).
  returned: when something was frozen
  type: dict
  contains:
    token:
      description: The token that lets the thaw through.
      type: str
    until:
      description: UTC time (ISO 8601) the lease lasts until (when the dead-man switches are due, plus a minute).
      type: str
    run_id:
      description: Same as RV(run_id).
      type: str
run_id:
  description: The run id of this freeze (O(run_id) or generated).
  returned: success
  type: str
  sample: 20261207T020304Z-iris_freeze-4711
instances:
  description: Names of the instances selected (after resolving V(all)).
  returned: always
  type: list
  elements: str
  sample: [IRIS, CACHE]
frozen:
  description: Names of the instances this task froze (would freeze, in check mode).
  returned: always
  type: list
  elements: str
  sample: [IRIS]
instance_results:
  description: One entry per selected instance, keyed by instance name.
  returned: always
  type: dict
  contains:
    changed:
      description: Whether this instance was frozen by this task.
      type: bool
      sample: true
    already_frozen:
      description: The instance was frozen before the task ran; nothing was done.
      type: bool
      sample: false
    journal_file:
      description: Journal file to start a journal restore from for this backup (from the freeze log).
      type: str
      sample: /usr/irissys/mgr/journal/20240301.004
    marker_offset:
      description: Offset of the journal marker set by the freeze.
      type: int
      sample: 262272
    marker_file:
      description: Journal file that holds the marker.
      type: str
      sample: /usr/irissys/mgr/journal/20240301.004
    not_journalled:
      description: Database directories IRIS warned are not journalled.
      type: list
      elements: str
      sample: [/usr/irissys/mgr/irislocaldata/]
    warnings:
      description: Warning lines from the freeze log.
      type: list
      elements: str
    frozen_at:
      description: UTC time (ISO 8601) at which ExternalFreeze returned success.
      type: str
      sample: '2024-03-01T02:00:03Z'
    log_suspended_at:
      description: Time of the "System suspended" log line, in the instance's local time, as IRIS writes it.
      type: str
      sample: '2024-03-01T03:00:03'
    duration_ms:
      description: Wall time of the ExternalFreeze session in milliseconds.
      type: int
      sample: 1180
    log:
      description: Text ExternalFreeze wrote to its log file during this call.
      type: str
    rc:
      description: Exit status of the last session (5 frozen, 3 failed).
      type: int
      sample: 5
    command:
      description: The command run, without secrets.
      type: list
      elements: str
      sample: [runuser, -u, irisowner, --, /usr/bin/iris, session, IRIS, -U, '%SYS', '##Class(Backup.General).ExternalFreeze("/tmp/irisops-x/backup-y.log")']
    stdout:
      description: Standard output of the session.
      type: str
    stderr:
      description: Standard error of the session.
      type: str
    run_as:
      description: OS user the session ran as.
      type: str
      sample: irisowner
    rolled_back:
      description: Present when another instance failed; V(true) when this instance was thawed again.
      type: bool
    deadman:
      description: The dead-man switch of this instance (instances this task froze).
      type: dict
      contains:
        armed:
          description: Whether a switch is armed.
          type: bool
        mechanism:
          description: V(systemd) (transient timer) or V(process) (detached sleeper); null when not armed.
          type: str
        fires_at:
          description: UTC time (ISO 8601) at which it thaws the instance if still frozen.
          type: str
          sample: '2024-03-01T02:05:03Z'
    msg:
      description: What happened to this instance.
      type: str
rolled_back:
  description: Thaw results of the instances thawed again because another freeze failed, keyed by name.
  returned: failure
  type: dict
"""


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.irisops.backup.plugins.module_utils import _freeze
from ansible_collections.irisops.backup.plugins.module_utils import _iris


def main():
    argument_spec = _iris.common_argument_spec()
    argument_spec.update(_iris.instances_argument_spec())
    argument_spec.update(
        log_file=dict(type='path'),
        text=dict(type='str'),
        switch_journal=dict(type='bool'),
        external_freeze_timeout=dict(type='int'),
        wd_suspend_limit=dict(type='int'),
        deadman_timeout=dict(type='int'),
        run_id=dict(type='str'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    result = dict(changed=False, instances=[], frozen=[], instance_results={})

    errors = _iris.validate_common(p)
    for key in ('external_freeze_timeout', 'wd_suspend_limit'):
        if p[key] is not None and p[key] <= 0:
            errors.append('%s must be a positive number of seconds' % key)
    if p['deadman_timeout'] is not None and p['deadman_timeout'] < 0:
        errors.append('deadman_timeout must be 0 (disabled) or a positive number of seconds')
    if p['text'] is not None:
        try:
            _iris.objectscript_string(p['text'])
        except ValueError as exc:
            errors.append('text: %s' % exc)
    if p['run_id'] is not None:
        err = _freeze.check_run_id(p['run_id'])
        if err:
            errors.append(err)
    log_problem = _iris.log_file_error(p['log_file'])
    if log_problem:
        errors.append(log_problem)
    if errors:
        module.fail_json(msg='nothing frozen: ' + '; '.join(errors), **result)

    sel = _iris.prepare_selection(p['instances'], run_as=p['run_as'])
    result['instances'] = [i['name'] for i in sel['selected']]
    if sel['errors']:
        module.fail_json(msg='nothing frozen: ' + '; '.join(sel['errors']), **result)

    engine = _freeze.FreezeEngine(sel['selected'], 'iris_freeze', p, run_id=p['run_id'])
    eft = engine.eft()
    if engine.deadman_seconds == 0:
        module.warn('deadman_timeout=0: no dead-man switch; if this play dies before iris_thaw runs, the instances '
                    'stay frozen and block users after ExternalFreezeTimeOut (%d s)' % eft)
    elif engine.deadman_seconds >= eft:
        module.warn('deadman_timeout=%d is not below ExternalFreezeTimeOut (%d s): users may hang before the dead-man '
                    'switch thaws the instance' % (engine.deadman_seconds, eft))

    if module.check_mode:
        failed = []
        for name, state in sorted(engine.query(sel['selected']).items()):
            entry = dict(changed=False, already_frozen=bool(state['frozen']), rc=state['rc'],
                         command=state['command'], stdout=state['stdout'], stderr=state['stderr'],
                         run_as=state.get('run_as'), duration_ms=state['duration_ms'])
            if state['failed']:
                failed.append(state['msg'])
                entry['msg'] = state['msg']
            elif state['frozen']:
                entry['msg'] = 'instance %s is already frozen; nothing to do' % name
            else:
                entry['changed'] = True
                entry['msg'] = 'instance %s would be frozen (check mode)' % name
                entry['deadman'] = dict(armed=False, mechanism=None, fires_at=None,
                                        would_arm=engine.deadman_seconds > 0, seconds=engine.deadman_seconds)
                result['frozen'].append(name)
            result['instance_results'][name] = entry
        result['changed'] = bool(result['frozen'])
        _diff(module, result, sel['selected'])
        if failed:
            module.fail_json(msg='check mode: ' + '; '.join(failed), **result)
        module.exit_json(msg='check mode: would freeze %s' % (', '.join(result['frozen']) or 'nothing'), **result)

    res = engine.hold()
    for name, got in engine.results.items():
        entry = dict(got.get('freeze') or {})
        for key in ('already_frozen', 'frozen', 'changed', 'msg'):
            if key in got and key not in entry:
                entry[key] = got[key]
        if 'deadman' in got:
            entry['deadman'] = got['deadman']
        if name in (res.get('rolled_back') or {}):
            entry['rolled_back'] = not res['rolled_back'][name].get('failed')
        entry.setdefault('changed', False)
        result['instance_results'][name] = entry
        for d in entry.get('not_journalled') or []:
            module.warn('instance %s: database %s is not journalled (reported by ExternalFreeze): changes made to it '
                        'while frozen are not in the journal and cannot be restored from it' % (name, d))
    result['frozen'] = res.get('frozen') or []
    result['run_id'] = res['run_id']
    result['changed'] = bool(result['frozen']) or bool(res.get('rolled_back'))
    _diff(module, result, sel['selected'])
    if res['failed']:
        result['rolled_back'] = res.get('rolled_back') or {}
        result['still_frozen'] = res.get('still_frozen') or []
        module.fail_json(msg=res['msg'], **result)
    if res.get('lease'):
        result['lease'] = res['lease']
    module.exit_json(msg=res['msg'], **result)


def _diff(module, result, selected):
    if not module._diff:
        return
    before = {}
    after = {}
    for inst in selected:
        r = result['instance_results'].get(inst['name'], {})
        was = bool(r.get('already_frozen'))
        before[inst['name']] = {'frozen': was}
        after[inst['name']] = {'frozen': was or bool(r.get('changed'))}
    result['diff'] = {'before': before, 'after': after}


if __name__ == '__main__':
    main()
