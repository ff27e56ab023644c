# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests of the lvm_snapshot module's control flow.

The LVM host is simulated by FakeHost, which answers lvs/vgs in the JSON format captured from lvm2 2.03.16 (see
tests/unit/plugins/module_utils/fixtures) and keeps LVs, free extents and mounts consistent across commands. The
real behaviour is tested against real LVM by the VM rig's lvm-module case (tests/vm); these tests cover what
real LVM cannot be made to do on demand (an lvcreate failing half-way, a busy LV) and the argument handling.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.irisops.backup.plugins.module_utils import _lvm
from ansible_collections.irisops.backup.plugins.modules import lvm_snapshot

MiB = 1024 ** 2
EXT = 4 * MiB


class FakeHost:
    def __init__(self, tmp_path, free=789):
        self.vg = "vgiris"
        self.extent_count = 1023
        self.free = free
        self.lvs = {}
        self.next_minor = 0
        self.mounts = []  # (major, minor, mountpoint, fstype)
        self.mountinfo = tmp_path / "mountinfo"
        self.fail_lvcreate_at = None
        self.lvcreate_count = 0
        self.busy_removals = {}
        self.calls = []
        self.add_lv("db", 128, fstype="xfs", mountpoint="/iris/db")
        self.add_lv("journal", 80, fstype="ext4", mountpoint="/iris/journal")
        self.write_mountinfo()

    # -- state --
    def add_lv(self, name, extents, origin=None, tags=(), fstype=None, mountpoint=None):
        self.lvs[name] = {"name": name, "extents": extents, "origin": origin, "tags": list(tags),
                          "minor": self.next_minor, "fstype": fstype, "state": "a", "percent": 0.0}
        self.next_minor += 1
        if origin is None:
            self.free -= extents
        if mountpoint:
            self.mounts.append((253, self.lvs[name]["minor"], mountpoint, fstype))

    def attr(self, lv):
        if lv["origin"]:
            return "swi-%s%ss---" % (lv["state"], "o" if self.mounted(lv) else "-")
        has_snap = any(o["origin"] == lv["name"] for o in self.lvs.values())
        return "%swi-a%s----" % ("o" if has_snap else "-", "o" if self.mounted(lv) else "-")

    def mounted(self, lv):
        return [m for m in self.mounts if m[1] == lv["minor"]]

    def write_mountinfo(self):
        lines = ["22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda rw"]
        for i, (major, minor, mountpoint, fstype) in enumerate(self.mounts):
            lines.append("%d 22 %d:%d / %s rw,relatime - %s /dev/mapper/x rw"
                         % (40 + i, major, minor, mountpoint, fstype))
        self.mountinfo.write_text("\n".join(lines) + "\n")

    def report_lvs(self):
        rows = []
        for lv in self.lvs.values():
            row = {"lv_name": lv["name"], "vg_name": self.vg, "lv_attr": self.attr(lv),
                   "lv_size": str(lv["extents"] * EXT), "origin": lv["origin"] or "",
                   "data_percent": "%.2f" % lv["percent"] if lv["origin"] else "",
                   "lv_path": "/dev/vgiris/%s" % lv["name"], "lv_kernel_major": "253",
                   "lv_kernel_minor": str(lv["minor"]), "lv_tags": ",".join(sorted(lv["tags"])),
                   "lv_snapshot_invalid": ("snapshot invalid" if lv["state"] == "I" else "") if lv["origin"]
                   else "unknown"}
            rows.append(row)
        return json.dumps({"report": [{"lv": rows}]})

    def report_vgs(self):
        return json.dumps({"report": [{"vg": [{
            "vg_name": self.vg, "vg_attr": "wz--n-", "vg_size": str(self.extent_count * EXT),
            "vg_free": str(self.free * EXT), "vg_extent_size": str(EXT), "vg_extent_count": str(self.extent_count),
            "vg_free_count": str(self.free)}]}]})

    # -- the runner --
    def __call__(self, argv, data=None, timeout=None):
        self.calls.append(list(argv))
        cmd = argv[0].rsplit("/", 1)[-1]
        args = argv[1:]
        if cmd == "lvs":
            return 0, self.report_lvs(), ""
        if cmd == "vgs":
            return 0, self.report_vgs(), ""
        if cmd == "findmnt":
            path = args[-1]
            for major, minor, mountpoint, fstype in sorted(self.mounts, key=lambda m: -len(m[2])):
                if path == mountpoint or path.startswith(mountpoint + "/"):
                    name = [lv["name"] for lv in self.lvs.values() if lv["minor"] == minor][0]
                    return 0, 'SOURCE="/dev/mapper/vgiris-%s" TARGET="%s" FSTYPE="%s" MAJ:MIN="%d:%d"\n' % (
                        name, mountpoint, fstype, major, minor), ""
            return 0, 'SOURCE="/dev/vda" TARGET="/" FSTYPE="ext4" MAJ:MIN="254:1"\n', ""
        if cmd == "lvcreate":
            test = "--test" in args
            name = args[args.index("--name") + 1]
            extents = int(args[args.index("--extents") + 1])
            origin = args[-1].split("/")[1]
            tags = [args[i + 1] for i, a in enumerate(args) if a == "--addtag"]
            if not test:
                self.lvcreate_count += 1
                if self.fail_lvcreate_at == self.lvcreate_count:
                    return 5, "", "  device-mapper: reload ioctl on (253:9) failed: Cannot allocate memory\n"
            if name in self.lvs:
                return 5, "", '  Logical Volume "%s" already exists in volume group "vgiris"\n' % name
            if extents > self.free:
                return 5, "", '  Volume group "vgiris" has insufficient free space\n'
            if not test:
                self.add_lv(name, extents, origin=origin, tags=tags, fstype=self.lvs[origin]["fstype"])
                self.free -= extents
            return 0, "", ""
        if cmd == "lvremove":
            name = args[-1].split("/")[1]
            if name not in self.lvs:
                return 5, "", '  Failed to find logical volume "vgiris/%s"\n' % name
            lv = self.lvs[name]
            if self.mounted(lv):
                return 5, "", "  Logical volume vgiris/%s contains a filesystem in use.\n" % name
            if self.busy_removals.get(name):
                self.busy_removals[name] -= 1
                return 5, "", "  Logical volume vgiris/%s in use.\n" % name
            if "--test" not in args:
                del self.lvs[name]
                self.free += lv["extents"]
            return 0, "", ""
        if cmd == "blkid":
            name = args[-1].rsplit("/", 1)[-1]
            return 0, "%s\n" % self.lvs[name]["fstype"], ""
        if cmd == "mount":
            device, mountpoint = args[-2], args[-1]
            lv = self.lvs[device.rsplit("/", 1)[-1]]
            self.mounts.append((253, lv["minor"], mountpoint, lv["fstype"]))
            self.write_mountinfo()
            return 0, "", ""
        if cmd == "umount":
            before = len(self.mounts)
            self.mounts = [m for m in self.mounts if m[2] != args[-1]]
            self.write_mountinfo()
            return (0, "", "") if len(self.mounts) < before else (32, "", "umount: %s: not mounted.\n" % args[-1])
        if cmd == "udevadm":
            return 0, "", ""
        raise AssertionError("unexpected command %r" % (argv,))

    def snapshot_names(self):
        return sorted(n for n, lv in self.lvs.items() if lv["origin"])

    def commands(self, name):
        return [c for c in self.calls if c[0].rsplit("/", 1)[-1] == name]


