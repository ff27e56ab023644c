#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: iris_thaw
short_description: Thaw IRIS/Cache after a snapshot, best effort
version_added: 0.1.0
description:
  - Calls the C(Backup.General) class method C(ExternalThaw) in the C(%SYS) namespace of one or more instances, as the
    instance's manager user, to resume the write daemon suspended by M(irisops.backup.iris_freeze).
  - Checks C(IsWDSuspendedExt) first; an instance that is not frozen is reported as ok, not changed.
  - "Best effort: every selected instance that can be reached is thawed, whatever happens to the others; instances
    that are down are reported (a stopped instance holds no freeze); the task fails at the end when an instance
    stays frozen, was refused, or its freeze was not intact."
  - "With O(lease) (the RV(irisops.backup.iris_freeze#module:lease) of the freeze) the module first checks, per
    instance, that the freeze is still the one taken by M(irisops.backup.iris_freeze): the write daemon still
    suspended, its dead-man switch not fired, no other freeze in the instance log since. If not, the backup taken
    under that freeze is B(invalid): the instances are thawed anyway, RV(valid) is V(false), RV(invalid) names the
    reason and the task fails, so that nothing records that backup (M(irisops.backup.iris_set_history) with
    O(irisops.backup.iris_set_history#module:run_id) refuses it too)."
  - Without O(lease), instances held under the lease of another freezer (the host freeze lock, see
    C(docs/deadman.md)) are B(not) thawed (RV(refused)) unless O(force=true); instances frozen by nobody the
    collection knows (by hand, or an older version) are thawed.
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
  lease:
    description:
      - The lease of the freeze to thaw, as returned by M(irisops.backup.iris_freeze) (RV(irisops.backup.iris_freeze#module:lease),
        the whole dictionary or its C(token)).
      - Required to thaw instances that M(irisops.backup.iris_freeze) holds, and to learn whether that freeze stayed
        intact (RV(valid)).
    type: raw
  force:
    description:
      - Thaw instances held under another freezer's lease, or while another process holds the host freeze lock.
      - Only for a freeze you know was abandoned (its play is gone and you do not want to wait for its dead-man
        switch); the other freezer's backup is then not consistent. The module warns naming the holder.
    type: bool
    default: false
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
      - "On by default: the IRIS documentation says that an instance frozen past its ExternalFreezeTimeOut lets no
        new process sign on until it is thawed, so C(ExternalThaw) through a new session cannot reach it, and
        C(irisstat -W) is the documented way out. It only runs after C(ExternalThaw) failed. C(-W) on Cache's
        C(cstat) is not confirmed by InterSystems documentation (C(docs/unconfirmed.md)); set V(false) to never
        use it."
    type: bool
    default: true
notes:
  - In V(all) mode, instances that are down are skipped; every running or "sign-on inhibited" instance is checked
    and thawed if frozen (an instance frozen past its ExternalFreezeTimeOut may be listed as sign-on inhibited).
  - In check mode the module only queries C(IsWDSuspendedExt) and reports which instances would be thawed.
seealso:
  - module: irisops.backup.iris_freeze
  - module: irisops.backup.iris_set_history
"""

EXAMPLES = r"""
- name: Freeze, snapshot, always thaw with the freeze's lease, record only an intact backup
  block:
    - name: Freeze
      irisops.backup.iris_freeze:
        instances: all
      register: frozen

    - name: Snapshot the volumes here
      ansible.builtin.command: /usr/local/bin/take-snapshot
      changed_when: true
  always:
    - name: Thaw (checks that the freeze stayed intact)
      irisops.backup.iris_thaw:
        instances: all
        lease: "{{ frozen.lease | default(omit) }}"
      register: thawed

- name: Record the backup (refused for an invalid freeze window)
  irisops.backup.iris_set_history:
    instances: all
    backup_completed: true
    run_id: "{{ frozen.run_id }}"

- name: Thaw IRIS, falling back to irisstat -W if ExternalThaw hangs for 30 s
  irisops.backup.iris_thaw:
    instance: IRIS
    timeout: 30
  register: thawed
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
valid:
  description: With O(lease), whether the freeze stayed intact until this thaw (the backup taken under it is
    usable); null without O(lease).
  returned: always
  type: bool
invalid:
  description: Instance name -> why its freeze was not intact (its dead-man switch fired, the write daemon was
    resumed by someone else or by WDSuspendLimit, another freeze began).
  returned: always
  type: dict
refused:
  description: Instance name -> why it was not thawed (held under another freezer's lease).
  returned: always
  type: dict
went_down:
  description: Instances found down (not frozen, but not in any backup taken now either).
  returned: always
  type: list
  elements: str
still_frozen:
  description: Instances the thaw could not resume; their dead-man switch, when armed, tries again.
  returned: always
  type: list
  elements: str
run_id:
  description: The run id of the freeze the lease belongs to (for M(irisops.backup.iris_set_history)).
  returned: when O(lease) matched a freeze on the host
  type: str
forced:
  description: Whose lease or lock O(force=true) overrode.
  returned: always
  type: str
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

from ansible_collections.irisops.backup.plugins.module_utils import _freeze
from ansible_collections.irisops.backup.plugins.module_utils import _iris


def lease_token(value):
    """The token of O(lease): the RV(irisops.backup.iris_freeze#module:lease) dictionary or its token."""
    if isinstance(value, dict):
        return value.get('token')
    return value or None


def main():
    argument_spec = _iris.common_argument_spec()
    argument_spec.update(_iris.instances_argument_spec())
    argument_spec.update(
        log_file=dict(type='path'),
        stat_fallback=dict(type='bool', default=True),
        lease=dict(type='raw'),
        force=dict(type='bool', default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    result = dict(changed=False, instances=[], thawed=[], instance_results={}, valid=None, invalid={}, refused={},
                  went_down=[], still_frozen=[])

    errors = _iris.validate_common(p)
    token = lease_token(p['lease'])
    if p['lease'] is not None and not (isinstance(token, str) and token):
        errors.append('lease: give the lease returned by irisops.backup.iris_freeze (its dictionary or its token)')
    if errors:
        module.fail_json(msg='nothing thawed: ' + '; '.join(errors), **result)
    log_problem = _iris.log_file_error(p['log_file'])
    if log_problem:
        # A bad log path must not keep an instance frozen: thaw anyway, into the private temporary log.
        module.warn('%s; thawing without it (ExternalThaw writes to a private temporary file instead)' % log_problem)
        p['log_file'] = None

    # A thaw must reach every instance that may be frozen: 'all' includes "sign-on inhibited" instances (frozen past
    # ExternalFreezeTimeOut), and a named instance that is down is reported, not refused.
    sel = _iris.prepare_selection(p['instances'], run_as=p['run_as'], require_ready=False, include_inhibited=True)
    result['instances'] = [i['name'] for i in sel['selected']]
    if sel['errors']:
        module.fail_json(msg='nothing thawed: ' + '; '.join(sel['errors']), **result)
    reachable = [i for i in sel['selected'] if i.get('up')]
    for inst in sel['selected']:
        if not inst.get('up'):
            result['went_down'].append(inst['name'])
            result['instance_results'][inst['name']] = dict(
                changed=False, frozen=False, down=True,
                msg='instance %s is %s (qlist: %r): not frozen, a stopped instance holds no freeze' % (
                    inst['name'], inst.get('status'), inst.get('status_raw')))

    if module.check_mode:
        engine = _freeze.FreezeEngine(reachable, 'iris_thaw', p)
        failures = []
        held = _freeze.held_by_another(token, p['force'])
        for name, state in sorted(engine.query(reachable).items()):
            entry = dict(changed=False, thawed_by=None, rc=state['rc'], command=state['command'],
                         stdout=state['stdout'], stderr=state['stderr'], duration_ms=state['duration_ms'],
                         frozen=state['frozen'], deadman=_freeze.deadman_status(name))
            if state['failed']:
                entry['msg'] = state['msg']
                failures.append(state['msg'])
            elif state['frozen'] and held and name in held['instances']:
                entry['msg'] = 'instance %s would NOT be thawed (check mode): %s' % (name, held['msg'])
                result['refused'][name] = held['msg']
                failures.append(entry['msg'])
            elif state['frozen']:
                entry['changed'] = True
                entry['msg'] = 'instance %s would be thawed (check mode)' % name
                result['thawed'].append(name)
            else:
                entry['msg'] = 'instance %s is not frozen; nothing to do' % name
            result['instance_results'][name] = entry
        result['changed'] = bool(result['thawed'])
        _diff(module, result)
        if failures:
            module.fail_json(msg='check mode: ' + '; '.join(failures), **result)
        module.exit_json(msg='check mode: would have thawed: %s' % (', '.join(result['thawed']) or 'nothing'),
                         **result)

    opts = dict(p)
    out = _freeze.thaw_held(reachable, 'iris_thaw', opts, token=token, force=p['force'])
    result['instance_results'].update(out['results'])
    for key in ('thawed', 'valid', 'invalid', 'refused', 'still_frozen', 'run_id', 'forced'):
        result[key] = out[key]
    result['went_down'] = sorted(set(result['went_down']) | set(out['went_down']))
    result['changed'] = bool(result['thawed'])
    if out['forced']:
        module.warn('force: thawed instances held by %s' % out['forced'])
    _diff(module, result)
    if out['failed']:
        module.fail_json(msg=out['msg'], **result)
    if result['went_down']:
        module.warn('%s %s down: not frozen, but not in any backup taken now either' % (
            ', '.join(result['went_down']), 'is' if len(result['went_down']) == 1 else 'are'))
    module.exit_json(msg=out['msg'], **result)


def _diff(module, result):
    if not module._diff:
        return
    result['diff'] = {
        'before': dict((n, {'frozen': bool(r.get('changed')) or bool(r.get('frozen'))})
                       for n, r in result['instance_results'].items()),
        'after': dict((n, {'frozen': bool(r.get('frozen')) and not r.get('changed')})
                      for n, r in result['instance_results'].items()),
    }


if __name__ == '__main__':
    main()
