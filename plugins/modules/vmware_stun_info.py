#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vmware_stun_info
short_description: VMware VM stun times against the mirror QoS
version_added: 0.1.0
description:
  - >-
    Reads one or more C(vmware.log) files of a virtual machine (the current C(vmware.log), the rotated
    C(vmware-N.log), plain or gzip-compressed) and extracts every snapshot/vMotion stun that ESXi logs as
    C(Checkpoint_Unstun: vm stopped for N us).
  - Returns every stun with its timestamp and duration, their count, maximum and 95th percentile, and a verdict
    against an IRIS mirror quality-of-service (QoS) timeout. When the mirror is idle a backup failover member can
    take over after just over B(half) the QoS timeout, so any stun at or above half the QoS timeout is a risk; the
    module then warns (and fails with O(fail_on_risk=true)).
  - The QoS timeout is O(qos_timeout_ms), or the one of a local instance (O(instance)) as discovered by
    M(irisops.backup.iris_instance_info) from the CPF C([Mirrors]) section, or the IRIS default of 8000 ms.
  - Runs wherever the log files are (usually the control node after downloading them, with C(delegate_to) or
    C(connection=local)); needs only the Python standard library. Never changes anything.
  - 'Accepted line forms (the part before C(Checkpoint_Unstun:)): ESXi 5.x/6.x C(<timestamp>| <thread>| <level>: )
    with any thread name (C(vcpu-0), C(vmx), ...) and a level tag such as C(I120) or C(I125) or none
    (C(<timestamp>| <thread>| )); ESXi 7.x/8.x C(<timestamp> <level> <thread> - ) with a level such as V(In(05\));
    either optionally preceded by C(<file>.log:) as in C(grep) output over several files. A line with the message
    but any other prefix is still counted, without a timestamp (RV(stuns[].format=other)).'
author:
  - irisops.backup maintainers (@irisops)