@pytest.fixture
def host(tmp_path, monkeypatch):
    fake = FakeHost(tmp_path)
    monkeypatch.setattr(_lvm, "subprocess_runner", fake)
    monkeypatch.setattr(_lvm, "MOUNTINFO_PATH", str(fake.mountinfo))
    monkeypatch.setattr(_lvm, "find_binary", lambda name, path=None: "/usr/sbin/" + name)
    monkeypatch.setattr(_lvm.time, "sleep", lambda s: None)
    return fake


def run_module(args, check_mode=False, diff=False, capsys=None):
    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            lvm_snapshot.main()
    out = capsys.readouterr().out
    return json.loads(out)


def test_creates_all_in_one_call_after_one_preflight(host, capsys):
    result = run_module({"volumes": ["vgiris/db", "/iris/journal"], "run_id": "r1"}, capsys=capsys, diff=True)
    assert result["changed"] and not result.get("failed")
    assert host.snapshot_names() == ["db_irisops_snap", "journal_irisops_snap"]
    # one lvs+vgs read, then the lvcreates back to back, then one lvs to re-check
    names = [c[0].rsplit("/", 1)[-1] for c in host.calls]
    assert names == ["lvs", "vgs", "findmnt", "lvcreate", "lvcreate", "lvs"]
    assert [s["size"] for s in result["snapshots"]] == [26 * EXT, 16 * EXT]
    assert [s["action"] for s in result["snapshots"]] == ["created", "created"]
    assert all(s["valid"] for s in result["snapshots"])
    assert host.lvs["db_irisops_snap"]["tags"] == ["irisops_snapshot", "irisops_run_r1"]
    assert result["diff"]["before"]["snapshots"] == []
    assert [s["name"] for s in result["diff"]["after"]["snapshots"]] == ["vgiris/db_irisops_snap",
                                                                         "vgiris/journal_irisops_snap"]


