#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: lvm_snapshot
short_description: Create, mount and remove LVM snapshot sets
version_added: 0.1.0
description:
  - Creates classic (copy-on-write) LVM snapshots of B(all) listed logical volumes in one module call, one
    C(lvcreate) per volume back to back after a single preflight, so that the freeze window of a database does not
    pay one Ansible task per volume.
  - The preflight runs before anything is created and reports every problem at once. It checks that each origin
    exists and is a thick LV, that the requested sizes parse and, together, fit into the free extents of their volume
    groups, and that no leftover snapshot of the same origin with the same name is in the way (see O(existing)).
  - If the N-th C(lvcreate) fails, the snapshots created before it in the same call are removed again and the
    module fails.
  - After creating (and whenever O(state=present) or O(state=mounted) finds the snapshots already there) the module
    re-reads C(lvs) and fails if a snapshot has overflowed (its copy-on-write store is full) or turned invalid.
  - O(state=mounted) mounts each snapshot read-only under O(mount_root)C(/<vg>/<origin lv>), with C(nouuid) for XFS.
  - O(state=absent) unmounts a snapshot that was left mounted and removes it, retrying C(lvremove) while the LV is
    reported in use.
  - Snapshots are tagged C(irisops_snapshot), plus C(irisops_run_<run_id>) when O(run_id) is set.
author:
  - irisops.backup maintainers (@irisops)
requirements:
  - lvm2 2.02.158 or later on the managed host (C(lvs --reportformat json), C(lvcreate --yes)).
  - util-linux (C(findmnt), C(mount), C(umount), C(blkid)).
  - Root privileges on the managed host.
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - Creation and removal are dry-run with LVM's own C(--test), so check mode validates against LVM itself.
        Mounts and unmounts are predicted.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details:
      - The diff lists the snapshots (name, origin, mount point) before and after.
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
options:
  volumes:
    description:
      - The origin logical volumes to snapshot (or whose snapshots to mount, unmount or remove).
      - Each element is either a string or a dictionary.
      - A string is V(vg/lv), a bare V(lv) (then O(vg) is required), or an absolute path (starting with V(/)) of a
        directory or file on the file system to snapshot. A path is mapped to its LV with C(findmnt) and C(lvs), so
        V(/iris/db) works whether the file system is mounted as C(/dev/mapper/vg-lv) or C(/dev/vg/lv).
      - 'A dictionary has the keys C(vg), C(lv) or C(path), and optionally C(size) and C(name) (the snapshot name
        for this volume, instead of C(<lv><suffix>)).'
    type: list
    elements: raw
    required: true
  vg:
    description:
      - Volume group of the elements of O(volumes) that do not name one.
    type: str
  size:
    description:
      - Size of each new snapshot, unless the volume sets its own C(size).
      - An absolute size with binary units as in C(lvcreate -L) (V(512M), V(2g), V(1.5GiB), V(4096s); a number
        without unit is MiB), or a percentage V(N%ORIGIN), V(N%FREE) or V(N%VG) with 0 < N <= 100.
      - Sizes are rounded to whole extents, absolute sizes and V(%ORIGIN) up, V(%FREE) and V(%VG) down.
        V(%FREE) is taken of the free space when that snapshot is created, in the order of O(volumes).
      - A size that does not parse, or a set of snapshots that does not fit into the free extents of its volume
        group, fails the preflight before anything is created.
      - Not used for a thin volume, which gets a thin snapshot (no size; it takes space in the volume's thin pool).
    type: str
    default: 20%ORIGIN
  suffix:
    description:
      - The snapshot of origin C(<lv>) is named C(<lv><suffix>), unless the volume sets its own C(name).
    type: str
    default: _irisops_snap
  state:
    description:
      - V(present) makes sure the snapshots exist and are valid.
      - V(mounted) additionally mounts them read-only under O(mount_root).
      - V(unmounted) unmounts snapshots that are mounted; it does not create missing snapshots.
      - V(absent) unmounts (if a mount was left behind) and removes the snapshots.
    type: str
    choices: [present, absent, mounted, unmounted]
    default: present
  existing:
    description:
      - What to do when a snapshot of the same origin with the same name already exists and it does not carry the
        tag of the current O(run_id). Such a snapshot is usually a leftover of an earlier or crashed run.
      - V(fail) fails the preflight (nothing is created) and says which snapshots are in the way.
      - V(remove) removes the leftover (unmounting it first) and creates a fresh snapshot. This happens before any
        new snapshot is created, so do it before the database is frozen if possible.
      - V(reuse) keeps the existing snapshot (it is still checked for overflow).
      - An LV with the snapshot name that is not a snapshot of that origin always fails the preflight.
    type: str
    choices: [fail, remove, reuse]
    default: fail
  run_id:
    description:
      - Identifier of the current backup run, for example the AWX job id or a timestamp fixed for the play.
      - New snapshots are tagged C(irisops_run_<run_id>), and a snapshot that already carries the tag of the current
        run is taken as created by this run. This makes a repeated O(state=present) or O(state=mounted) task of
        the same run idempotent (not changed) while a leftover of another run is still handled by O(existing).
      - Without O(run_id), a second run finds the snapshot of the first one and applies O(existing).
    type: str
  mount_root:
    description:
      - Directory under which O(state=mounted) mounts each snapshot, at C(<mount_root>/<vg>/<origin lv>).
      - Missing directories are created (mode 0755).
    type: path
    default: /run/irisops/snapshots
  fstype:
    description:
      - File system type of the snapshots for O(state=mounted).
      - V(auto) detects it with C(blkid) on each snapshot. XFS snapshots are always mounted with C(nouuid), because
        XFS refuses to mount a second file system with the UUID of the mounted origin.
    type: str
    default: auto
  mount_options:
    description:
      - Extra mount options for O(state=mounted), added to V(ro) (and V(nouuid) on XFS).
    type: list
    elements: str
    default: []
  warn_data_percent:
    description:
      - Warn when a snapshot's copy-on-write store is filled to this percentage or more.
      - A snapshot at 100% is invalid and always fails O(state=present) and O(state=mounted).
    type: float
    default: 80
  timeout:
    description:
      - Seconds after which one LVM or mount command is killed and the module fails.
    type: int
    default: 120
notes:
  - A thin volume gets a thin snapshot, created without a size and without the activation skip flag (so it can be
    mounted at once); the preflight refuses it when the thin pool's data or metadata is 80% full or more (a full
    pool stops the writes of every volume in it). Mixed thick and thin origins work in one call.
  - Snapshots of thin pools and of other snapshots are refused by the preflight.
  - Snapshots are created one C(lvcreate) after the other. Each one is crash-consistent for its own LV; consistency
    across LVs comes from freezing the application (for example M(irisops.backup.iris_freeze)) around this task.
  - Idempotence of O(state=present) needs O(run_id) or O(existing=reuse), see O(existing).