options:
  paths:
    description:
      - Log files, folders holding them, or glob patterns, on the host the module runs on.
      - A folder contributes its C(vmware.log), C(vmware-N.log) and their C(.gz) forms. Gzip files are recognised by
        their content, whatever their name.
      - The module fails when an entry names no readable file.
    type: list
    elements: path
    required: true
    aliases: [path, src]
  qos_timeout_ms:
    description:
      - Mirror QoS timeout in milliseconds to judge the stuns against.
      - Take it from M(irisops.backup.iris_instance_info) run on the database host
        (RV(irisops.backup.iris_instance_info#module:instances[].mirror_qos_timeout_ms)), see the examples.
      - Without it and without O(instance), the IRIS default of 8000 ms is used.
    type: int
  instance:
    description:
      - Name of an IRIS or Cache instance on the host the module runs on (when the log files are on the database
        host itself). Its mirror QoS timeout is read from its CPF with the discovery of
        M(irisops.backup.iris_instance_info) (C(iris qlist), C(ccontrol qlist), CPF; no session is opened).
      - When the instance is not a mirror member, or its CPF does not give a QoS timeout, the IRIS default is used and
        RV(qos_timeout_source) says so.
      - Mutually exclusive with O(qos_timeout_ms).
    type: str
  fail_on_risk:
    description:
      - Fail when any stun is at or above half the QoS timeout (verdict V(risk) or V(exceeds_qos)). The result keeps
        all the fields.
      - With V(false) such stuns only produce a warning and RV(risk_message).
    type: bool
    default: false
extends_documentation_fragment:
  - irisops.backup.iris.info_module
notes:
  - Stun times are logged by ESXi 5.0 and later in the C(vmware.log) of each VM, in the VM's folder on the datastore.
    Two groups per snapshot backup are normal, one at snapshot creation and one (per disk) at consolidation.
  - 'The 95th percentile uses the nearest-rank method: the smallest stun such that 95% of the stuns are not longer.'
  - How to fetch the log files and how to read the verdict - C(docs/mirroring.md) in the collection.
seealso:
  - module: irisops.backup.iris_instance_info
"""

EXAMPLES = r"""
# The logs were downloaded to the control node (see docs/mirroring.md); the QoS timeout comes from the database host.
- name: Mirror facts of the database VM
  irisops.backup.iris_instance_info:
    name: IRIS
    check_frozen: false
  register: iris
  delegate_to: db1

- name: Stun times of db1 against its QoS timeout
  irisops.backup.vmware_stun_info:
    paths: /srv/vmlogs/db1/
    qos_timeout_ms: "{{ iris.instances[0].mirror_qos_timeout_ms | default(8000, true) }}"
  delegate_to: localhost
  register: stun

- name: Show the verdict
  ansible.builtin.debug:
    msg: "{{ stun.verdict }}: {{ stun.count }} stuns, longest {{ stun.max_seconds }} s, p95 {{ stun.p95_seconds }} s"

# Fail the play (for example a monthly check job) when a stun reaches half the QoS timeout.
- name: Stun check with the IRIS default QoS timeout (8000 ms)
  irisops.backup.vmware_stun_info:
    paths:
      - /srv/vmlogs/db1/vmware.log
      - /srv/vmlogs/db1/vmware-*.log.gz
    fail_on_risk: true
  delegate_to: localhost

# Logs copied to the database host itself: take the QoS timeout of the local instance.
- name: Stun check against the instance's own QoS timeout
  irisops.backup.vmware_stun_info:
    paths: /var/tmp/vmlogs
    instance: IRIS
"""

RETURN = r"""
stuns:
  description: Every stun found, oldest first (stuns without a timestamp last, in file order).
  returned: always
  type: list
  elements: dict
  contains:
    timestamp:
      description: Timestamp as written in the log (ISO 8601, usually UTC with C(Z)); null when the line prefix was
        not recognised.
      type: str
      sample: '2017-01-04T21:30:19.662Z'
    us:
      description: Stun duration in microseconds, as logged.
      type: int
      sample: 1091706
    seconds:
      description: Stun duration in seconds.
      type: float
      sample: 1.091706
    thread:
      description: Thread field of the line (for example V(vcpu-0) or V(vmx)).
      type: str
    level:
      description: Level tag of the line (for example V(I125) or V(In(05\))), null when there is none.
      type: str
    format:
      description: V(pipe) (ESXi 5.x/6.x), V(level) (ESXi 7.x/8.x) or V(other) (prefix not recognised).
      type: str
    file:
      description: Log file the line was read from.
      type: str
    line:
      description: Line number in that file.
      type: int
count:
  description: Number of stuns found.
  returned: always
  type: int
  sample: 7
max_us:
  description: Longest stun in microseconds, null when none was found.
  returned: always
  type: int
  sample: 1091706
max_seconds:
  description: Longest stun in seconds, null when none was found.
  returned: always
  type: float
  sample: 1.091706
p95_us:
  description: 95th percentile (nearest rank) of the stuns in microseconds, null when none was found.
  returned: always
  type: int
p95_seconds:
  description: 95th percentile (nearest rank) in seconds, null when none was found.
  returned: always
  type: float
worst:
  description: The longest stun (same keys as the elements of RV(stuns)), null when none was found.
  returned: always
  type: dict
qos_timeout_ms:
  description: The QoS timeout the stuns were judged against, in milliseconds.
  returned: always
  type: int
  sample: 8000
qos_timeout_source:
  description: Where RV(qos_timeout_ms) comes from - V(option), C(instance <NAME> (CPF [Mirrors])), or C(default ...)
    with the reason.
  returned: always
  type: str
  sample: default (IRIS default mirror QoS timeout)
risk_threshold_ms:
  description: Half of RV(qos_timeout_ms); a stun at or above it is a risk.
  returned: always
  type: float
  sample: 4000
at_risk:
  description: The stuns at or above RV(risk_threshold_ms) (same keys as the elements of RV(stuns)).
  returned: always
  type: list
  elements: dict
at_risk_count:
  description: Number of elements in RV(at_risk).
  returned: always
  type: int
risk:
  description: Whether any stun is at or above half the QoS timeout.
  returned: always
  type: bool
verdict:
  description:
    - V(ok) - every stun is below half the QoS timeout.
    - V(risk) - at least one stun is at or above half the QoS timeout; on an idle mirror the backup failover member
      can take over.
    - V(exceeds_qos) - at least one stun is at or above the whole QoS timeout; a failover is to be expected.
    - V(no_stuns) - no C(Checkpoint_Unstun) line in the files (wrong files, or no snapshot since the log rotated).
  returned: always
  type: str
  sample: ok
risk_message:
  description: The warning given when RV(risk) is true, null otherwise.
  returned: always
  type: str
files:
  description: The files read, with the number of stuns found in each.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: File path.
      type: str
    count:
      description: Stuns found in it.
      type: int
instance:
  description: The instance named in O(instance) - C(name), C(mirror_member), C(mirror_member_type), C(mirror_status),
    C(mirror_qos_timeout_ms) as reported by M(irisops.backup.iris_instance_info); null without O(instance).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.irisops.backup.plugins.module_utils import _iris, _vmware

NEXT_STEPS = ('Next: take backups when the database is quiet, never include VM memory in backup snapshots, check the '
              'datastore latency during consolidation, or snapshot a non-primary member (docs/mirroring.md); do not '
              'simply raise the QoS timeout')


def _qos_from_instance(module, name):
    """(qos_ms, source, instance facts) of a local instance, through the discovery of iris_instance_info."""
    instances, discovery_errors = _iris.discover_instances()
    inst = _iris.find_instance(instances, name)
    if inst is None:
        module.fail_json(msg='unknown instance %r (known: %s)' % (
            name, ', '.join(i['name'] for i in instances) or 'none found by iris/ccontrol qlist'),
            discovery_errors=discovery_errors)
    keys = ('name', 'mirror_member', 'mirror_member_type', 'mirror_status', 'mirror_qos_timeout_ms')
    facts = dict((k, inst.get(k)) for k in keys)
    facts['mirror_member'] = bool(inst.get('mirror_member') or inst.get('mirror_member_type'))
    qos = inst.get('mirror_qos_timeout_ms')
    if qos:
        return qos, 'instance %s (CPF [Mirrors])' % inst['name'], facts
    if not facts['mirror_member']:
        return (_vmware.DEFAULT_QOS_TIMEOUT_MS, 'default (instance %s is not a mirror member)' % inst['name'], facts)
    module.warn('instance %s is a mirror member but its CPF (%s) gives no QoS timeout; the stuns are judged against '
                'the IRIS default of %d ms' % (inst['name'], inst.get('cpf_path'), _vmware.DEFAULT_QOS_TIMEOUT_MS))
    return (_vmware.DEFAULT_QOS_TIMEOUT_MS, 'default (no QoS timeout in the CPF of instance %s)' % inst['name'], facts)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type='list', elements='path', required=True, aliases=['path', 'src']),
            qos_timeout_ms=dict(type='int'),
            instance=dict(type='str'),
            fail_on_risk=dict(type='bool', default=False),
        ),
        mutually_exclusive=[('qos_timeout_ms', 'instance')],
        supports_check_mode=True,
    )
    p = module.params

    instance = None
    if p['qos_timeout_ms'] is not None:
        if p['qos_timeout_ms'] <= 0:
            module.fail_json(msg='qos_timeout_ms must be a positive number of milliseconds (got %d); pass the '
                                 'mirror_qos_timeout_ms of iris_instance_info, or leave it out for the IRIS default'
                                 % p['qos_timeout_ms'])
        qos, source = p['qos_timeout_ms'], 'option'
    elif p['instance']:
        qos, source, instance = _qos_from_instance(module, p['instance'])
    else:
        qos, source = _vmware.DEFAULT_QOS_TIMEOUT_MS, 'default (IRIS default mirror QoS timeout)'

    try:
        result = _vmware.analyse(p['paths'], qos)
    except _vmware.StunLogError as exc:
        module.fail_json(msg='cannot read the VMware logs: %s' % exc, qos_timeout_ms=qos, qos_timeout_source=source)

    result.update(qos_timeout_source=source, instance=instance, risk_message=None, changed=False)
    if result['verdict'] == _vmware.VERDICT_NO_STUNS:
        module.warn('no "Checkpoint_Unstun: vm stopped for N us" line in %s: these are not the logs of a VM that had a '
                    'snapshot or vMotion since they were rotated, or the lines have a form this module does not know'
                    % ', '.join(f['path'] for f in result['files']))
    elif result['risk']:
        what = ('longer than the whole QoS timeout: a mirror failover is to be expected'
                if result['verdict'] == _vmware.VERDICT_EXCEEDS else
                'on an idle mirror the backup failover member can take over after just over half the QoS timeout')
        result['risk_message'] = 'VM stun at risk of a mirror failover: %s; %s' % (_vmware.describe(result), what)
        if p['fail_on_risk']:
            result['msg'] = '%s. %s' % (result['risk_message'], NEXT_STEPS)
            module.fail_json(**result)
        module.warn(result['risk_message'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