def test_same_run_is_idempotent(host, capsys):
    run_module({"volumes": ["vgiris/db", "vgiris/journal"], "run_id": "r1"}, capsys=capsys)
    host.calls = []
    result = run_module({"volumes": ["vgiris/db", "vgiris/journal"], "run_id": "r1"}, capsys=capsys)
    assert not result["changed"]
    assert [s["action"] for s in result["snapshots"]] == ["kept", "kept"]
    assert host.commands("lvcreate") == []


def test_nth_lvcreate_failure_rolls_back(host, capsys):
    host.fail_lvcreate_at = 2
    result = run_module({"volumes": ["vgiris/db", "vgiris/journal"], "size": "8M"}, capsys=capsys)
    assert result["failed"]
    assert "creating snapshot vgiris/journal_irisops_snap of vgiris/journal failed (snapshot 2 of 2)" in result["msg"]
    assert "removed again the ones created before it: vgiris/db_irisops_snap" in result["msg"]
    assert "Cannot allocate memory" in result["msg"]
    assert result["rolled_back"] == ["vgiris/db_irisops_snap"]
    assert host.snapshot_names() == []
    assert host.free == 789 - 128 - 80


def test_check_mode_uses_lvm_test_and_creates_nothing(host, capsys):
    result = run_module({"volumes": ["vgiris/db", "vgiris/journal"], "size": "64M"}, check_mode=True, capsys=capsys)
    assert result["changed"]
    assert host.snapshot_names() == []
    creates = host.commands("lvcreate")
    assert len(creates) == 2 and all("--test" in c for c in creates)
    assert [s["size"] for s in result["snapshots"]] == [64 * MiB, 64 * MiB]
    assert [s["valid"] for s in result["snapshots"]] == [None, None]


def test_preflight_failure_touches_nothing(host, capsys):
    result = run_module({"volumes": ["vgiris/db", "vgiris/journal", "vgiris/nosuch"], "size": "2G"}, capsys=capsys)
    assert result["failed"] and not result["changed"]
    assert len(result["problems"]) == 2
    assert "vgiris/nosuch does not exist" in result["msg"] and "free extents" in result["msg"]
    assert host.commands("lvcreate") == []


