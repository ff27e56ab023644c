#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: iris_freeze
short_description: Freeze InterSystems IRIS or Cache instances for an external (snapshot) backup
version_added: 0.1.0
description:
  - Calls the C(Backup.General) class method C(ExternalFreeze) in the C(%SYS) namespace of one or more instances, as the
    instance's manager user, so that a storage or VM snapshot taken afterwards is application consistent.
  - Checks C(IsWDSuspendedExt) first; an instance that is already frozen is reported as ok, not changed.
  - Several instances are frozen concurrently and all or nothing, if one freeze fails, every instance this task
    froze is thawed again before the task fails.
  - If a freeze fails (exit status 3 or any status other than 5) but the write daemon ended up suspended anyway,
    the module thaws that instance before failing.
  - Always pair this module with M(irisops.backup.iris_thaw) in an C(always) section.
    A frozen instance blocks users after O(external_freeze_timeout).
  - For every instance it froze, the module arms a dead-man switch on the managed host that thaws the instance
    after O(deadman_timeout) seconds unless M(irisops.backup.iris_thaw) disarms it first. It does not depend on the
    Ansible connection, so it also fires when the controller dies between the freeze and the thaw task.
    See C(docs/deadman.md).
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
- name: Freeze every running instance, snapshot, and always thaw
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

- name: Freeze one Cache instance whose terminal service needs a password
  irisops.backup.iris_freeze:
    instance: CACHE
    run_as: cacheusr
    username: backup
    password: "{{ vault_iris_backup_password }}"
    timeout: 30
"""

RETURN = r"""
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
    log_problem = _iris.log_file_error(p['log_file'])
    if log_problem:
        errors.append(log_problem)
    if errors:
        module.fail_json(msg='nothing frozen: ' + '; '.join(errors), **result)

    sel = _iris.prepare_selection(p['instances'], run_as=p['run_as'])
    result['instances'] = [i['name'] for i in sel['selected']]
    if sel['errors']:
        module.fail_json(msg='nothing frozen: ' + '; '.join(sel['errors']), **result)

    common = dict(run_as=p['run_as'], username=p['username'], password=p['password'], timeout=p['timeout'])
    deadman_timeout = p['deadman_timeout']
    if deadman_timeout is None:
        deadman_timeout = _iris.default_deadman_timeout(p['external_freeze_timeout'])
    eft = p['external_freeze_timeout'] or _iris.DEFAULT_EXTERNAL_FREEZE_TIMEOUT
    if deadman_timeout == 0:
        module.warn('deadman_timeout=0: no dead-man switch; if this play dies before iris_thaw runs, the instances '
                    'stay frozen and block users after ExternalFreezeTimeOut (%d s)' % eft)
    elif deadman_timeout >= eft:
        module.warn('deadman_timeout=%d is not below ExternalFreezeTimeOut (%d s): users may hang before the dead-man '
                    'switch thaws the instance' % (deadman_timeout, eft))

    if module.check_mode:
        failed = []
        for inst in sel['selected']:
            state = _iris.is_frozen(None, inst, run_as=p['run_as'], username=p['username'], password=p['password'],
                                    timeout=p['timeout'])
            entry = dict(changed=False, already_frozen=bool(state['frozen']), rc=state['rc'],
                         command=state['command'], stdout=state['stdout'], stderr=state['stderr'],
                         run_as=state.get('run_as'), duration_ms=state['duration_ms'])
            if state['failed']:
                failed.append(state['msg'])
                entry['msg'] = state['msg']
            elif state['frozen']:
                entry['msg'] = 'instance %s is already frozen; nothing to do' % inst['name']
            else:
                entry['changed'] = True
                entry['msg'] = 'instance %s would be frozen (check mode)' % inst['name']
                entry['deadman'] = dict(armed=False, mechanism=None, fires_at=None,
                                        would_arm=deadman_timeout > 0, seconds=deadman_timeout)
                result['frozen'].append(inst['name'])
            result['instance_results'][inst['name']] = entry
        result['changed'] = bool(result['frozen'])
        _diff(module, result, sel['selected'])
        if failed:
            module.fail_json(msg='check mode: ' + '; '.join(failed), **result)
        module.exit_json(msg='check mode: would freeze %s' % (', '.join(result['frozen']) or 'nothing'), **result)

    many = _iris.freeze_many(
        None, sel['selected'],
        log_file=p['log_file'], text=p['text'], switch_journal=p['switch_journal'],
        external_freeze_timeout=p['external_freeze_timeout'], wd_suspend_limit=p['wd_suspend_limit'],
        username=common['username'], password=common['password'], timeout=common['timeout'],
        run_as=p['run_as'],
    )
    for name, r in many['results'].items():
        result['instance_results'][name] = r
    result['frozen'] = sorted(n for n, r in many['results'].items() if r.get('changed'))
    result['changed'] = many['changed'] or bool(many['rolled_back'])
    _diff(module, result, sel['selected'])
    if many['failed']:
        result['rolled_back'] = many['rolled_back']
        result['still_frozen'] = many['still_frozen']
        module.fail_json(msg=many['msg'], **result)
    if deadman_timeout > 0:
        _arm(module, result, sel['selected'], deadman_timeout, common)
    module.exit_json(msg=many['msg'], **result)


def _arm(module, result, selected, seconds, common):
    """Arm a switch per instance this task froze; on any failure thaw them all and fail (never a freeze without
    its switch)."""
    failures = []
    by_name = dict((i['name'], i) for i in selected)
    for name in result['frozen']:
        arm = _iris.deadman_arm(by_name[name], seconds, run_as=common['run_as'], timeout=common['timeout'])
        result['instance_results'][name]['deadman'] = dict(
            (k, arm.get(k)) for k in ('armed', 'mechanism', 'fires_at', 'seconds', 'unit', 'pid', 'state_file'))
        if arm['failed']:
            failures.append(arm['msg'])
    if not failures:
        return
    thawed, still = [], []
    for name in result['frozen']:
        _iris.deadman_disarm(name)
        t = _iris.thaw(None, by_name[name], check_state=False, stat_fallback=True, **common)
        result['instance_results'][name]['thaw_after_deadman_failure'] = t
        (still if t['failed'] else thawed).append(name)
    result['changed'] = True
    msg = '%s; thawed again: %s' % ('; '.join(failures), ', '.join(thawed) or 'none')
    if still:
        msg += '; STILL FROZEN (thaw failed): %s - run iris_thaw with stat_fallback=true now' % ', '.join(still)
    else:
        msg += '. Next: check that %s is writable and systemd-run works (or set deadman_timeout: 0 to run without a ' \
               'switch)' % _iris.deadman_dir()
    module.fail_json(msg=msg, **result)


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