seealso:
  - module: community.general.lvol
    description: General LVM logical volume management, one LV per task.
  - module: ansible.posix.mount
    description: Mount management with fstab entries.
  - name: lvcreate(8)
    description: Snapshot creation, sizes and units.
    link: https://man7.org/linux/man-pages/man8/lvcreate.8.html
  - name: lvs(8)
    description: The C(lv_attr) bits used to detect snapshots and invalid snapshots.
    link: https://man7.org/linux/man-pages/man8/lvs.8.html
"""

EXAMPLES = r"""
- name: Snapshot the database and journal LVs in one go (20% of each origin)
  irisops.backup.lvm_snapshot:
    volumes:
      - vgiris/db
      - vgiris/journal
    run_id: "{{ awx_job_id | default(ansible_date_time.epoch) }}"

- name: Snapshot the file systems that hold two directories, with different sizes
  irisops.backup.lvm_snapshot:
    volumes:
      - path: /iris/db
        size: 2G
      - path: /iris/journal
        size: 50%ORIGIN

- name: Mount the snapshots read-only for the backup agent (under /run/irisops/snapshots/<vg>/<lv>)
  irisops.backup.lvm_snapshot:
    volumes: [db, journal]
    vg: vgiris
    state: mounted
    existing: reuse
  register: snaps

- name: Show where they are
  ansible.builtin.debug:
    msg: "{{ snaps.snapshots | map(attribute='mountpoint') | list }}"

- name: Remove the snapshots (unmounts them first if needed)
  irisops.backup.lvm_snapshot:
    volumes: [vgiris/db, vgiris/journal]
    state: absent

- name: Replace leftovers of a crashed run before the freeze window
  irisops.backup.lvm_snapshot:
    volumes: [vgiris/db, vgiris/journal]
    existing: remove
    size: 1G