def test_leftover_fails_then_remove_recreates(host, capsys):
    host.add_lv("db_irisops_snap", 10, origin="db", tags=["irisops_snapshot", "irisops_run_old"], fstype="xfs")
    host.free -= 10
    result = run_module({"volumes": ["vgiris/db", "vgiris/journal"], "run_id": "new"}, capsys=capsys)
    assert result["failed"] and "leftover" in result["msg"] and "irisops_run_old" in result["msg"]
    assert host.snapshot_names() == ["db_irisops_snap"]
    # existing=remove, with the leftover still mounted somewhere
    host.mounts.append((253, host.lvs["db_irisops_snap"]["minor"], "/mnt/left", "xfs"))
    host.write_mountinfo()
    result = run_module({"volumes": ["vgiris/db", "vgiris/journal"], "run_id": "new", "existing": "remove"},
                        capsys=capsys)
    assert result["changed"] and not result.get("failed")
    assert [s["action"] for s in result["snapshots"]] == ["recreated", "created"]
    assert "irisops_run_new" in host.lvs["db_irisops_snap"]["tags"]
    assert host.mounts[-1][2] != "/mnt/left"


def test_mounted_uses_nouuid_for_xfs_and_is_idempotent(host, capsys, tmp_path):
    root = str(tmp_path / "snaps")
    result = run_module({"volumes": ["vgiris/db", "vgiris/journal"], "state": "mounted", "mount_root": root,
                         "run_id": "m"}, capsys=capsys)
    mounts = host.commands("mount")
    assert mounts[0][-4:] == ["-o", "ro,nouuid", "/dev/vgiris/db_irisops_snap", root + "/vgiris/db"]
    assert mounts[1][-4:] == ["-o", "ro", "/dev/vgiris/journal_irisops_snap", root + "/vgiris/journal"]
    assert [s["mountpoint"] for s in result["snapshots"]] == [root + "/vgiris/db", root + "/vgiris/journal"]
    assert [s["fstype"] for s in result["snapshots"]] == ["xfs", "ext4"]
    host.calls = []
    again = run_module({"volumes": ["vgiris/db", "vgiris/journal"], "state": "mounted", "mount_root": root,
                        "run_id": "m"}, capsys=capsys)
    assert not again["changed"] and host.commands("mount") == []
    assert [s["fstype"] for s in again["snapshots"]] == ["xfs", "ext4"]


def test_absent_unmounts_removes_and_retries_busy(host, capsys, tmp_path):
    root = str(tmp_path / "snaps")
    run_module({"volumes": ["vgiris/db", "vgiris/journal"], "state": "mounted", "mount_root": root},
               capsys=capsys)
    assert (tmp_path / "snaps" / "vgiris" / "db").is_dir()
    host.busy_removals["db_irisops_snap"] = 2
    result = run_module({"volumes": ["vgiris/db", "vgiris/journal"], "state": "absent", "mount_root": root},
                        capsys=capsys)
    assert result["changed"] and host.snapshot_names() == []
    assert len(host.commands("umount")) == 2
    assert len(host.commands("lvremove")) == 4  # 2 busy answers for db, then success, then journal
    assert not (tmp_path / "snaps" / "vgiris").exists()
    again = run_module({"volumes": ["vgiris/db", "vgiris/journal"], "state": "absent"}, capsys=capsys)
    assert not again["changed"] and [s["action"] for s in again["snapshots"]] == ["absent", "absent"]


@pytest.mark.parametrize("state", ["absent", "unmounted"])
def test_absent_and_unmounted_refuse_to_touch_other_lvs(host, capsys, state):
    result = run_module({"volumes": [{"vg": "vgiris", "lv": "db", "name": "journal"}], "state": state},
                        capsys=capsys)
    assert result["failed"] and "not a snapshot of vgiris/db" in result["msg"]
    assert "refusing to touch it" in result["msg"]
    assert "journal" in host.lvs
    assert not [c for c in host.calls if c[0].rsplit("/", 1)[-1] in ("lvremove", "umount")]


