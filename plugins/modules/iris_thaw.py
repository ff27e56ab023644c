#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: iris_thaw
short_description: Thaw InterSystems IRIS or Cache instances after an external (snapshot) backup
version_added: 0.1.0
description:
  - Calls the C(Backup.General) class method C(ExternalThaw) in the C(%SYS) namespace of one or more instances, as the
    instance's manager user, to resume the write daemon suspended by M(irisops.backup.iris_freeze).
  - Checks C(IsWDSuspendedExt) first; an instance that is not frozen is reported as ok, not changed.
  - Every session is bounded by O(timeout). When ExternalThaw fails or hangs (a session cannot log in while the
    instance is frozen past its ExternalFreezeTimeOut) and O(stat_fallback=true), the module runs
    C(iris stat INSTANCE -W) (C(ccontrol stat INSTANCE -W) on Cache), which resumes a write daemon suspended by a
    backup and nothing else, and reports which path thawed the instance.
  - Disarms the dead-man switch armed by M(irisops.backup.iris_freeze) (stops its systemd timer or kills its
    sleeper and removes its state) for every instance it thaws or finds not frozen. Disarming is idempotent.
author:
  - irisops.backup maintainers (@irisops)
extends_documentation_fragment:
  - irisops.backup.iris
  - irisops.backup.iris.instances
  - irisops.backup.iris.attributes
  - irisops.backup.iris.action_group
options:
  log_file:
    description:
      - File on the managed host that ExternalThaw appends its messages to. By default a private temporary file
        is used, read and deleted.
      - When its directory does not exist, the module warns and thaws with the temporary file (a wrong log path
        must not keep an instance frozen).
    type: path
  stat_fallback:
    description:
      - When ExternalThaw fails or does not finish within O(timeout), resume the write daemon with
        C(irisstat -W) through C(iris stat INSTANCE -W) (IRIS Data Integrity Guide), then check again with
        C(IsWDSuspendedExt).
      - Off by default; C(-W) on Cache's C(cstat) is not confirmed by InterSystems documentation.
    type: bool
    default: false
notes:
  - In V(all) mode, instances that are down are skipped; every running instance is checked and thawed if frozen.
  - In check mode the module only queries C(IsWDSuspendedExt) and reports which instances would be thawed.
seealso:
  - module: irisops.backup.iris_freeze
  - module: irisops.backup.iris_set_history
"""

EXAMPLES = r"""
- name: Thaw every running instance that is frozen
  irisops.backup.iris_thaw:
    instances: all

- name: Thaw IRIS, falling back to irisstat -W if ExternalThaw hangs for 30 s
  irisops.backup.iris_thaw:
    instance: IRIS
    timeout: 30
    stat_fallback: true
  register: thawed

- name: Show how it was thawed
  ansible.builtin.debug:
    msg: "{{ thawed.instance_results['IRIS'].thawed_by }}"
"""

RETURN = r"""
instances:
  description: Names of the instances selected (after resolving V(all)).
  returned: always
  type: list
  elements: str
  sample: [IRIS]
thawed:
  description: Names of the instances this task thawed (would thaw, in check mode).
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
      description: Whether this instance was thawed by this task.
      type: bool
    thawed_by:
      description: V(ExternalThaw), V(stat -W) (fallback), or null when nothing was done.
      type: str
      sample: ExternalThaw
    down:
      description: V(true) when the thaw session failed and C(qlist) lists the instance as down; a stopped instance
        holds no freeze, so it is not frozen (the entry is still failed, the instance needs attention).
      type: bool
      returned: when the instance was found down
    thawed_at:
      description: UTC time (ISO 8601) at which the thaw was confirmed.
      type: str
    log_resumed_at:
      description: Time of the "System resumed" log line, in the instance's local time.
      type: str
    duration_ms:
      description: Wall time of the ExternalThaw session in milliseconds.
      type: int
    log:
      description: Text ExternalThaw wrote to its log file during this call.
      type: str
    stat_fallback:
      description: Command, rc, stdout and stderr of the C(stat -W) fallback when it ran.
      type: dict
    deadman:
      description: Dead-man switch of the instance. C(was_armed) tells whether one was armed, C(disarmed) whether
        this task disarmed it. In check mode the switch's status (C(armed), C(mechanism), C(fires_at)) instead.
      type: dict
    rc:
      description: Exit status of the ExternalThaw session (5 thawed, 3 failed, null on timeout).
      type: int
    command:
      description: The command run, without secrets.
      type: list
      elements: str
    stdout:
      description: Standard output of the session.
      type: str
    stderr:
      description: Standard error of the session.
      type: str
    msg:
      description: What happened to this instance.
      type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.irisops.backup.plugins.module_utils import _iris