"""

RETURN = r"""
snapshots:
  description: One entry per element of O(volumes), in that order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Snapshot LV name.
      type: str
      sample: db_irisops_snap
    vg:
      description: Volume group.
      type: str
      sample: vgiris
    origin:
      description: Origin LV name.
      type: str
      sample: db
    path:
      description: Device path of the snapshot.
      type: str
      sample: /dev/vgiris/db_irisops_snap
    exists:
      description: Whether the snapshot exists after the task (predicted in check mode).
      type: bool
      sample: true
    action:
      description: >-
        What the task did: V(created), V(recreated) (leftover removed and created again), V(kept), V(removed),
        V(absent) (nothing to remove), V(mounted), V(unmounted) or V(none).
      type: str
      sample: created
    size:
      description: Size in bytes (predicted from the extents in check mode).
      type: int
      sample: 209715200
    data_percent:
      description: How full the copy-on-write store is, in percent; null when not known (check mode, inactive LV).
      type: float
      sample: 0.01
    attr:
      description: C(lv_attr) of the snapshot from C(lvs).
      type: str
      sample: swi-a-s---
    valid:
      description: False when the snapshot is invalid or its copy-on-write store is full.
      type: bool
      sample: true
    mountpoint:
      description: Where the snapshot is mounted (the first mount point), or null.
      type: str
      sample: /run/irisops/snapshots/vgiris/db
    fstype:
      description: File system type used or detected for mounting, or null.
      type: str
      sample: xfs
    tags:
      description: LV tags of the snapshot.
      type: list
      elements: str
      sample: [irisops_snapshot, irisops_run_4711]
create_seconds:
  description: Wall-clock seconds from the first to the end of the last C(lvcreate) of this call (0 when none ran).
  returned: always
  type: float
  sample: 0.84
commands:
  description: The commands run on the host, with return code and duration.
  returned: always
  type: list
  elements: dict
  sample: [{"cmd": ["/usr/sbin/lvs", "--units", "b"], "rc": 0, "seconds": 0.05}]
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.irisops.backup.plugins.module_utils import _lvm


def _volume_requests(module, lvm, lvs):
    """Normalise O(volumes) into SnapshotRequest objects; collects problems instead of failing on the first."""
    params = module.params
    default_vg = params["vg"]
    suffix = params["suffix"]
    problems = []
    requests = []
    for index, item in enumerate(params["volumes"]):
        size = params["size"]
        name = None
        path = None
        vg = lv = None
        if isinstance(item, dict):
            unknown = set(item) - set(["vg", "lv", "path", "size", "name"])
            if unknown:
                problems.append("volumes[%d]: unknown keys %s (allowed: vg, lv, path, size, name)"
                                % (index, ", ".join(sorted(unknown))))
                continue
            size = item.get("size") or size
            name = item.get("name")
            path = item.get("path")
            vg = item.get("vg") or default_vg
            lv = item.get("lv")
            if path and lv:
                problems.append("volumes[%d]: give either path or lv, not both" % index)
                continue
        elif isinstance(item, str):
            if item.startswith("/"):
                path = item
            elif "/" in item:
                vg, lv = item.split("/", 1)
            else:
                vg, lv = default_vg, item
        else:
            problems.append("volumes[%d]: %r is neither a string nor a dictionary" % (index, item))
            continue
        if path:
            try:
                origin = lvm.lv_for_path(path, lvs)
            except _lvm.LvmError as exc:
                problems.append("volumes[%d]: %s" % (index, exc.msg))
                continue
            if origin.is_any_snapshot:
                problems.append("volumes[%d]: %s is on %s, which is itself a snapshot" % (index, path, origin.full_name))
                continue
            vg, lv = origin.vg, origin.name
        if not vg:
            problems.append("volumes[%d]: %r names no volume group; write vg/lv or set the vg option" % (index, item))
            continue
        if not lv or "/" in lv:
            problems.append("volumes[%d]: %r is not vg/lv" % (index, item))
            continue
        requests.append(_lvm.SnapshotRequest(vg, lv, name or (lv + suffix), str(size), path=path))
    return requests, problems