def test_overflowed_snapshot_fails(host, capsys):
    run_module({"volumes": ["vgiris/journal"], "size": "4M", "run_id": "o"}, capsys=capsys)
    host.lvs["journal_irisops_snap"]["state"] = "I"
    host.lvs["journal_irisops_snap"]["percent"] = 100.0
    result = run_module({"volumes": ["vgiris/journal"], "size": "4M", "run_id": "o"}, capsys=capsys)
    assert result["failed"] and "overflowed or invalid" in result["msg"]
    assert result["snapshots"][0]["valid"] is False and result["snapshots"][0]["attr"] == "swi-I-s---"


def test_warns_when_filling_up(host, capsys):
    run_module({"volumes": ["vgiris/journal"], "run_id": "w"}, capsys=capsys)
    host.lvs["journal_irisops_snap"]["percent"] = 91.5
    result = run_module({"volumes": ["vgiris/journal"], "run_id": "w"}, capsys=capsys)
    assert not result.get("failed")
    # ansible-core 2.19 reports warnings as structured summaries; older versions as strings
    texts = [w if isinstance(w, str) else w.get("event", w).get("msg", "") for w in result["warnings"]]
    assert any("91.50% full" in t for t in texts)


def test_unmounted(host, capsys, tmp_path):
    root = str(tmp_path / "snaps")
    run_module({"volumes": ["vgiris/db"], "state": "mounted", "mount_root": root}, capsys=capsys)
    result = run_module({"volumes": ["vgiris/db", "vgiris/journal"], "state": "unmounted", "mount_root": root},
                        capsys=capsys)
    assert result["changed"]
    assert [s["action"] for s in result["snapshots"]] == ["unmounted", "absent"]
    assert host.snapshot_names() == ["db_irisops_snap"]
    again = run_module({"volumes": ["vgiris/db"], "state": "unmounted", "mount_root": root}, capsys=capsys)
    assert not again["changed"]


@pytest.mark.parametrize("volumes,message", [
    (["db"], "names no volume group"),
    ([{"vg": "vgiris", "lv": "db", "colour": "red"}], "unknown keys colour"),
    ([{"vg": "vgiris", "lv": "db", "path": "/iris/db"}], "either path or lv"),
    ([42], "neither a string nor a dictionary"),
    (["/tmp"], "not an LVM logical volume"),
    ([], "volumes is empty"),
])
def test_bad_volumes(host, capsys, volumes, message):
    result = run_module({"volumes": volumes}, capsys=capsys)
    assert result["failed"] and message in result["msg"]
    assert host.commands("lvcreate") == []


def test_volume_forms(host, capsys):
    result = run_module({"volumes": ["db", {"path": "/iris/journal/sub", "size": "8M", "name": "j_snap"}],
                         "vg": "vgiris", "suffix": "_s"}, capsys=capsys)
    assert [(s["vg"], s["origin"], s["name"], s["size"]) for s in result["snapshots"]] == [
        ("vgiris", "db", "db_s", 26 * EXT), ("vgiris", "journal", "j_snap", 2 * EXT)]


def test_check_mode_existing_remove_of_a_mounted_leftover(host, capsys):
    host.add_lv("db_irisops_snap", 10, origin="db", tags=["irisops_snapshot"], fstype="xfs")
    host.free -= 10
    host.mounts.append((253, host.lvs["db_irisops_snap"]["minor"], "/mnt/left", "xfs"))
    host.write_mountinfo()
    result = run_module({"volumes": ["vgiris/db", "vgiris/journal"], "existing": "remove"}, check_mode=True,
                        capsys=capsys)
    assert result["changed"] and not result.get("failed")
    assert [s["action"] for s in result["snapshots"]] == ["recreated", "created"]
    # nothing unmounted or removed; lvremove --test is not even tried on a mounted LV; the new one is dry-run
    assert host.commands("umount") == [] and host.commands("lvremove") == []
    assert [c[-1] for c in host.commands("lvcreate")] == ["vgiris/journal"]
    assert host.snapshot_names() == ["db_irisops_snap"]
