# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
#
# Standard library only, no ansible import (irisops-backup runs a verbatim copy next to the other engine files).
"""The LVM snapshot set of an IRIS freeze: which logical volumes hold the selected instances' data, the plan
(sizes, free space, leftovers), the freeze window's steps (``together`` or ``staggered``), each ``lvcreate`` inside
the window (bounded: the freeze engine thaws first when one runs over), and the removal of a run's snapshots.

Used by the module ``iris_lvm_snapshot`` and by the backup engine (``irisops-backup run``); the freeze itself is
``_freeze.FreezeEngine.window``.
"""

from __future__ import absolute_import, division, print_function

import os

try:
    from ansible_collections.irisops.backup.plugins.module_utils import _freeze
    from ansible_collections.irisops.backup.plugins.module_utils import _iris
    from ansible_collections.irisops.backup.plugins.module_utils import _lvm
except ImportError:  # an on-host copy: the engine files side by side
    import _freeze  # pylint: disable=import-error
    import _iris  # pylint: disable=import-error
    import _lvm  # pylint: disable=import-error

__metaclass__ = type

#: Options of a snapshot set, with their defaults (the module's argument spec and irisops-backup's configuration).
SNAPSET_DEFAULTS = dict(
    volumes=(), size='20%ORIGIN', suffix=_lvm.DEFAULT_SUFFIX, existing='fail', unmapped_directories='fail',
    include_install_dir=True, mirror_primary='fail', freeze_mode='together', lvm_timeout=120,
)
MIRROR_PRIMARY_STATUS = 'primary'


def staggered_steps(names, plan_instances):
    """The freeze window of freeze_mode=staggered as steps ``('freeze', [names])``, ``('snap', plan)``,
    ``('thaw', [names])``.

    ``names``: the instances in the order given; ``plan_instances``: ``(plan, [instance names])`` per snapshot (no
    names: a volume given through ``volumes``, taken while every instance is frozen).  Each snapshot is taken while
    every instance it belongs to is frozen, and each instance is frozen once.  Instances that share no volume are
    frozen, snapshotted and thawed one after the other.  Of the ones that share volumes, the first half (by their
    own snapshots) is frozen one by one, each followed by its own snapshots, the second half is frozen right
    before the shared snapshots; the first half is thawed right after them, and each of the second half after its
    own snapshots.  The longest window is then about half of the instances' own snapshots plus the shared ones,
    instead of all of them.
    """
    owners = [(plan, list(insts) or list(names)) for plan, insts in plan_instances]
    own = dict((n, [p for p, o in owners if o == [n]]) for n in names)
    shared = [p for p, o in owners if len(o) > 1]
    sharing = set(n for p, o in owners if len(o) > 1 for n in o)
    steps = []
    for n in names:
        if n not in sharing:
            steps += [('freeze', [n])] + [('snap', p) for p in own[n]] + [('thaw', [n])]
    group = [n for n in names if n in sharing]
    if not group:
        return steps
    # the first half: the shortest prefix that holds at least half of the group's own snapshots
    total, first = sum(len(own[n]) for n in group), []
    for n in group:
        if first and 2 * sum(len(own[m]) for m in first) >= total:
            break
        first.append(n)
    second = group[len(first):]
    for n in first:
        steps += [('freeze', [n])] + [('snap', p) for p in own[n]]
    if second:
        steps.append(('freeze', second))
    steps += [('snap', p) for p in shared]
    steps.append(('thaw', first))
    for n in second:
        steps += [('snap', p) for p in own[n]] + [('thaw', [n])]
    return steps


