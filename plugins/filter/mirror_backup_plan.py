# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: mirror_backup_plan
short_description: Choose which member of each IRIS mirror set a fleet backup freezes
version_added: 0.2.0
description:
  - From the M(irisops.backup.iris_instance_info) results of every host, returns which instances each host backs up.
  - Instances that are not mirror members are always backed up by their host.
  - For each mirror set (members share C(mirror_name)) exactly one member is chosen, never the primary unless
    O(fallback=primary) and no other member is usable; the backup failover member when it runs and has caught up
    (C(mirror_journal_distance) at most 1), else, with O(fallback=async) or V(primary), a caught-up DR async
    member.
  - A set with no usable member is an error in RV(_value.errors); C(playbooks/mirror_plan.yml) then stops before
    anything is frozen on any host.
  - The choice is made at run time from the roles the members have then, so it follows a failover.
author:
  - irisops.backup maintainers (@irisops)
options:
  _input:
    description: C(hostvars).
    type: dict
    required: true
  hosts:
    description: The hosts to plan for (for example C(groups['iris_servers']) or C(ansible_play_hosts_all)).
    type: list
    elements: str
    required: true
  info:
    description: The name of the variable each host registered the M(irisops.backup.iris_instance_info) result in.
    type: str
    default: iris_info
  fallback:
    description:
      - V(fail) backs up only the backup failover member; V(async) falls back to a DR async member;
        V(primary) then falls back to the primary (its freeze is bounded below C(ExternalFreezeTimeOut)).
    type: str
    default: async
    choices: [fail, async, primary]
seealso:
  - module: irisops.backup.iris_instance_info
  - ref: ansible_collections.irisops.backup.docsite.mirroring
    description: Mirroring, the QoS timeout and which member to back up.
"""

EXAMPLES = r"""
- name: Choose the members to back up
  ansible.builtin.set_fact:
    mirror_plan: "{{ hostvars | irisops.backup.mirror_backup_plan(ansible_play_hosts_all, fallback='async') }}"
  run_once: true

- name: Back up only the chosen instances of this host
  ansible.builtin.debug:
    msg: "{{ mirror_plan.instances[inventory_hostname] }}"
"""

RETURN = r"""
_value:
  description: The plan.
  type: dict
  contains:
    instances:
      description: Host name -> the instance names it backs up (empty list when none).
      type: dict
    skipped:
      description: Host name -> mirror members it does not back up, each with C(instance), C(mirror) and C(why).
      type: dict
    mirrors:
      description: One entry per mirror set, with C(mirror), C(chosen) (C(host), C(instance), C(role), or null),
        C(why) and C(members) (each with C(role) and C(why_not), null when usable).
      type: list
      elements: dict
    errors:
      description: One message per mirror set with no usable member, and per host without an
        M(irisops.backup.iris_instance_info) result; empty when the plan can be run.
      type: list
      elements: str
    report:
      description: Readable lines, one per set and member.
      type: list
      elements: str
    fallback:
      description: The fallback used.
      type: str
"""

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.irisops.backup.plugins.module_utils import _mirror


def mirror_backup_plan(hostvars, hosts, info='iris_info', fallback=_mirror.DEFAULT_FALLBACK):
    if fallback not in _mirror.FALLBACKS:
        raise AnsibleFilterError('mirror_backup_plan: fallback must be one of %s, not %r' % (
            ', '.join(_mirror.FALLBACKS), fallback))
    found, missing = {}, []
    for host in hosts:
        try:
            result = hostvars[host].get(info)
        except (KeyError, AttributeError) as exc:
            raise AnsibleFilterError('mirror_backup_plan: no hostvars for %s: %s' % (host, to_native(exc)))
        if not result or result.get('failed') or 'instances' not in result:
            missing.append('host %s: no iris_instance_info result in %s (%s). Next: run the plan on every member of the '
                           'mirror sets, or leave the unreachable host out of the inventory limit' % (
                               host, info, to_native((result or {}).get('msg') or 'unreachable or not run')))
            continue
        found[host] = list(result['instances'])
    res = _mirror.plan(found, fallback=fallback)
    for host in hosts:
        res['instances'].setdefault(host, [])
        res['skipped'].setdefault(host, [])
    res['errors'] = missing + res['errors']
    return res


class FilterModule(object):
    def filters(self):
        return {'mirror_backup_plan': mirror_backup_plan}
