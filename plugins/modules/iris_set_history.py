#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: iris_set_history
short_description: Record a backup in the IRIS backup history
version_added: 0.1.0
description:
  - Calls the C(Backup.General) class method C(ExternalSetHistory) in the C(%SYS) namespace to record that an external backup
    of the instance completed.
  - B(Recording a backup can trigger a journal purge.) IRIS purges journal files after the number of successive
    backups set by C(BackupsBeforePurge) in the C([Journal]) section of the CPF (default 2). The module reports that
    setting and the journal files present before and after the call, so a purge is visible in the result.
  - The module refuses to run unless O(backup_completed=true), so that a test run cannot purge journals by accident,
    and refuses while the instance is still frozen (thaw first with M(irisops.backup.iris_thaw)).
  - B(Not idempotent by nature) - every call records one more backup. Call it once per completed backup, after the
    snapshot has been verified and copied.
author:
  - irisops.backup maintainers (@irisops)
extends_documentation_fragment:
  - irisops.backup.iris
  - irisops.backup.iris.instances
  - irisops.backup.iris.attributes
  - irisops.backup.iris.action_group
options:
  backup_completed:
    description:
      - Confirms that the backup being recorded really completed. Must be V(true); the default V(false) makes the
        module fail without touching the instance.
    type: bool
    default: false
  run_id:
    description:
      - The run id of the freeze this backup was taken under (RV(irisops.backup.iris_freeze#module:run_id),
        RV(irisops.backup.iris_lvm_snapshot#module:run_id)).
      - When given, the module refuses to record a backup whose freeze window the freeze engine marked B(invalid)
        (the write daemon resumed inside it, its dead-man switch fired, it was frozen again by someone else) or
        whose freeze has not been thawed and checked yet, and one it has no record of (another host, or a reboot
        since). Recording an invalid backup could purge the journal files needed to repair it.
      - Strongly recommended; without it the module cannot tell a torn backup from a good one.
    type: str
  text:
    description:
      - Description stored with the backup history entry (second argument of ExternalSetHistory; signature beyond
        the log file is not confirmed by InterSystems documentation).
    type: str
  log_file:
    description:
      - File on the managed host that ExternalSetHistory appends its messages to. By default a private temporary
        file is used, read and deleted.
      - Its directory must exist; otherwise nothing is recorded.
    type: path
notes:
  - Check mode does not record anything; it validates the options, checks the instance is running and not frozen,
    and reports that a backup would be recorded (V(changed=true)).
  - The exit status of ExternalSetHistory is not documented; the module wraps the call in
    C($SYSTEM.Process.Terminate) to turn its C(%Status) into the usual 5 (recorded) / 3 (failed) convention.
  - The diff mode output is the list of journal files before and after the call.
seealso:
  - module: irisops.backup.iris_freeze
  - module: irisops.backup.iris_thaw
"""

EXAMPLES = r"""
- name: Record the backup once the snapshot has been copied off the host
  irisops.backup.iris_set_history:
    instances: all
    backup_completed: true
    text: "snapshot {{ snapshot_id }}"
  register: history

- name: Show journal files purged by the history entry
  ansible.builtin.debug:
    msg: "{{ history.instance_results['IRIS'].journal_files_purged }}"
"""

RETURN = r"""
instances:
  description: Names of the instances selected.
  returned: always
  type: list
  elements: str
  sample: [IRIS]
recorded:
  description: Names of the instances where a backup was recorded (would be, in check mode).
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
      description: Whether a backup was recorded.
      type: bool
    backups_before_purge:
      description: C(BackupsBeforePurge) from the CPF C([Journal]) section (null when not set there; IRIS default 2).
      type: int
      sample: 2
    days_before_purge:
      description: C(DaysBeforePurge) from the CPF.
      type: int
    journal_dirs:
      description: Journal directories from the CPF.
      type: list
      elements: str
    journal_files_before:
      description: Journal files present before the call.
      type: list
      elements: str
    journal_files_after:
      description: Journal files present after the call.
      type: list
      elements: str
    journal_files_purged:
      description: Journal files that disappeared during the call (purged).
      type: list
      elements: str
    recorded_at:
      description: UTC time (ISO 8601) of the record.
      type: str
    log:
      description: Text ExternalSetHistory wrote to its log file.
      type: str
    rc:
      description: Exit status of the session (5 recorded, 3 failed).
      type: int
    command:
      description: The command run, without secrets.
      type: list
      elements: str
    msg:
      description: What happened.
      type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.irisops.backup.plugins.module_utils import _freeze
from ansible_collections.irisops.backup.plugins.module_utils import _iris


def main():
    argument_spec = _iris.common_argument_spec()
    argument_spec.update(_iris.instances_argument_spec())
    argument_spec.update(
        backup_completed=dict(type='bool', default=False),
        run_id=dict(type='str'),
        text=dict(type='str'),
        log_file=dict(type='path'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    result = dict(changed=False, instances=[], recorded=[], instance_results={})

    errors = _iris.validate_common(p)
    if not p['backup_completed']:
        errors.append('backup_completed is not true: ExternalSetHistory records a backup and may purge journal '
                      'files (BackupsBeforePurge); set backup_completed=true only after the backup really completed')
    log_problem = _iris.log_file_error(p['log_file'])
    if log_problem:
        errors.append(log_problem)
    if p['text'] is not None:
        try:
            _iris.objectscript_string(p['text'])
        except ValueError as exc:
            errors.append('text: %s' % exc)
    if p['run_id'] is not None and not errors:
        valid, why = _freeze.run_validity(p['run_id'])
        result['run_valid'] = valid
        if valid is False:
            errors.append('%s. Recording it could purge the journal files needed to repair it. Next: take the backup '
                          'again' % why)
        elif valid is None:
            errors.append('%s. Next: record only a backup whose freeze this host thawed and checked (iris_thaw with '
                          'the lease of iris_freeze, or iris_lvm_snapshot), or leave run_id out if you checked it '
                          'yourself' % why)
    if errors:
        module.fail_json(msg='nothing recorded: ' + '; '.join(errors), **result)

    sel = _iris.prepare_selection(p['instances'], run_as=p['run_as'])
    result['instances'] = [i['name'] for i in sel['selected']]
    if sel['errors']:
        module.fail_json(msg='nothing recorded: ' + '; '.join(sel['errors']), **result)

    failures = []
    for inst in sel['selected']:
        before = _iris.list_journal_files(inst.get('journal_dirs'))
        facts = dict(backups_before_purge=inst.get('backups_before_purge'),
                     days_before_purge=inst.get('days_before_purge'),
                     journal_dirs=inst.get('journal_dirs') or [],
                     journal_files_before=before)
        if module.check_mode:
            state = _iris.is_frozen(None, inst, run_as=p['run_as'], username=p['username'],
                                    password=p['password'], timeout=p['timeout'])
            entry = dict(changed=False, rc=state['rc'], command=state['command'], stdout=state['stdout'],
                         stderr=state['stderr'])
            if state['failed']:
                entry['msg'] = state['msg'] + '; backup not recorded'
            elif state['frozen']:
                entry['msg'] = ('instance %s is still frozen; thaw it (iris_thaw) before recording the backup'
                                % inst['name'])
            else:
                entry['changed'] = True
                entry['msg'] = ('check mode: a backup would be recorded for instance %s (BackupsBeforePurge=%s)'
                                % (inst['name'], _purge_setting(inst)))
            if not entry['changed']:
                failures.append(entry['msg'])
            entry.update(facts)
            entry['journal_files_after'] = before
            entry['journal_files_purged'] = []
        else:
            entry = _iris.set_history(None, inst, log_file=p['log_file'], text=p['text'], timeout=p['timeout'],
                                      run_as=p['run_as'], username=p['username'], password=p['password'])
            after = _iris.list_journal_files(inst.get('journal_dirs'))
            entry.update(facts)
            entry['journal_files_after'] = after
            entry['journal_files_purged'] = sorted(set(before) - set(after))
            if entry['failed']:
                failures.append(entry['msg'])
            elif entry['journal_files_purged']:
                entry['msg'] += '; journal files purged: %s' % ', '.join(entry['journal_files_purged'])
        if entry['changed']:
            result['recorded'].append(inst['name'])
        result['instance_results'][inst['name']] = entry

    result['changed'] = bool(result['recorded'])
    if module._diff:
        result['diff'] = {
            'before': dict((n, {'journal_files': r['journal_files_before']})
                           for n, r in result['instance_results'].items()),
            'after': dict((n, {'journal_files': r['journal_files_after']})
                          for n, r in result['instance_results'].items()),
        }
    if failures:
        module.fail_json(msg='; '.join(failures), **result)
    prefix = 'check mode: would have ' if module.check_mode else ''
    module.exit_json(msg='%srecorded a backup for: %s' % (prefix, ', '.join(result['recorded'])), **result)


def _purge_setting(inst):
    value = inst.get('backups_before_purge')
    return value if value is not None else 'not set in CPF (IRIS default 2)'


if __name__ == '__main__':
    main()
