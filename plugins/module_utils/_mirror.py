# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which member of each mirror set a fleet-wide backup freezes.

A mirror set spans hosts, so this choice is made once for the fleet, on the controller (the filter
``irisops.backup.mirror_backup_plan`` in ``playbooks/mirror_plan.yml``), from what ``iris_instance_info`` reported on
every host.  Pure: no IRIS, no I/O.  The rule (docs/mirroring.md): never freeze the primary unless told to; back up
the backup failover member when it runs and has caught up; fall back, per ``fallback``, to a caught-up DR async member
and then (only with ``fallback=primary``) to the primary.  Instances that are not mirror members are always backed
up by their own host.  When a mirror set has no member the policy allows, the plan has an error for it, and the
playbook stops before anything is frozen anywhere.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

#: ``fallback`` values, from the strictest: only the backup failover member; then a DR async member; then the primary.
FALLBACKS = ('fail', 'async', 'primary')
DEFAULT_FALLBACK = 'async'

#: ``mirror_status`` (qlist field 12) of each role, compared without regard to case.  The reference confirms
#: Primary / Backup / Connected (GetStatus: PRIMARY | BACKUP | CONNECTED); any other value (a member catching up,
#: stopped, in transition) makes the member unusable here.  See docs/unconfirmed.md.
STATUS_PRIMARY = 'primary'
STATUS_BACKUP = 'backup'
STATUS_CONNECTED = 'connected'
#: ``mirror_member_type`` (qlist field 11) values.  Reporting async members are never chosen: a read-write one may
#: hold local changes, and the rule names DR async members only.
TYPE_FAILOVER = 'failover'
TYPE_DR = 'disaster recovery'

#: A member is caught up when SYS.Mirror.DistanceFromPrimaryJournalFiles() is at most this.  The reference gives
#: "1 when no lag" and nothing about other values (UNCONFIRMED, docs/unconfirmed.md).
CAUGHT_UP_MAX_DISTANCE = 1


def _low(value):
    return (value or '').strip().lower()


def role_of(inst):
    """'primary', 'backup' (failover backup member), 'async' (DR async), 'reporting' or 'other' (any other state)."""
    mtype, status = _low(inst.get('mirror_member_type')), _low(inst.get('mirror_status'))
    if status == STATUS_PRIMARY:
        return 'primary'
    if mtype == TYPE_FAILOVER:
        return 'backup' if status == STATUS_BACKUP else 'other'
    if mtype == TYPE_DR:
        return 'async' if status == STATUS_CONNECTED else 'other'
    return 'reporting' if status == STATUS_CONNECTED else 'other'


def why_not_usable(inst, role):
    """None when the member can be frozen for a backup of its set, else why not (one short phrase)."""
    if not inst.get('ready'):
        return 'not running (%s)' % (inst.get('status_raw') or inst.get('status') or 'down')
    if role == 'primary':
        return None
    if role in ('other', 'reporting'):
        return 'mirror status %r of a %s member is not one a backup is taken from' % (
            inst.get('mirror_status') or '', inst.get('mirror_member_type') or '?')
    dist = inst.get('mirror_journal_distance')
    if dist is None:
        return 'lag unknown (%s)' % (inst.get('mirror_error') or 'not queried: iris_instance_info check_mirror=false')
    if dist > CAUGHT_UP_MAX_DISTANCE:
        return 'not caught up (DistanceFromPrimaryJournalFiles %d, more than %d)' % (dist, CAUGHT_UP_MAX_DISTANCE)
    return None


def member_state(m, chosen, fallback):
    """One member's line in the report: chosen, why it cannot be, or why it was not needed."""
    if m is chosen:
        return 'chosen'
    if m['why_not']:
        return m['why_not']
    if m['role'] == 'primary' and fallback != 'primary':
        return 'not frozen: the primary (only with fallback=primary)'
    if m['role'] == 'async' and fallback == 'fail':
        return 'not frozen: a DR async member (only with fallback=async or primary)'
    return 'usable, not needed'