def validate_options(p, eft, budget, deadman_seconds):
    """``(errors, warnings)`` of the freeze and snapshot options before anything is looked at on the host."""
    errors = _iris.validate_common(p)
    warnings = []
    for key in ('external_freeze_timeout', 'max_freeze_seconds', 'wd_suspend_limit', 'lvm_timeout'):
        if p.get(key) is not None and p[key] <= 0:
            errors.append('%s must be a positive number of seconds' % key)
    if p.get('deadman_timeout') is not None and p['deadman_timeout'] < 0:
        errors.append('deadman_timeout must be 0 (disabled) or a positive number of seconds')
    elif deadman_seconds == 0:
        warnings.append('deadman_timeout=0: no dead-man switch; if this process is killed between the freeze and the '
                        'thaw, the instances stay frozen and block users after ExternalFreezeTimeOut (%d s)' % eft)
    elif deadman_seconds >= eft:
        warnings.append('deadman_timeout=%d is not below ExternalFreezeTimeOut (%d s): users may hang before the '
                        'dead-man switch thaws the instance' % (deadman_seconds, eft))
    if p.get('text') is not None:
        try:
            _iris.objectscript_string(p['text'])
        except ValueError as exc:
            errors.append('text: %s' % exc)
    if p.get('max_freeze_seconds') and p['max_freeze_seconds'] >= eft:
        errors.append('max_freeze_seconds (%d) must be below ExternalFreezeTimeOut (%d s): after that IRIS pauses '
                      'all processes, not only database writes' % (p['max_freeze_seconds'], eft))
    if p.get('wd_suspend_limit') and p['wd_suspend_limit'] <= budget:
        warnings.append('wd_suspend_limit (%d s) is not above the freeze budget (%d s): IRIS may resume the write '
                        'daemon while snapshots are still being created, and such a backup is not consistent'
                        % (p['wd_suspend_limit'], budget))
    reason = _lvm.validate_lv_name('x' + p['suffix'])
    if reason:
        errors.append('suffix %r: %s' % (p['suffix'], reason))
    try:
        _lvm.parse_size(p['size'])
    except _lvm.SizeError as exc:
        errors.append(exc.msg)
    return errors, warnings


def new_instance_entry(inst):
    return dict(action=None, flavour=inst.get('flavour'), mirror_member_type=inst.get('mirror_member_type') or '',
                mirror_status=inst.get('mirror_status') or '', directories={}, journal_file=None, not_journalled=[],
                frozen_ms=None, freeze_call_ms=None, thaw_call_ms=None, thawed_by=None, msg='')


def apply_mirror_policy(instances, policy, budget, eft, entries, problems, warnings):
    """The instances to freeze under the mirror-primary ``policy`` (fail, skip, freeze); fills ``entries``
    (name -> result entry), ``problems`` and ``warnings``."""
    selected = []
    for inst in instances:
        entry = entries.setdefault(inst['name'], new_instance_entry(inst))
        mtype, mstatus = entry['mirror_member_type'], entry['mirror_status']
        if mstatus.strip().lower() == MIRROR_PRIMARY_STATUS:
            if policy == 'fail':
                problems.append(
                    'instance %s is the mirror primary (%s/%s) and mirror_primary=fail: back up the backup failover '
                    'member or a DR async member instead, or set mirror_primary=freeze (bounded by '
                    'max_freeze_seconds=%d below ExternalFreezeTimeOut=%d) or mirror_primary=skip'
                    % (inst['name'], mtype or '?', mstatus, budget, eft))
                entry['action'] = 'failed'
                continue
            if policy == 'skip':
                entry['action'] = 'skipped'
                entry['msg'] = 'mirror primary, skipped (mirror_primary=skip)'
                warnings.append('instance %s is the mirror primary and was skipped (mirror_primary=skip); it is NOT '
                                'in this backup' % inst['name'])
                continue
            warnings.append('instance %s is the mirror primary; its freeze is bounded by %d s (below '
                            'ExternalFreezeTimeOut %d s)' % (inst['name'], budget, eft))
        selected.append(inst)
    return selected


