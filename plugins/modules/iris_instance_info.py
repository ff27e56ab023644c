#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: iris_instance_info
short_description: Discover IRIS/Cache instances and freeze state
version_added: 0.1.0
description:
  - Lists the instances reported by C(iris qlist) and C(ccontrol qlist) with all thirteen qlist fields, the owner and
    manager users from C(parameters.isc), and the database directories, journal directories, journal purge settings
    and mirror QoS timeout from the CPF.
  - For running instances it also queries the C(Backup.General) class method C(IsWDSuspendedExt) to report whether the
    instance is frozen (write daemon suspended). Instances that are not running are not queried.
  - Never changes anything.
author:
  - irisops.backup maintainers (@irisops)
extends_documentation_fragment:
  - irisops.backup.iris
  - irisops.backup.iris.info_module
  - irisops.backup.iris.action_group
options:
  name:
    description:
      - Only report this instance (case-insensitive). Fails, listing the known instances, when it does not exist.
      - By default every instance is reported.
    type: str
    aliases: [instance]
  check_frozen:
    description:
      - Query C(IsWDSuspendedExt) on running instances. Set to V(false) (with O(check_mirror=false)) to avoid
        opening a session at all.
    type: bool
    default: true
  check_mirror:
    description:
      - On running mirror members, query how far the member is behind the primary
        (C(SYS.Mirror.DistanceFromPrimaryJournalFiles) and C(DistanceFromPrimaryDatabases)), which the filter
        P(irisops.backup.mirror_backup_plan#filter) uses to tell whether a member is caught up.
      - Instances that are not mirror members, or not running, are not queried.
    type: bool
    default: true
    version_added: 0.2.0
seealso:
  - module: irisops.backup.iris_freeze
  - module: irisops.backup.iris_thaw
"""

EXAMPLES = r"""
- name: Gather all instances
  irisops.backup.iris_instance_info:
  register: iris

- name: Fail if any running instance is frozen
  ansible.builtin.assert:
    that: iris.instances | selectattr('frozen', 'true') | list | length == 0

- name: One instance, without opening a session
  irisops.backup.iris_instance_info:
    name: CACHE
    check_frozen: false
"""

RETURN = r"""
instances:
  description: One entry per instance.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Instance name (qlist field 1).
      type: str
      sample: IRIS
    flavour:
      description: V(iris) or V(cache).
      type: str
      sample: iris
    install_dir:
      description: Installation directory (qlist field 2), without a trailing slash.
      type: str
      sample: /usr/irissys
    version:
      description: Version (qlist field 3).
      type: str
      sample: 2024.1.0.267.2
    status_raw:
      description: Status field as printed by qlist (field 4).
      type: str
      sample: running, since Fri Mar  1 02:00:00 2024
    status:
      description: Normalised status, V(running), V(sign-on inhibited), V(down), V(crashed), V(in use by another node)
        or V(unknown).
      type: str
      sample: running
    status_detail:
      description: Rest of the status, for example V(primary transition) or C(on node ? [cache.ids missing]).
      type: str
    since:
      description: Start time of a running instance, as printed by qlist.
      type: str
    last_used:
      description: Last-used time of a down instance, as printed by qlist.
      type: str
    up:
      description: The instance is up (running or sign-on inhibited).
      type: bool
    ready:
      description: The instance is running and sessions can be opened.
      type: bool
    cpf_file:
      description: CPF file name (qlist field 5).
      type: str
      sample: iris.cpf
    cpf_path:
      description: Full path of the CPF read.
      type: str
      sample: /usr/irissys/iris.cpf
    superserver_port:
      description: Superserver port (qlist field 6).
      type: int
      sample: 1972
    webserver_port:
      description: Private web server port (qlist field 7).
      type: int
    jdbc_port:
      description: JDBC gateway port (qlist field 8).
      type: int
    state:
      description: Health state V(ok), V(warn) or V(alert) (qlist field 9, empty on old versions).
      type: str
    product:
      description: Product name (qlist field 10, empty for Cache).
      type: str
    mirror_member_type:
      description: Mirror member type (qlist field 11), for example V(Failover) or V(Disaster Recovery).
      type: str
    mirror_status:
      description: Mirror status (qlist field 12), for example V(Primary), V(Backup), V(Connected).
      type: str
    mirror_member:
      description: Whether the instance is a mirror member.
      type: bool
    data_dir:
      description: Durable data directory (qlist field 13), empty when the same as RV(instances[].install_dir).
      type: str
    manager_user:
      description: C(security_settings.manager_user) from C(parameters.isc).
      type: str
      sample: irisowner
    manager_group:
      description: C(security_settings.manager_group) from C(parameters.isc).
      type: str
    owner_user:
      description: Instance owner (C(security_settings.iris_user) or C(security_settings.cache_user)).
      type: str
    owner_group:
      description: Instance owner group.
      type: str
    databases:
      description: Database name to directory, from the CPF C([Databases]) section.
      type: dict
    database_dirs:
      description: Sorted local database directories.
      type: list
      elements: str
    journal_dirs:
      description: Journal directories (current and alternate) from the CPF.
      type: list
      elements: str
    backups_before_purge:
      description: C(BackupsBeforePurge) from the CPF C([Journal]) section.
      type: int
    days_before_purge:
      description: C(DaysBeforePurge) from the CPF C([Journal]) section.
      type: int
    mirror_qos_timeout_ms:
      description: Mirror QoS timeout in milliseconds from the CPF C([Mirrors]) section, null when not mirrored.
      type: int
    mirror_name:
      description: The mirror set's name (the key of the CPF C([Mirrors]) entry), null when not mirrored.
      type: str
      version_added: 0.2.0
    mirror_journal_distance:
      description: C(SYS.Mirror.DistanceFromPrimaryJournalFiles()) of a running mirror member (1 when there is no
        lag), null when not queried or when the query failed.
      type: int
      version_added: 0.2.0
    mirror_database_distance:
      description: C(SYS.Mirror.DistanceFromPrimaryDatabases()), like C(mirror_journal_distance).
      type: int
      version_added: 0.2.0
    mirror_error:
      description: Why the mirror distances could not be read, when the query failed.
      type: str
      version_added: 0.2.0
    wij_dir:
      description: WIJ directory from the CPF C([config]) section, when set.
      type: str
    frozen:
      description: V(true) when IsWDSuspendedExt reports the write daemon suspended (exit 5), V(false) when not (exit 3),
        null when not queried (instance not running, or O(check_frozen=false)) or when the query failed.
      type: bool
    frozen_error:
      description: Why RV(instances[].frozen) could not be determined, when the query failed.
      type: str
    deadman:
      description: The dead-man switch armed by M(irisops.backup.iris_freeze) for this instance, from its state file
        in C(/run/irisops/deadman/) (V(armed=false) when none).
      type: dict
      contains:
        armed:
          description: Whether a switch is armed.
          type: bool
        mechanism:
          description: V(systemd) or V(process).
          type: str
        fires_at:
          description: UTC time (ISO 8601) at which it thaws the instance if still frozen.
          type: str
    discovery_warnings:
      description: Files that could not be read.
      type: list
      elements: str
discovery_errors:
  description: Errors from C(iris qlist) / C(ccontrol qlist).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.irisops.backup.plugins.module_utils import _freeze
from ansible_collections.irisops.backup.plugins.module_utils import _iris


def main():
    argument_spec = _iris.common_argument_spec()
    argument_spec.update(
        name=dict(type='str', aliases=['instance']),
        check_frozen=dict(type='bool', default=True),
        check_mirror=dict(type='bool', default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params

    errors = _iris.validate_common(p)
    if errors:
        module.fail_json(msg='; '.join(errors))

    instances, discovery_errors = _iris.discover_instances()
    if p['name']:
        inst = _iris.find_instance(instances, p['name'])
        if inst is None:
            module.fail_json(msg='unknown instance %r (known: %s)' % (
                p['name'], ', '.join(i['name'] for i in instances) or 'none found by iris/ccontrol qlist'),
                discovery_errors=discovery_errors, instances=[])
        instances = [inst]

    out = []
    for inst in instances:
        entry = _iris.public_instance(inst)
        entry['frozen'] = None
        entry['frozen_error'] = None
        entry['deadman'] = _freeze.deadman_status(inst['name'])
        if p['check_frozen'] and inst.get('ready'):
            run_as = p['run_as'] or _iris.default_run_as(inst)
            err = _iris.check_run_as(run_as)
            if err:
                entry['frozen_error'] = 'cannot run sessions as %s: %s' % (run_as, err)
            else:
                state = _iris.is_frozen(None, inst, run_as=p['run_as'], username=p['username'],
                                        password=p['password'], timeout=p['timeout'])
                entry['frozen'] = state['frozen']
                if state['failed']:
                    entry['frozen_error'] = state['msg']
        entry.update(mirror_journal_distance=None, mirror_database_distance=None, mirror_error=None)
        if p['check_mirror'] and inst.get('ready') and inst.get('mirror_member'):
            run_as = p['run_as'] or _iris.default_run_as(inst)
            err = _iris.check_run_as(run_as)
            if err:
                entry['mirror_error'] = 'cannot run sessions as %s: %s' % (run_as, err)
            else:
                (entry['mirror_journal_distance'], entry['mirror_database_distance'],
                 entry['mirror_error']) = _iris.mirror_lag(inst, run_as=run_as, username=p['username'],
                                                           password=p['password'], timeout=p['timeout'])
        out.append(entry)
    module.exit_json(changed=False, instances=out, discovery_errors=discovery_errors)


if __name__ == '__main__':
    main()