def main():
    argument_spec = _iris.common_argument_spec()
    argument_spec.update(_iris.instances_argument_spec())
    argument_spec.update(
        log_file=dict(type='path'),
        stat_fallback=dict(type='bool', default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    result = dict(changed=False, instances=[], thawed=[], instance_results={})

    errors = _iris.validate_common(p)
    if errors:
        module.fail_json(msg='nothing thawed: ' + '; '.join(errors), **result)
    log_problem = _iris.log_file_error(p['log_file'])
    if log_problem:
        # A bad log path must not keep an instance frozen: thaw anyway, into the private temporary log.
        module.warn('%s; thawing without it (ExternalThaw writes to a private temporary file instead)' % log_problem)
        p['log_file'] = None

    sel = _iris.prepare_selection(p['instances'], run_as=p['run_as'])
    result['instances'] = [i['name'] for i in sel['selected']]
    if sel['errors']:
        module.fail_json(msg='nothing thawed: ' + '; '.join(sel['errors']), **result)

    failures = []
    for inst in sel['selected']:
        if module.check_mode:
            state = _iris.is_frozen(None, inst, run_as=p['run_as'], username=p['username'],
                                    password=p['password'], timeout=p['timeout'])
            entry = dict(changed=False, thawed_by=None, rc=state['rc'], command=state['command'],
                         stdout=state['stdout'], stderr=state['stderr'], duration_ms=state['duration_ms'],
                         frozen=state['frozen'])
            if state['failed']:
                entry['msg'] = state['msg']
                failures.append(state['msg'])
            elif state['frozen']:
                entry['changed'] = True
                entry['msg'] = 'instance %s would be thawed (check mode)' % inst['name']
                result['thawed'].append(inst['name'])
            else:
                entry['msg'] = 'instance %s is not frozen; nothing to do' % inst['name']
            entry['deadman'] = _iris.deadman_status(inst['name'])
        else:
            entry = _iris.thaw(None, inst, log_file=p['log_file'], timeout=p['timeout'], run_as=p['run_as'],
                               username=p['username'], password=p['password'], stat_fallback=p['stat_fallback'])
            if not entry['failed']:
                # Thawed or not frozen: the switch has nothing left to do.  A failed thaw keeps it armed.
                entry['deadman'] = _iris.deadman_disarm(inst['name'])
            if entry['changed']:
                result['thawed'].append(inst['name'])
            if entry['failed']:
                failures.append(entry['msg'])
        result['instance_results'][inst['name']] = entry

    result['changed'] = bool(result['thawed'])
    if module._diff:
        result['diff'] = {
            'before': dict((n, {'frozen': bool(r.get('changed')) or bool(r.get('frozen'))})
                           for n, r in result['instance_results'].items()),
            'after': dict((n, {'frozen': bool(r.get('frozen')) and not r.get('changed')})
                          for n, r in result['instance_results'].items()),
        }
    if failures:
        module.fail_json(msg='; '.join(failures), **result)
    prefix = 'check mode: would have ' if module.check_mode else ''
    thawed = ', '.join(result['thawed']) or 'nothing (none was frozen)'
    module.exit_json(msg='%sthawed: %s' % (prefix, thawed), **result)


if __name__ == '__main__':
    main()