class SnapshotModule(object):

    def __init__(self, module, lvm=None):
        self.module = module
        self.params = module.params
        self.lvm = lvm or _lvm.Lvm(timeout=self.params["timeout"])
        self.changed = False
        self.create_seconds = 0.0
        self.warnings = []

    # -- helpers --
    def fail(self, msg, **kwargs):
        result = dict(changed=self.changed, msg=msg, commands=self.lvm.commands,
                      create_seconds=round(self.create_seconds, 3))
        result.update(kwargs)
        self.module.fail_json(**result)

    def fail_lvm(self, exc, prefix, **kwargs):
        details = exc.as_dict()
        msg = "%s: %s" % (prefix, details.pop("msg"))
        details.update(kwargs)
        self.fail(msg, **details)

    def mountpoint_for(self, req):
        return "%s/%s/%s" % (self.params["mount_root"].rstrip("/") or "", req.vg, req.lv)

    @staticmethod
    def describe(req, lv, action, mounts, predicted=None, fstype=None):
        entry = dict(name=req.name, vg=req.vg, origin=req.lv, path="/dev/%s/%s" % (req.vg, req.name),
                     exists=lv is not None or bool(predicted), action=action, size=None, data_percent=None,
                     attr=None, valid=None, mountpoint=mounts[0] if mounts else None, fstype=fstype, tags=[])
        if lv is not None:
            entry.update(size=lv.size, data_percent=lv.data_percent, attr=lv.attr, valid=lv.valid,
                         path=lv.path, tags=lv.tags)
        elif predicted:
            entry.update(size=predicted.get("size"), tags=predicted.get("tags", []))
        return entry

    def read_state(self):
        try:
            lvs = self.lvm.lvs()
            vgs = self.lvm.vgs()
            mounts = self.lvm.mountinfo()
        except _lvm.LvmError as exc:
            self.fail_lvm(exc, "cannot read the LVM state")
        except (IOError, OSError) as exc:
            self.fail("cannot read the mount table: %s" % exc)
        self.mounts = mounts
        return lvs, vgs, mounts

    def mounted_fstype(self, target):
        for mount in self.mounts:
            if mount["mountpoint"] == target:
                return mount["fstype"]
        return None

    # -- main --
    def run(self):
        lvs, vgs, mounts = self.read_state()
        requests, problems = _volume_requests(self.module, self.lvm, lvs)
        if problems:
            self.fail("invalid volumes, nothing was changed: " + "; ".join(problems), problems=problems)
        state = self.params["state"]
        if state in ("present", "mounted"):
            return self.ensure_present(requests, lvs, vgs, mounts)
        if state == "unmounted":
            return self.ensure_unmounted(requests, lvs, mounts)
        return self.ensure_absent(requests, lvs, mounts)

    def tags(self):
        tags = [_lvm.SNAPSHOT_TAG]
        if self.params["run_id"]:
            tags.append(_lvm.run_tag(self.params["run_id"]))
        return tags

    def ensure_present(self, requests, lvs, vgs, mounts):
        check = self.module.check_mode
        try:
            plans = _lvm.plan_snapshots(requests, lvs, vgs, existing=self.params["existing"],
                                        run_id=self.params["run_id"])
        except _lvm.PreflightError as exc:
            self.fail(exc.msg, problems=exc.problems)

        before = self.snapshot_view(requests, lvs, mounts)

        # 1. leftovers to replace (existing=remove): before any creation, outside the tight loop
        for plan in plans:
            if plan.action != "recreate":
                continue
            old = plan.existing
            left_mounted = self.lvm.mountpoints(old, mounts)
            try:
                self.lvm.remove_lv(old.vg, old.name, mountpoints=left_mounted, test=check)
            except _lvm.LvmError as exc:
                self.fail_lvm(exc, "cannot remove the leftover snapshot %s (existing=remove); nothing was created"
                              % old.full_name)
            if not check:
                for mountpoint in left_mounted:
                    self.lvm.remove_mountpoint(mountpoint, self.params["mount_root"])
            self.changed = True

        # 2. all creations back to back
        created = []
        to_create = [p for p in plans if p.action in ("create", "recreate")]
        if to_create:
            started = time.time()
            for plan in to_create:
                req = plan.request
                if check and plan.action == "recreate":
                    # lvcreate --test would trip over the snapshot that check mode did not remove
                    continue
                try:
                    self.lvm.create_snapshot(req.vg, req.lv, req.name, plan.lvcreate_extents, tags=self.tags(),
                                             test=check)
                except _lvm.LvmError as exc:
                    self.create_seconds = time.time() - started
                    rolled_back, rollback_errors = self.rollback(created)
                    self.fail_lvm(
                        exc, "creating snapshot %s of %s failed (snapshot %d of %d)%s"
                        % (req.full_name, req.origin, len(created) + 1, len(to_create),
                           "; removed again the ones created before it: %s" % ", ".join(rolled_back)
                           if rolled_back else ""),
                        rolled_back=rolled_back, rollback_errors=rollback_errors)
                created.append(req)
            self.create_seconds = time.time() - started
            self.changed = True

        # 3. re-read and mount
        if check:
            lvs_after = lvs
        else:
            try:
                lvs_after = self.lvm.lvs()
            except _lvm.LvmError as exc:
                self.fail_lvm(exc, "snapshots created, but lvs failed afterwards")
        index = dict(((lv.vg, lv.name), lv) for lv in lvs_after)
        results = []
        for plan in plans:
            req = plan.request
            lv = index.get((req.vg, req.name))
            predicted = None
            if check and plan.action != "keep":
                lv = None
                predicted = dict(size=None if plan.thin else plan.size, tags=self.tags())
            action = {"create": "created", "recreate": "recreated", "keep": "kept"}[plan.action]
            current_mounts = self.lvm.mountpoints(lv, mounts) if lv is not None and plan.action == "keep" else []
            if lv is not None and plan.action != "keep" and not check:
                current_mounts = []
            results.append([req, lv, action, current_mounts, predicted, None])

        if self.params["state"] == "mounted":
            self.mount_all(results, check)

        # 4. validity
        bad = []
        for req, lv, action, current_mounts, predicted, fstype in results:
            if lv is None:
                continue
            if not lv.valid:
                bad.append("%s (origin %s, lv_attr %s, %s full)" % (
                    lv.full_name, req.origin, lv.attr,
                    "%.2f%%" % lv.data_percent if lv.data_percent is not None else "?"))
            elif lv.data_percent is not None and lv.data_percent >= self.params["warn_data_percent"]:
                self.module.warn("snapshot %s of %s is %.2f%% full; it becomes invalid at 100%%. Give it more space "
                                 "(size) or shorten the time it is kept" % (lv.full_name, req.origin, lv.data_percent))
        snapshots = [self.describe(*r) for r in results]
        self.finish(before, snapshots, bad)

    def mount_all(self, results, check):
        fstype_opt = self.params["fstype"]
        for row in results:
            req, lv, action, current_mounts, predicted, fstype = row
            target = self.mountpoint_for(req)
            if target in current_mounts:
                row[3] = [target] + [m for m in current_mounts if m != target]
                row[5] = fstype_opt if fstype_opt != "auto" else self.mounted_fstype(target)
                continue
            if lv is not None and not lv.valid:
                continue  # reported as invalid below; mounting would fail or show garbage
            if check:
                row[3] = [target] + current_mounts
                row[2] = "mounted" if action == "kept" else action
                row[5] = fstype_opt if fstype_opt != "auto" else None
                self.changed = True
                continue
            if lv is None:
                self.fail("snapshot %s was created but lvs does not list it; check with lvs %s and remove it with "
                          "state=absent" % (req.full_name, req.vg))
            device = lv.path
            fstype = fstype_opt
            if fstype == "auto":
                fstype = self.lvm.detect_fstype(device)
                if not fstype:
                    self.fail("cannot detect the file system on snapshot %s (blkid found none); set fstype"
                              % lv.full_name)
            try:
                self.lvm.mount(device, target, fstype, self.params["mount_options"])
            except _lvm.LvmError as exc:
                self.fail_lvm(exc, "mounting snapshot %s of %s read-only at %s failed; this task leaves the "
                                   "snapshots in place (the lvm_backup role unmounts and removes them in its "
                                   "cleanup; on your own, remove them with state=absent)"
                              % (lv.full_name, req.origin, target))
            row[3] = [target] + current_mounts
            row[2] = "mounted" if action == "kept" else action
            row[5] = fstype
            self.changed = True

    def rollback(self, created):
        removed, errors = [], []
        for req in reversed(created):
            try:
                self.lvm.remove_lv(req.vg, req.name)
                removed.append(req.full_name)
            except _lvm.LvmError as exc:
                errors.append(exc.msg)
        return removed, errors

    def requested_snapshots(self, requests, lvs):
        """(request, its snapshot LV or None) in request order; fails on an LV of that name that is not a snapshot
        of the requested origin (unmount/remove must never touch a foreign LV)."""
        index = dict(((lv.vg, lv.name), lv) for lv in lvs)
        for req in requests:
            lv = index.get((req.vg, req.name))
            problem = self.not_our_snapshot(req, lv)
            if problem:
                self.fail(problem)
            yield req, lv

    def ensure_unmounted(self, requests, lvs, mounts):
        before = self.snapshot_view(requests, lvs, mounts)
        results = []
        for req, lv in self.requested_snapshots(requests, lvs):
            current = self.lvm.mountpoints(lv, mounts) if lv is not None else []
            action = "none"
            if current:
                if not self.module.check_mode:
                    for mountpoint in current:
                        try:
                            self.lvm.umount(mountpoint)
                        except _lvm.LvmError as exc:
                            self.fail_lvm(exc, "unmounting snapshot %s failed" % req.full_name)
                        self.lvm.remove_mountpoint(mountpoint, self.params["mount_root"])
                self.changed = True
                action = "unmounted"
            results.append(self.describe(req, lv, action if lv is not None else "absent", []))
        self.finish(before, results, [])

    def ensure_absent(self, requests, lvs, mounts):
        before = self.snapshot_view(requests, lvs, mounts)
        results = []
        for req, lv in self.requested_snapshots(requests, lvs):
            if lv is None:
                results.append(self.describe(req, None, "absent", []))
                continue
            left_mounted = self.lvm.mountpoints(lv, mounts)
            try:
                self.lvm.remove_lv(lv.vg, lv.name, mountpoints=left_mounted, test=self.module.check_mode)
            except _lvm.LvmError as exc:
                self.fail_lvm(exc, "removing snapshot %s of %s failed" % (lv.full_name, req.origin))
            if not self.module.check_mode:
                for mountpoint in left_mounted:
                    self.lvm.remove_mountpoint(mountpoint, self.params["mount_root"])
            self.changed = True
            entry = self.describe(req, lv, "removed", [])
            entry["exists"] = False
            results.append(entry)
        self.finish(before, results, [])

    @staticmethod
    def not_our_snapshot(req, lv):
        if lv is not None and (not lv.is_any_snapshot or lv.origin != req.lv):
            return ("%s is not a snapshot of %s (lv_attr %s, origin %s); refusing to touch it"
                    % (lv.full_name, req.origin, lv.attr, lv.origin or "none"))
        return None

    def snapshot_view(self, requests, lvs, mounts):
        index = dict(((lv.vg, lv.name), lv) for lv in lvs)
        view = []
        for req in requests:
            lv = index.get((req.vg, req.name))
            if lv is not None:
                mps = self.lvm.mountpoints(lv, mounts)
                view.append({"name": lv.full_name, "origin": req.origin, "mountpoint": mps[0] if mps else None})
        return view

    def finish(self, before, snapshots, bad):
        after = [{"name": "%s/%s" % (s["vg"], s["name"]), "origin": "%s/%s" % (s["vg"], s["origin"]),
                  "mountpoint": s["mountpoint"]} for s in snapshots if s["exists"]]
        result = dict(changed=self.changed, snapshots=snapshots, commands=self.lvm.commands,
                      create_seconds=round(self.create_seconds, 3))
        if self.module._diff:
            result["diff"] = {"before": {"snapshots": before}, "after": {"snapshots": after}}
        if bad:
            result["msg"] = ("snapshot(s) overflowed or invalid, their contents are unusable: %s. Remove them "
                             "(state=absent) and create them again with a larger size" % "; ".join(bad))
            self.module.fail_json(**result)
        self.module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            volumes=dict(type="list", elements="raw", required=True),
            vg=dict(type="str"),
            size=dict(type="str", default="20%ORIGIN"),
            suffix=dict(type="str", default=_lvm.DEFAULT_SUFFIX),
            state=dict(type="str", default="present", choices=["present", "absent", "mounted", "unmounted"]),
            existing=dict(type="str", default="fail", choices=["fail", "remove", "reuse"]),
            run_id=dict(type="str"),
            mount_root=dict(type="path", default="/run/irisops/snapshots"),
            fstype=dict(type="str", default="auto"),
            mount_options=dict(type="list", elements="str", default=[]),
            warn_data_percent=dict(type="float", default=80),
            timeout=dict(type="int", default=120),
        ),
        supports_check_mode=True,
    )
    if not module.params["volumes"]:
        module.fail_json(msg="volumes is empty; list the origin LVs (vg/lv) or paths to snapshot")
    # Options checked before LVM is asked anything, so that they are reported even when a volume is wrong too.
    errors = []
    if module.params["timeout"] <= 0:
        errors.append("timeout must be a positive number of seconds")
    if module.params["state"] in ("present", "mounted"):
        try:
            _lvm.parse_size(module.params["size"])
        except _lvm.SizeError as exc:
            errors.append(exc.msg)
    if errors:
        module.fail_json(msg="invalid options, nothing was changed: " + "; ".join(errors), changed=False)
    SnapshotModule(module).run()


if __name__ == "__main__":
    main()