class SnapshotSet(object):
    """The snapshots of one run: ``preflight`` (map, plan, leftovers), ``steps`` for the freeze engine, ``create``
    (the engine's snapshot callback), ``cleanup`` (removes everything tagged with this run) and ``describe``."""

    def __init__(self, lvm, instances, options, run_id, entries):
        self.lvm = lvm
        self.instances = list(instances)
        self.p = dict(SNAPSET_DEFAULTS)
        self.p.update(dict((k, v) for k, v in options.items() if k in SNAPSET_DEFAULTS))
        self.run_id = run_id
        self.tags = [_lvm.SNAPSHOT_TAG, _lvm.run_tag(run_id)]
        self.entries = entries
        self.autoextend = None      # the host's LVM autoextend settings, read by the preflight
        self.problems = []
        self.warnings = []
        self.origins = {}       # (vg, lv) -> dict(request, instances, directories)
        self.order = []
        self.plans = []
        self.leftovers = []

    # -- preflight --------------------------------------------------------------------------------------------
    def map_volumes(self, lvs):
        """Build the snapshot requests: one per origin LV holding a directory of a selected instance, plus volumes."""
        origins, order = self.origins, self.order

        def add(vg, lv, size, name, instance=None, directory=None):
            key = (vg, lv)
            if key not in origins:
                origins[key] = dict(request=_lvm.SnapshotRequest(vg, lv, name or (lv + self.p['suffix']),
                                                                 str(size or self.p['size'])),
                                    instances=[], directories=[])
                order.append(key)
            ent = origins[key]
            if instance and instance not in ent['instances']:
                ent['instances'].append(instance)
            if directory and directory not in ent['directories']:
                ent['directories'].append(directory)
            return ent

        for inst in self.instances:
            entry = self.entries[inst['name']]
            for role, d in _iris.instance_dirs(inst, self.p['include_install_dir']):
                if not os.path.isdir(d):
                    if role == 'install':
                        self.problems.append('instance %s: installation directory %s does not exist' % (inst['name'], d))
                    else:
                        self.warnings.append('instance %s: %s directory %s does not exist; nothing to snapshot for it'
                                             % (inst['name'], role, d))
                    continue
                try:
                    lv = self.lvm.lv_for_path(d, lvs)
                except _lvm.LvmError as exc:
                    entry['directories'][d] = None
                    text = 'instance %s: %s directory: %s' % (inst['name'], role, exc.msg)
                    if self.p['unmapped_directories'] == 'fail':
                        self.problems.append(text + '; a snapshot backup cannot contain it. Move it to an LVM logical '
                                                    'volume, or set unmapped_directories=warn to back up the rest')
                    else:
                        self.warnings.append(text + '; it is NOT in this backup')
                    continue
                if lv.is_any_snapshot:
                    self.problems.append('instance %s: %s directory %s is on %s, which is itself a snapshot'
                                         % (inst['name'], role, d, lv.full_name))
                    continue
                entry['directories'][d] = lv.full_name
                add(lv.vg, lv.name, None, None, inst['name'], d)

        for index, item in enumerate(self.p['volumes'] or []):
            size = name = path = vg = lv = None
            if isinstance(item, dict):
                unknown = set(item) - set(['vg', 'lv', 'path', 'size', 'name'])
                if unknown:
                    self.problems.append('volumes[%d]: unknown keys %s (allowed: vg, lv, path, size, name)'
                                         % (index, ', '.join(sorted(unknown))))
                    continue
                size, name, path, vg, lv = (item.get(k) for k in ('size', 'name', 'path', 'vg', 'lv'))
            elif isinstance(item, str):
                if item.startswith('/'):
                    path = item
                elif '/' in item:
                    vg, lv = item.split('/', 1)
                else:
                    self.problems.append('volumes[%d]: %r: give vg/lv or an absolute path' % (index, item))
                    continue
            else:
                self.problems.append('volumes[%d]: %r is neither a string nor a dictionary' % (index, item))
                continue
            if path:
                try:
                    found = self.lvm.lv_for_path(path, lvs)
                except _lvm.LvmError as exc:
                    self.problems.append('volumes[%d]: %s' % (index, exc.msg))
                    continue
                vg, lv = found.vg, found.name
            if not vg or not lv:
                self.problems.append('volumes[%d]: needs vg and lv (or path)' % index)
                continue
            ent = add(vg, lv, size, name)
            if size or name:
                ent['request'].size = str(size or ent['request'].size)
                ent['request'].name = name or ent['request'].name

    def plan(self, lvs, vgs):
        requests = [self.origins[k]['request'] for k in self.order]
        if not requests:
            self.problems.append('no logical volume to snapshot: no directory of the selected instances is on LVM '
                                 'and no volumes were given')
            return []
        keys = set(self.order)
        names = set((r.vg, r.name) for r in requests)
        for lv in lvs:
            if not lv.is_any_snapshot or (lv.vg, lv.origin) not in keys or (lv.vg, lv.name) in names:
                continue
            if _lvm.SNAPSHOT_TAG in lv.tags:
                if self.p['existing'] == 'remove':
                    self.leftovers.append(lv)
                else:
                    self.problems.append(
                        'snapshot %s of %s/%s is left over from an earlier run (tags %s): check that no backup still '
                        'reads it, remove it (irisops.backup.lvm_snapshot state=absent) or rerun with existing=remove'
                        % (lv.full_name, lv.vg, lv.origin, ','.join(lv.tags)))
            else:
                self.warnings.append('%s is a snapshot of %s/%s not made by this collection; it slows writes to the '
                                     'origin while it exists' % (lv.full_name, lv.vg, lv.origin))
        try:
            plans = _lvm.plan_snapshots(requests, lvs, vgs, existing=self.p['existing'], run_id=self.run_id)
        except _lvm.PreflightError as exc:
            self.problems.extend(exc.problems)
            return []
        for plan in plans:
            if plan.action == 'keep':
                self.problems.append('snapshot %s already carries the tag of run %s; use a new run_id for every run'
                                     % (plan.request.full_name, self.run_id))
            elif plan.action == 'recreate':
                self.leftovers.append(plan.existing)
        return plans

    def preflight(self):
        """Map, plan and check; returns the snapshot descriptions (planned).  Problems are in ``problems``; a failure
        to read LVM or the mount table raises LvmError/IOError (nothing is frozen then)."""
        lvs = self.lvm.lvs()
        vgs = self.lvm.vgs()
        self.mounts = self.lvm.mountinfo()
        self.map_volumes(lvs)
        self.plans = self.plan(lvs, vgs) if (self.order or not self.problems) else []
        if self.plans:
            self.autoextend = self.lvm.autoextend()
            self.warnings += _lvm.autoextend_warnings(
                self.autoextend, thin_pools=['%s/%s' % (p.request.vg, p.pool) for p in self.plans if p.thin],
                thick=any(not p.thin for p in self.plans))
        return [self.describe(p.request, None, None if p.thin else p.size) for p in self.plans]

    def remove_leftovers(self, test=False):
        """Remove the leftovers found by the preflight (existing=remove), before the freeze.  Returns the warnings
        (one per removal); raises LvmError when one cannot be removed."""
        done = []
        for lv in self.leftovers:
            self.lvm.remove_lv(lv.vg, lv.name, mountpoints=self.lvm.mountpoints(lv, self.mounts), test=test)
            done.append('removed leftover snapshot %s%s' % (lv.full_name, ' (check mode: would be)' if test else ''))
        return done

    def test_creates(self):
        """Check mode: ``lvcreate --test`` of every snapshot.  Returns a failure text or None."""
        for plan in self.plans:
            req = plan.request
            if plan.action == 'recreate':
                continue
            try:
                self.lvm.create_snapshot(req.vg, req.lv, req.name, plan.lvcreate_extents, tags=self.tags, test=True)
            except _lvm.LvmError as exc:
                return 'lvcreate --test refuses snapshot %s of %s: %s' % (req.full_name, req.origin, exc.msg)
        return None

    # -- the window -------------------------------------------------------------------------------------------
    def switch_cleanup(self):
        """What the dead-man switches of this window remove when they fire (the window's process died)."""
        return {'lvm_run_tag': self.tags[1]}

    def steps(self, freeze_mode=None):
        """The freeze window as engine steps."""
        mode = freeze_mode or self.p['freeze_mode']
        if mode == 'together':
            return ([('freeze', list(self.instances))] + [('snap', p) for p in self.plans]
                    + [('thaw', list(self.instances))])
        by_name = dict((i['name'], i) for i in self.instances)
        plan_instances = [(p, self.origins[(p.request.vg, p.request.lv)]['instances']) for p in self.plans]
        return [(kind, arg if kind == 'snap' else [by_name[n] for n in arg])
                for kind, arg in staggered_steps([i['name'] for i in self.instances], plan_instances)]

    def create(self, plan, ctl):
        """The freeze engine's snapshot callback: one ``lvcreate`` bounded by the time left in the freeze budget;
        past it (or on a signal) the engine thaws first and this raises."""
        req = plan.request
        left = ctl.time_left()
        try:
            self.lvm.create_snapshot_bounded(req.vg, req.lv, req.name, plan.lvcreate_extents,
                                             deadline=3600 if left is None else max(left, 0.1),
                                             on_overdue=ctl.thaw_now, tags=self.tags, interrupted=ctl.interrupted)
        except _lvm.LvmError as exc:
            raise _freeze.SnapshotStepError('creating snapshot %s of %s failed (snapshot %d of %d): %s' % (
                req.full_name, req.origin, self.plans.index(plan) + 1, len(self.plans), exc.msg))
        return req.full_name

    def cleanup(self):
        """Remove every snapshot that carries this run's tag (whatever state the run ended in): ``(removed, errors)``."""
        removed, errors = [], []
        try:
            lvs = self.lvm.lvs()
            mounts = self.lvm.mountinfo()
        except (_lvm.LvmError, IOError, OSError) as exc:
            return removed, ['cannot list LVs to remove the snapshots of run %s: %s' % (self.run_id, exc)]
        for lv in reversed(lvs):
            if lv.is_any_snapshot and self.tags[1] in lv.tags:
                try:
                    self.lvm.remove_lv(lv.vg, lv.name, mountpoints=self.lvm.mountpoints(lv, mounts))
                    removed.append(lv.full_name)
                except _lvm.LvmError as exc:
                    errors.append(exc.msg)
        return removed, errors

    # -- reporting --------------------------------------------------------------------------------------------
    def describe(self, req, lv, size=None):
        ent = self.origins[(req.vg, req.lv)]
        out = dict(name=req.name, vg=req.vg, origin=req.lv, path='/dev/%s/%s' % (req.vg, req.name), size=size,
                   data_percent=None, attr=None, valid=None, tags=list(self.tags), instances=ent['instances'],
                   directories=ent['directories'], created=False,
                   origin_devices=['/dev/%s/%s' % (req.vg, req.lv), '/dev/mapper/' + _lvm.dm_name(req.vg, req.lv)],
                   volume=dict(vg=req.vg, lv=req.lv, name=req.name))
        if lv is not None:
            out.update(size=lv.size, data_percent=lv.data_percent, attr=lv.attr, valid=lv.valid, tags=lv.tags,
                       path=lv.path, created=True)
            if lv.is_thin:      # a thin snapshot: no size of its own, its space is the pool's
                out.update(size=None, thin_pool='%s/%s' % (lv.vg, lv.pool))
        return out

    def describe_created(self):
        """The planned snapshots as they are now (fill, validity), or raises LvmError when lvs fails."""
        lvs = dict(((lv.vg, lv.name), lv) for lv in self.lvm.lvs())
        return [self.describe(p.request, lvs.get((p.request.vg, p.request.name)), None if p.thin else p.size)
                for p in self.plans]