def plan(hosts, fallback=DEFAULT_FALLBACK):
    """``hosts``: ``{host: [instance entries of iris_instance_info]}``.  Returns ``{'instances': {host: [names to back
    up]}, 'skipped': {host: [{'instance', 'mirror', 'why'}]}, 'mirrors': [{'mirror', 'chosen', 'why', 'members'}],
    'errors': [...], 'report': [lines]}``; every host of ``hosts`` is a key of ``instances`` and ``skipped``."""
    if fallback not in FALLBACKS:
        raise ValueError('fallback must be one of %s, not %r' % (', '.join(FALLBACKS), fallback))
    instances = dict((h, []) for h in hosts)
    skipped = dict((h, []) for h in hosts)
    sets = {}
    for host in sorted(hosts):
        for inst in hosts[host] or []:
            if not inst.get('mirror_member_type'):
                instances[host].append(inst['name'])
                continue
            name = inst.get('mirror_name') or '(unnamed mirror of %s)' % inst['name']
            sets.setdefault(name, []).append((host, inst))
    order = ['backup', 'async', 'primary'][:FALLBACKS.index(fallback) + 1]
    mirrors, errors, report = [], [], []
    for name in sorted(sets):
        members = []
        for host, inst in sets[name]:
            role = role_of(inst)
            members.append({'host': host, 'instance': inst['name'], 'role': role,
                            'mirror_status': inst.get('mirror_status'),
                            'journal_distance': inst.get('mirror_journal_distance'),
                            'why_not': why_not_usable(inst, role)})
        chosen = None
        for wanted in order:
            usable = [m for m in members if m['role'] == wanted and m['why_not'] is None]
            if usable:
                chosen = usable[0]
                break
        described = '; '.join('%s on %s: %s, %s' % (m['instance'], m['host'], m['role'], member_state(m, chosen, fallback))
                              for m in members)
        if chosen is None:
            why = ('mirror set %s: no member to back up with mirror fallback=%s (tried %s; members: %s). Next: start '
                   'or wait for the backup failover member to catch up%s' % (
                       name, fallback, ', then '.join(order), described,
                       '' if fallback == 'primary' else ', or allow a fallback (%s)' % ', '.join(
                           'fallback=%s' % f for f in FALLBACKS[FALLBACKS.index(fallback) + 1:])))
            errors.append(why)
        else:
            why = {'backup': 'the backup failover member, caught up',
                   'async': 'a DR async member, caught up: the backup failover member is not usable',
                   'primary': 'the primary (fallback=primary): no backup failover or DR async member is usable'
                   }[chosen['role']]
            instances[chosen['host']].append(chosen['instance'])
        for m in members:
            if m is not chosen:
                skipped[m['host']].append({'instance': m['instance'], 'mirror': name, 'why': (
                    'not backed up: the set is backed up from %s on %s' % (chosen['instance'], chosen['host'])
                    if chosen else 'not backed up: ' + why)})
        mirrors.append({'mirror': name, 'chosen': dict(chosen) if chosen else None, 'why': why, 'members': members})
        report.append('mirror %s: %s' % (name, ('back up %s on %s (%s)' % (chosen['instance'], chosen['host'], why))
                                         if chosen else 'NOTHING backed up: ' + why))
        for m in members:
            report.append('  %-14s %-10s %-8s %s' % (m['host'], m['instance'], m['role'],
                                                     member_state(m, chosen, fallback)))
    for host in hosts:      # in the order iris_instance_info listed them
        listed = [i['name'] for i in hosts[host] or []]
        instances[host].sort(key=listed.index)
    for host in sorted(hosts):
        mirrored = set(c['chosen']['instance'] for c in mirrors if c['chosen'] and c['chosen']['host'] == host)
        plain = [n for n in instances[host] if n not in mirrored]
        if plain:
            report.append('%s: %s (not mirrored)' % (host, ', '.join(plain)))
    return {'instances': instances, 'skipped': skipped, 'mirrors': mirrors, 'errors': errors, 'report': report,
            'fallback': fallback}
