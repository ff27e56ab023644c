# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import sys

import pytest

from ansible_collections.irisops.backup.plugins.module_utils import _lvm

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")

MiB = 1024 ** 2
EXT = 4 * MiB


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


def lv_row(name, vg="vgiris", attr="-wi-ao----", size=512 * MiB, origin="", data_percent="", tags="",
           major="254", minor="0", invalid="", pool="", metadata_percent=""):
    return {
        "lv_name": name, "vg_name": vg, "lv_attr": attr, "lv_size": str(size), "origin": origin,
        "origin_size": "", "data_percent": data_percent, "snap_percent": data_percent,
        "lv_path": "/dev/%s/%s" % (vg, name), "lv_dm_path": "/dev/mapper/%s" % _lvm.dm_name(vg, name),
        "lv_kernel_major": major, "lv_kernel_minor": minor, "lv_tags": tags, "lv_snapshot_invalid": invalid,
        "pool_lv": pool, "metadata_percent": metadata_percent,
    }


def vg_row(name="vgiris", extents=1023, free=511, extent_size=EXT):
    return {
        "vg_name": name, "vg_attr": "wz--n-", "vg_size": str(extents * extent_size),
        "vg_free": str(free * extent_size), "vg_extent_size": str(extent_size), "vg_extent_count": str(extents),
        "vg_free_count": str(free),
    }


def lvs_of(*rows):
    return [_lvm.LogicalVolume(r) for r in rows]


# --------------------------------------------------------------------------------------------------------------
# parsing real reports captured from lvm2 2.03.16 in the test VM (tests/harness/vm)

class TestReports:
    def test_lvs_json_real(self):
        lvs = _lvm.parse_lvs(fixture("lvs_snapshots.json"))
        by_name = dict((lv.name, lv) for lv in lvs)
        db = by_name["db"]
        assert db.is_origin and not db.is_snapshot and db.vg == "vgiris"
        assert db.size % EXT == 0 and db.size > 0
        snap = by_name["db_irisops_snap"]
        assert snap.is_snapshot and snap.origin == "db" and snap.valid and not snap.is_invalid
        assert snap.data_percent is not None and 0 <= snap.data_percent < 100
        assert _lvm.SNAPSHOT_TAG in snap.tags
        assert snap.major >= 0 and snap.minor >= 0
        journal = by_name["journal"]
        assert journal.is_origin or journal.attr.startswith("-")

    def test_lvs_json_invalid_snapshot_real(self):
        lvs = _lvm.parse_lvs(fixture("lvs_invalid.json"))
        snap = [lv for lv in lvs if lv.name == "journal_irisops_snap"][0]
        assert snap.is_snapshot and snap.origin == "journal" and snap.is_invalid
        assert not snap.valid
        assert snap.attrs["state"] == "I"
        assert snap.snapshot_invalid_flag and snap.is_full and snap.size == EXT
        assert not [lv for lv in lvs if not lv.is_snapshot and lv.snapshot_invalid_flag]

    def test_lvs_columns_invalid_snapshot_real(self):
        # captured before pool_lv and metadata_percent joined LV_FIELDS: its 14 columns are the first 14 fields
        lvs = _lvm.parse_lvs(fixture("lvs_invalid.txt"), json_format=False, fields=_lvm.LV_FIELDS[:14])
        by_name = dict((lv.name, lv) for lv in lvs)
        assert by_name["journal_irisops_snap"].is_invalid and by_name["journal_irisops_snap"].is_full
        assert by_name["journal_irisops_snap"].snapshot_invalid_flag
        assert by_name["db_irisops_snap"].valid and not by_name["db_irisops_snap"].snapshot_invalid_flag
        assert not by_name["db"].snapshot_invalid_flag  # "unknown" for LVs that are no snapshots
        assert by_name["db_irisops_snap"].tags == ["irisops_run_1", "irisops_snapshot"]

    def test_mountinfo_real(self):
        mounts = _lvm.parse_mountinfo(fixture("mountinfo.txt"))
        lvs = dict((lv.name, lv) for lv in _lvm.parse_lvs(fixture("lvs_invalid.json")))
        db = lvs["db"]
        assert _lvm.mountpoints_of(mounts, db.major, db.minor) == ["/iris/db"]
        assert [m["fstype"] for m in mounts if m["mountpoint"] == "/iris/db"] == ["xfs"]

    def test_vgs_json_real(self):
        vgs = _lvm.parse_vgs(fixture("vgs.json"))
        assert len(vgs) == 1
        vg = vgs[0]
        assert vg.name == "vgiris" and vg.extent_size == EXT
        assert vg.size == vg.extent_count * vg.extent_size
        assert vg.free == vg.free_count * vg.extent_size

    def test_columns_report(self):
        text = ("  db|vgiris|owi-aos---|536870912|||||/dev/vgiris/db|/dev/mapper/vgiris-db|254|0||||\n"
                "  db_snap|vgiris|swi-a-s---|104857600|db|536870912|12.50|12.50|/dev/vgiris/db_snap|"
                "/dev/mapper/vgiris-db_snap|254|3|irisops_snapshot,irisops_run_7|||\n"
                "  " + "|".join(["pool", "vgiris", "twi-aotz--", "268435456", "", "", "41.20", "", "", "", "254", "5", "",
                                 "", "", "3.10"]) + "\n"
                "  " + "|".join(["thin1_snap", "vgiris", "Vwi-a-tz--", "67108864", "thin1", "", "30.00", "", "", "",
                                 "254", "7", "", "", "pool", ""]) + "\n")
        lvs = _lvm.parse_lvs(text, json_format=False)
        assert [lv.name for lv in lvs] == ["db", "db_snap", "pool", "thin1_snap"]
        assert lvs[2].is_thin_pool and (lvs[2].data_percent, lvs[2].metadata_percent) == (41.2, 3.1)
        assert lvs[3].is_thin_snapshot and lvs[3].pool == "pool"
        assert lvs[1].data_percent == 12.5 and lvs[1].tags == ["irisops_snapshot", "irisops_run_7"]
        assert lvs[1].has_run_tag("7") and not lvs[1].has_run_tag("8")

    def test_columns_report_wrong_field_count(self):
        with pytest.raises(_lvm.LvmError, match="unexpected report line"):
            _lvm.parse_report_columns("a|b\n", ("x", "y", "z"))

    def test_bad_json(self):
        with pytest.raises(_lvm.LvmError, match="cannot parse"):
            _lvm.parse_report_json("Volume group not found", "lv")


class TestAttr:
    @pytest.mark.parametrize("attr,snapshot,origin,thin,invalid,active,is_open", [
        ("swi-a-s---", True, False, False, False, True, False),
        ("swi-aos---", True, False, False, False, True, True),
        ("swi-I-s---", True, False, False, True, False, False),
        ("swi-S-s---", True, False, False, True, False, False),
        ("Swi-a-s---", True, False, False, False, True, False),
        ("owi-aos---", False, True, False, False, True, True),
        ("Owi-a-s---", False, True, False, False, True, False),
        ("Vwi-a-tz--", False, False, True, False, True, False),
        ("-wi-ao----", False, False, False, False, True, True),
        ("-wi-------", False, False, False, False, False, False),
        ("", False, False, False, False, False, False),
    ])
    def test_bits(self, attr, snapshot, origin, thin, invalid, active, is_open):
        lv = _lvm.LogicalVolume(lv_row("x", attr=attr))
        assert lv.is_snapshot is snapshot
        assert lv.is_origin is origin
        assert lv.is_thin is thin
        assert lv.is_invalid is invalid
        assert lv.is_active is active
        assert lv.is_open is is_open

    def test_parse_lv_attr_names(self):
        bits = _lvm.parse_lv_attr("swi-I-s---")
        assert bits["volume_type"] == "s" and bits["permissions"] == "w" and bits["state"] == "I"
        assert bits["target_type"] == "s"
        assert _lvm.parse_lv_attr("sw")["state"] == "-"

    def test_full_snapshot_is_not_valid(self):
        lv = _lvm.LogicalVolume(lv_row("s", attr="swi-a-s---", origin="db", data_percent="100.00"))
        assert lv.is_full and not lv.valid and not lv.is_invalid

    def test_snapshot_invalid_field(self):
        lv = _lvm.LogicalVolume(lv_row("s", attr="swi-a-s---", origin="db", invalid="invalid"))
        assert lv.is_invalid

    def test_percent_falls_back_to_snap_percent(self):
        row = lv_row("s", attr="swi-a-s---", origin="db")
        row["data_percent"] = ""
        row["snap_percent"] = "3.25"
        assert _lvm.LogicalVolume(row).data_percent == 3.25
        row["snap_percent"] = ""
        assert _lvm.LogicalVolume(row).data_percent is None


# --------------------------------------------------------------------------------------------------------------
class TestSizes:
    @pytest.mark.parametrize("text,expected", [
        ("512M", 512 * MiB), ("512m", 512 * MiB), ("2G", 2 * 1024 * MiB), ("2g", 2 * 1024 * MiB),
        ("1.5g", 1536 * MiB), ("1.5GiB", 1536 * MiB), ("100", 100 * MiB), ("100MiB", 100 * MiB),
        ("4096s", 2 * MiB), ("4096S", 2 * MiB), ("1024k", MiB), ("1048576b", MiB), ("1t", 1024 ** 4),
        (" 8M ", 8 * MiB), ("0.5m", MiB // 2), (".5m", MiB // 2), (7, 7 * MiB),
    ])
    def test_absolute(self, text, expected):
        spec = _lvm.parse_size(text)
        assert spec.kind == "bytes" and spec.value == expected and not spec.is_percent

    @pytest.mark.parametrize("text,kind,percent", [
        ("20%ORIGIN", "ORIGIN", 20), ("100%ORIGIN", "ORIGIN", 100), ("50%FREE", "FREE", 50),
        ("10%VG", "VG", 10), ("12.5%origin", "ORIGIN", 12.5), ("1 % FREE", "FREE", 1),
    ])
    def test_percent(self, text, kind, percent):
        spec = _lvm.parse_size(text)
        assert spec.kind == kind and float(spec.value) == percent and spec.is_percent

    @pytest.mark.parametrize("text,message", [
        ("", "empty"), ("  ", "empty"), ("abc", "not understood"), ("12X", "not understood"),
        ("-5G", "not understood"), ("+5G", "not understood"), ("5GB", "not understood"), ("1e3M", "not understood"),
        ("101%ORIGIN", "more than 100%"), ("0%FREE", "more than 0%"), ("20%PVS", "ORIGIN, FREE or VG"),
        ("20%", "not understood"), ("%ORIGIN", "not understood"), ("20%%ORIGIN", "not understood"),
        ("0M", "more than 0"), ("0", "more than 0"), (None, "empty"), (True, "not understood"),
    ])
    def test_garbage(self, text, message):
        with pytest.raises(_lvm.SizeError, match=message) as info:
            _lvm.parse_size(text)
        assert "ORIGIN" in info.value.msg or "empty" in info.value.msg or "more than" in info.value.msg

    def test_error_message_says_what_is_accepted(self):
        with pytest.raises(_lvm.SizeError) as info:
            _lvm.parse_size("lots")
        assert "512M" in info.value.msg and "N%ORIGIN" in info.value.msg

    @pytest.mark.parametrize("text,expected", [
        ("4M", 1), ("4.1M", 2), ("1M", 1), ("8M", 2), ("9M", 3), ("1b", 1), ("512M", 128),
    ])
    def test_absolute_rounds_up_to_extents(self, text, expected):
        assert _lvm.size_to_extents(_lvm.parse_size(text), EXT) == expected

    def test_origin_rounds_up(self):
        spec = _lvm.parse_size("20%ORIGIN")
        assert _lvm.size_to_extents(spec, EXT, origin_extents=128) == 26  # 25.6 -> 26
        assert _lvm.size_to_extents(spec, EXT, origin_extents=10) == 2
        assert _lvm.size_to_extents(_lvm.parse_size("100%ORIGIN"), EXT, origin_extents=128) == 128
        assert _lvm.size_to_extents(_lvm.parse_size("1%ORIGIN"), EXT, origin_extents=1) == 1

    def test_free_and_vg_round_down(self):
        assert _lvm.size_to_extents(_lvm.parse_size("50%FREE"), EXT, free_extents=9) == 4
        assert _lvm.size_to_extents(_lvm.parse_size("10%VG"), EXT, vg_extents=1023) == 102
        assert _lvm.size_to_extents(_lvm.parse_size("100%FREE"), EXT, free_extents=9) == 9

    def test_zero_extents_is_an_error(self):
        with pytest.raises(_lvm.SizeError, match="less than one extent"):
            _lvm.size_to_extents(_lvm.parse_size("10%FREE"), EXT, free_extents=5)
        with pytest.raises(_lvm.SizeError, match="less than one extent"):
            _lvm.size_to_extents(_lvm.parse_size("50%FREE"), EXT, free_extents=0)

    def test_missing_base(self):
        with pytest.raises(_lvm.SizeError, match="not known"):
            _lvm.size_to_extents(_lvm.parse_size("10%ORIGIN"), EXT)

    def test_fractions_are_exact(self):
        # 0.1 + 0.2 style float errors must not add an extent: 30% of 10 is exactly 3
        assert _lvm.size_to_extents(_lvm.parse_size("30%ORIGIN"), EXT, origin_extents=10) == 3

    def test_human_size(self):
        assert _lvm.human_size(512) == "512 B"
        assert _lvm.human_size(4 * MiB) == "4.00 MiB"
        assert _lvm.human_size(None) == "?"


# --------------------------------------------------------------------------------------------------------------
class TestNames:
    @pytest.mark.parametrize("dm,expected", [
        ("vgiris-db", ("vgiris", "db", None)),
        ("my--vg-db--1", ("my-vg", "db-1", None)),
        ("vg-lv--with--dashes", ("vg", "lv-with-dashes", None)),
        ("a--b--c-d", ("a-b-c", "d", None)),
        ("vgiris-db_irisops_snap-cow", ("vgiris", "db_irisops_snap", "cow")),
        ("vgiris-db-real", ("vgiris", "db", "real")),
        ("vg---x-lv", ("vg-", "x", "lv")),
    ])
    def test_split_dm_name(self, dm, expected):
        assert _lvm.split_dm_name(dm) == expected

    @pytest.mark.parametrize("dm", ["vgiris", "-lv", "vg-", ""])
    def test_split_dm_name_rejects(self, dm):
        with pytest.raises(_lvm.LvmError):
            _lvm.split_dm_name(dm)

    @pytest.mark.parametrize("vg,lv", [("vgiris", "db"), ("my-vg", "db-1"), ("a-b", "c--d")])
    def test_dm_name_roundtrip(self, vg, lv):
        assert _lvm.split_dm_name(_lvm.dm_name(vg, lv)) == (vg, lv, None)

    @pytest.mark.parametrize("source,expected", [
        ("/dev/mapper/vgiris-db", ("vgiris", "db")),
        ("/dev/mapper/my--vg-db--1", ("my-vg", "db-1")),
        ("/dev/mapper/vgiris-db[/sub/dir]", ("vgiris", "db")),
        ("/dev/vgiris/journal", ("vgiris", "journal")),
        ("/dev/mapper/vgiris-db-real", None),
        ("/dev/sda1", None),
        ("/dev/disk/by-id/foo", None),
        ("tmpfs", None),
        ("", None),
    ])
    def test_source_to_vg_lv(self, source, expected):
        assert _lvm.source_to_vg_lv(source) == expected

    @pytest.mark.parametrize("name,ok", [
        ("db_irisops_snap", True), ("a.b+c-d", True), ("-x", False), ("a/b", False), ("a b", False),
        ("snapshot1", False), ("pvmove0", False), ("x_tmeta", False), ("x" * 127, True), ("x" * 128, False),
        ("", False), (".", False), ("..", False),
    ])
    def test_validate_lv_name(self, name, ok):
        assert (_lvm.validate_lv_name(name) is None) is ok

    def test_run_tag_sanitised(self):
        assert _lvm.run_tag("4711") == "irisops_run_4711"
        assert _lvm.run_tag("2026-11-23 10:00") == "irisops_run_2026-11-23_10:00"
        assert _lvm.run_tag("a,b;c") == "irisops_run_a_b_c"


class TestMounts:
    MOUNTINFO = (
        "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        "40 22 253:0 / /iris/db rw,relatime shared:20 - xfs /dev/mapper/vgiris-db rw,attr2\n"
        "41 22 253:1 / /iris/journal rw,relatime shared:21 - ext4 /dev/mapper/vgiris-journal rw\n"
        "42 22 253:4 / /run/irisops/snapshots/vgiris/db ro,relatime shared:22 - xfs "
        "/dev/mapper/vgiris-db_irisops_snap ro,nouuid\n"
        "43 22 253:4 / /mnt/with\\040space ro,relatime - xfs /dev/mapper/vgiris-db_irisops_snap ro\n"
        "44 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs udev rw\n"
    )

    def test_parse_mountinfo(self):
        mounts = _lvm.parse_mountinfo(self.MOUNTINFO)
        assert len(mounts) == 6
        assert mounts[1]["fstype"] == "xfs" and mounts[1]["source"] == "/dev/mapper/vgiris-db"
        assert (mounts[1]["major"], mounts[1]["minor"]) == (253, 0)
        assert mounts[4]["mountpoint"] == "/mnt/with space"

    def test_mountpoints_of(self):
        mounts = _lvm.parse_mountinfo(self.MOUNTINFO)
        assert _lvm.mountpoints_of(mounts, 253, 4) == ["/run/irisops/snapshots/vgiris/db", "/mnt/with space"]
        assert _lvm.mountpoints_of(mounts, 253, 9) == []

    def test_mountinfo_with_optional_fields_missing(self):
        mounts = _lvm.parse_mountinfo("40 22 253:0 / /a rw - xfs /dev/x rw\ngarbage\n")
        assert mounts[0]["mountpoint"] == "/a" and mounts[0]["fstype"] == "xfs"

    def test_findmnt_pairs(self):
        out = 'SOURCE="/dev/mapper/vgiris-db" TARGET="/iris/d\\x20b" FSTYPE="xfs" MAJ:MIN="253:0"\n'
        info = _lvm.parse_findmnt_pairs(out)
        assert info == {"SOURCE": "/dev/mapper/vgiris-db", "TARGET": "/iris/d b", "FSTYPE": "xfs",
                        "MAJ:MIN": "253:0"}
        assert _lvm.parse_findmnt_pairs("") == {}

    def test_mount_options(self):
        assert _lvm.mount_options("xfs") == ["ro", "nouuid"]
        assert _lvm.mount_options("ext4") == ["ro"]
        assert _lvm.mount_options("ext4", ["noexec", "ro"]) == ["ro", "noexec"]


# --------------------------------------------------------------------------------------------------------------
class TestArgv:
    def test_report_json(self):
        argv = _lvm.report_argv("lvs", ("lv_name", "lv_attr"))
        assert argv == ["lvs", "--units", "b", "--nosuffix", "-o", "lv_name,lv_attr", "--reportformat", "json"]

    def test_report_columns(self):
        argv = _lvm.report_argv("vgs", ("vg_name",), json_format=False, names=["vgiris"])
        assert argv == ["vgs", "--units", "b", "--nosuffix", "-o", "vg_name", "--noheadings", "--separator", "|",
                        "vgiris"]

    def test_lvcreate(self):
        argv = _lvm.lvcreate_snapshot_argv("vgiris", "db", "db_snap", 26, tags=["irisops_snapshot", "irisops_run_1"])
        assert argv == ["lvcreate", "--yes", "--snapshot", "--extents", "26", "--name", "db_snap",
                        "--addtag", "irisops_snapshot", "--addtag", "irisops_run_1", "vgiris/db"]

    def test_lvcreate_test_mode(self):
        argv = _lvm.lvcreate_snapshot_argv("vgiris", "db", "db_snap", 1, test=True)
        assert argv[:3] == ["lvcreate", "--yes", "--test"] and argv[-1] == "vgiris/db"

    def test_lvremove(self):
        assert _lvm.lvremove_argv("vgiris", "s") == ["lvremove", "--yes", "--force", "vgiris/s"]
        assert _lvm.lvremove_argv("vgiris", "s", test=True) == ["lvremove", "--yes", "--force", "--test", "vgiris/s"]

    def test_mount(self):
        assert _lvm.mount_argv("/dev/vgiris/s", "/m", "xfs") == ["mount", "-t", "xfs", "-o", "ro,nouuid",
                                                                 "/dev/vgiris/s", "/m"]
        assert _lvm.mount_argv("/dev/vgiris/s", "/m", None) == ["mount", "-o", "ro", "/dev/vgiris/s", "/m"]

    def test_findmnt(self):
        assert _lvm.findmnt_argv("/iris/db") == ["findmnt", "--noheadings", "--pairs", "--output",
                                                 "SOURCE,TARGET,FSTYPE,MAJ:MIN", "--target", "/iris/db"]


# --------------------------------------------------------------------------------------------------------------
def origin_set(free=511, pool_data="10.00", pool_meta="5.00"):
    lvs = lvs_of(lv_row("db", size=512 * MiB, minor="0"), lv_row("journal", size=256 * MiB, minor="1"),
                 lv_row("pool", attr="twi-aotz--", size=256 * MiB, data_percent=pool_data, metadata_percent=pool_meta),
                 lv_row("thin1", attr="Vwi-a-tz--", size=64 * MiB, pool="pool", data_percent="30.00"),
                 lv_row("old", attr="swi-a-s---", origin="db", size=40 * MiB))
    vgs = [_lvm.VolumeGroup(vg_row(free=free))]
    return lvs, vgs


def req(lv, size="20%ORIGIN", name=None, vg="vgiris"):
    return _lvm.SnapshotRequest(vg, lv, name or lv + _lvm.DEFAULT_SUFFIX, size)


class TestPlan:
    def test_two_origins(self):
        lvs, vgs = origin_set()
        plans = _lvm.plan_snapshots([req("db"), req("journal", "64M")], lvs, vgs)
        assert [(p.request.name, p.action, p.extents) for p in plans] == [
            ("db_irisops_snap", "create", 26), ("journal_irisops_snap", "create", 16)]
        assert plans[0].size == 26 * EXT

    def test_free_space_for_all_together(self):
        lvs, vgs = origin_set(free=40)
        # each one alone fits (26 and 16 extents), together (42) they do not
        with pytest.raises(_lvm.PreflightError) as info:
            _lvm.plan_snapshots([req("db"), req("journal", "64M")], lvs, vgs)
        msg = info.value.msg
        assert "nothing was created" in msg and "40 free extents" in msg and "need 42" in msg

    def test_exactly_fits(self):
        lvs, vgs = origin_set(free=42)
        assert len(_lvm.plan_snapshots([req("db"), req("journal", "64M")], lvs, vgs)) == 2

    def test_percent_free_is_sequential(self):
        lvs, vgs = origin_set(free=100)
        plans = _lvm.plan_snapshots([req("db", "50%FREE"), req("journal", "50%FREE")], lvs, vgs)
        assert [p.extents for p in plans] == [50, 25]

    def test_all_problems_reported_at_once(self):
        lvs, vgs = origin_set()
        requests = [req("db", "lots"), req("nosuch"), req("x", vg="novg"), req("thin1"), req("old"),
                    req("journal", "20%ORIGIN", name="bad name"), req("pool")]
        with pytest.raises(_lvm.PreflightError) as info:
            _lvm.plan_snapshots(requests, lvs, vgs)
        problems = info.value.problems
        assert len(problems) == 6       # thin1 is fine: it gets a thin snapshot
        text = "\n".join(problems)
        assert "'lots' is not understood" in text
        assert "origin logical volume vgiris/nosuch does not exist" in text
        assert "volume group 'novg'" in text and "vgiris" in text
        assert "vgiris/pool is a thin pool" in text
        assert "itself a snapshot" in text
        assert "'bad name'" in text

    def test_leftover_fails_by_default(self):
        lvs, vgs = origin_set()
        with pytest.raises(_lvm.PreflightError) as info:
            _lvm.plan_snapshots([req("db", name="old")], lvs, vgs)
        msg = info.value.msg
        assert "vgiris/old of vgiris/db already exists" in msg and "leftover" in msg
        assert "state=absent" in msg and "existing=remove" in msg

    def test_leftover_reuse_and_remove(self):
        lvs, vgs = origin_set(free=0)
        plans = _lvm.plan_snapshots([req("db", name="old")], lvs, vgs, existing="reuse")
        assert plans[0].action == "keep" and plans[0].existing.name == "old"
        # remove: the 10 extents of the leftover are freed and then used again
        plans = _lvm.plan_snapshots([req("db", "40M", name="old")], lvs, vgs, existing="remove")
        assert plans[0].action == "recreate" and plans[0].extents == 10
        with pytest.raises(_lvm.PreflightError, match="need 11"):
            _lvm.plan_snapshots([req("db", "41M", name="old")], lvs, vgs, existing="remove")

    def test_own_run_is_kept_regardless_of_existing(self):
        lvs, vgs = origin_set()
        lvs.append(_lvm.LogicalVolume(lv_row("db_irisops_snap", attr="swi-a-s---", origin="db",
                                             tags="irisops_snapshot,irisops_run_42")))
        plans = _lvm.plan_snapshots([req("db")], lvs, vgs, existing="fail", run_id="42")
        assert plans[0].action == "keep"
        with pytest.raises(_lvm.PreflightError, match="leftover"):
            _lvm.plan_snapshots([req("db")], lvs, vgs, existing="fail", run_id="43")

    def test_name_taken_by_other_lv_always_fails(self):
        lvs, vgs = origin_set()
        for existing in ("fail", "remove", "reuse"):
            with pytest.raises(_lvm.PreflightError, match="not a snapshot of vgiris/journal"):
                _lvm.plan_snapshots([req("journal", name="db")], lvs, vgs, existing=existing)
            with pytest.raises(_lvm.PreflightError, match="not a snapshot of vgiris/journal"):
                _lvm.plan_snapshots([req("journal", name="old")], lvs, vgs, existing=existing)

    def test_a_thin_volume_gets_a_thin_snapshot_beside_thick_ones(self):
        lvs, vgs = origin_set(free=26)          # exactly db's 26 extents: the thin snapshot takes none of the VG
        plans = _lvm.plan_snapshots([req("db"), req("thin1")], lvs, vgs)
        assert [(p.request.lv, p.thin, p.pool, p.lvcreate_extents) for p in plans] == [
            ("db", False, None, 26), ("thin1", True, "pool", None)]
        assert _lvm.lvcreate_snapshot_argv("vgiris", "thin1", "thin1_s", plans[1].lvcreate_extents,
                                           tags=["irisops_snapshot"]) == [
            "lvcreate", "--yes", "--snapshot", "--setactivationskip", "n", "--name", "thin1_s",
            "--addtag", "irisops_snapshot", "vgiris/thin1"]
        assert _lvm.lvcreate_snapshot_argv("vgiris", "db", "db_s", 26, test=True) == [
            "lvcreate", "--yes", "--test", "--snapshot", "--extents", "26", "--name", "db_s", "vgiris/db"]

    @pytest.mark.parametrize("data,meta,limit,refused", [
        ("79.99", "5.00", 80, []), ("80.00", "5.00", 80, ["data 80.00%"]), ("10.00", "85.50", 80, ["metadata 85.50%"]),
        ("95.00", "99.00", 80, ["data 95.00%", "metadata 99.00%"]), ("85.00", "85.00", 90, []), ("", "", 80, [])])
    def test_the_thin_pool_must_have_room(self, data, meta, limit, refused):
        lvs, vgs = origin_set(pool_data=data, pool_meta=meta)
        if not refused:
            assert _lvm.plan_snapshots([req("thin1")], lvs, vgs, thin_pool_max_percent=limit)[0].thin
            return
        with pytest.raises(_lvm.PreflightError) as info:
            _lvm.plan_snapshots([req("db"), req("thin1")], lvs, vgs, thin_pool_max_percent=limit)
        assert len(info.value.problems) == 1, info.value.problems
        msg = info.value.problems[0]
        assert msg.startswith("thin pool vgiris/pool of vgiris/thin1 is too full for a snapshot (%s; the limit is %g%%)"
                              % (", ".join(refused), limit)), msg
        assert "Next: extend the pool (lvextend -L +SIZE vgiris/pool" in msg

    def test_a_thin_volume_whose_pool_is_not_listed(self):
        lvs = lvs_of(lv_row("thin1", attr="Vwi-a-tz--", pool="gone"))
        with pytest.raises(_lvm.PreflightError, match="thin volume vgiris/thin1: its pool vgiris/gone is not listed"):
            _lvm.plan_snapshots([req("thin1")], lvs, [_lvm.VolumeGroup(vg_row())])

    def test_a_thin_leftover_is_a_leftover_and_thin_snapshot_rows(self):
        lvs, vgs = origin_set()
        snap = _lvm.LogicalVolume(lv_row("thin1_irisops_snap", attr="Vwi-a-tz-k", origin="thin1", pool="pool",
                                         data_percent="100.00", tags="irisops_snapshot,irisops_run_7"))
        assert snap.is_thin_snapshot and snap.is_any_snapshot and not snap.is_snapshot
        assert not snap.is_full and snap.valid        # 100% mapped is not an overflow
        assert not lvs[3].is_thin_snapshot and lvs[3].is_thin and lvs[3].pool == "pool"
        assert lvs[2].metadata_percent == 5.0
        with pytest.raises(_lvm.PreflightError, match="vgiris/thin1_irisops_snap of vgiris/thin1 already exists"):
            _lvm.plan_snapshots([req("thin1")], lvs + [snap], vgs)
        plans = _lvm.plan_snapshots([req("thin1")], lvs + [snap], vgs, existing="remove")
        assert plans[0].action == "recreate" and plans[0].thin
        plans = _lvm.plan_snapshots([req("thin1")], lvs + [snap], vgs, run_id="7")
        assert plans[0].action == "keep" and plans[0].extents == 0

    def test_same_name_twice(self):
        lvs, vgs = origin_set()
        with pytest.raises(_lvm.PreflightError, match="requested twice"):
            _lvm.plan_snapshots([req("db", name="s1"), req("journal", name="s1")], lvs, vgs)

    def test_bad_existing_value(self):
        lvs, vgs = origin_set()
        with pytest.raises(ValueError):
            _lvm.plan_snapshots([req("db")], lvs, vgs, existing="maybe")


# --------------------------------------------------------------------------------------------------------------
class FakeRunner:
    """Answers commands from a script of (predicate, (rc, out, err)); records every argv."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = []

    def __call__(self, argv, data=None, timeout=None):
        self.calls.append(list(argv))
        for index, (match, answer) in enumerate(self.answers):
            if match(argv):
                if isinstance(answer, list):
                    result = answer.pop(0)
                    if not answer:
                        self.answers.pop(index)
                    return result
                return answer
        raise AssertionError("unexpected command %r" % (argv,))


def which(name):
    return "/usr/sbin/" + name if not name.startswith("/") else name


def has(*words):
    """Predicate: every word is an argument, or the program's base name."""
    def match(argv):
        names = set(argv) | set([argv[0].rsplit("/", 1)[-1]])
        return all(w in names for w in words)
    return match


class TestAutoextend:
    DEFAULTS = {"snapshot_autoextend_threshold": 100, "snapshot_autoextend_percent": 20,
                "thin_pool_autoextend_threshold": 100, "thin_pool_autoextend_percent": 20, "monitoring": 1,
                "dmeventd_running": True}

    def test_lvmconfig_is_read_as_lvm_uses_it(self):
        runner = FakeRunner([(has("lvmconfig"), (0, "snapshot_autoextend_threshold=70\nmonitoring=1\n"
                                                    'thin_pool_autoextend_percent=20\nsome_text="x y"\n', ""))])
        got = _lvm.Lvm(runner=runner, which=which).autoextend()
        assert runner.calls[0] == ["/usr/sbin/lvmconfig", "--typeconfig", "full"] + list(_lvm.AUTOEXTEND_SETTINGS)
        assert (got["snapshot_autoextend_threshold"], got["monitoring"], got["some_text"]) == (70, 1, "x y")
        assert got["dmeventd_running"] in (True, False, None)

    def test_lvmconfig_failing_or_missing_is_reported_not_raised(self):
        runner = FakeRunner([(has("lvmconfig"), (3, "", "  Unrecognised option --typeconfig\n"))])
        assert "Unrecognised option" in _lvm.Lvm(runner=runner, which=which).autoextend()["error"]
        assert "not found" in _lvm.Lvm(runner=FakeRunner([]), which=lambda n: None).autoextend()["error"]
        assert _lvm.autoextend_warnings({"error": "x"}, thin_pools=["vg/p"], thick=True) == []

    @pytest.mark.parametrize("pool_t,snap_t,monitoring,dmeventd,thin,thick,want", [
        (100, 100, 1, True, True, True, ["thin pool autoextend is off"]),
        (100, 100, 1, True, False, True, []),
        (80, 100, 1, True, True, False, []),
        (80, 100, 0, True, True, False, ["nothing will act on it: activation/monitoring=0"]),
        (80, 100, 1, False, True, False, ["dmeventd not running"]),
        (100, 70, 1, False, False, True, ["dmeventd not running"]),
        (100, 70, 1, False, True, False, ["thin pool autoextend is off"]),
    ])
    def test_what_the_settings_mean_for_the_snapshots(self, pool_t, snap_t, monitoring, dmeventd, thin, thick, want):
        settings = dict(self.DEFAULTS, thin_pool_autoextend_threshold=pool_t, snapshot_autoextend_threshold=snap_t,
                        monitoring=monitoring, dmeventd_running=dmeventd)
        got = _lvm.autoextend_warnings(settings, thin_pools=["vg/tpool"] if thin else [], thick=thick)
        assert len(got) == len(want) and all(w in g for w, g in zip(want, got)), got

    def test_dmeventd_is_found_by_its_process_name(self, tmp_path):
        for pid, comm in (("1", "systemd"), ("77", "dmeventd"), ("self", "x")):
            (tmp_path / pid).mkdir()
            (tmp_path / pid / "comm").write_text(comm + "\n")
        assert _lvm.dmeventd_running(str(tmp_path)) is True
        (tmp_path / "77" / "comm").write_text("bash\n")
        assert _lvm.dmeventd_running(str(tmp_path)) is False
        assert _lvm.dmeventd_running(str(tmp_path / "nothing")) is None


class TestLvmFacade:
    def test_json_fallback_to_columns(self):
        runner = FakeRunner([
            (has("--reportformat"), (3, "", '  Unrecognised option --reportformat\n')),
            (has("--separator"), (0, "  vgiris|wz--n-|100|50|4|25|12\n", "")),
        ])
        lvm = _lvm.Lvm(runner=runner, which=which)
        vgs = lvm.vgs()
        assert vgs[0].name == "vgiris" and vgs[0].free_count == 12
        assert lvm.json_reports is False

    def test_report_failure_is_an_error(self):
        runner = FakeRunner([(has("lvs"), (5, "", "  Volume group \"x\" not found\n"))])
        with pytest.raises(_lvm.LvmError, match="not found"):
            _lvm.Lvm(runner=runner, which=which).lvs()

    def test_falls_back_to_lvm_binary(self):
        runner = FakeRunner([(has("lvs"), (0, json.dumps({"report": [{"lv": []}]}), ""))])
        lvm = _lvm.Lvm(runner=runner, which=lambda n: "/sbin/lvm" if n == "lvm" else None)
        assert lvm.lvs() == []
        assert runner.calls[0][:2] == ["/sbin/lvm", "lvs"]

    def test_missing_binary(self):
        lvm = _lvm.Lvm(runner=FakeRunner([]), which=lambda n: None)
        with pytest.raises(_lvm.LvmError, match="findmnt' not found.*util-linux"):
            lvm.findmnt("/x")

    def test_remove_retries_while_in_use(self):
        sleeps = []
        runner = FakeRunner([
            (has("umount"), (0, "", "")),
            (has("settle", "--timeout=10"), (0, "", "")),
            (has("lvremove"), [(5, "", "  Logical volume vgiris/s in use.\n"),
                               (5, "", "  Logical volume vgiris/s in use.\n"), (0, "", "")]),
        ])
        lvm = _lvm.Lvm(runner=runner, which=which, sleep=sleeps.append)
        lvm.remove_lv("vgiris", "s", mountpoints=["/m"])
        cmds = [c[0].rsplit("/", 1)[-1] for c in runner.calls]
        assert cmds == ["umount", "lvremove", "udevadm", "lvremove", "udevadm", "lvremove"]
        assert sleeps == [1.0, 1.0]

    def test_remove_gives_up(self):
        runner = FakeRunner([
            (has("settle", "--timeout=10"), (0, "", "")),
            (has("lvremove"), (5, "", "  Logical volume vgiris/s in use.\n")),
        ])
        lvm = _lvm.Lvm(runner=runner, which=which, sleep=lambda s: None)
        with pytest.raises(_lvm.LvmError, match="after 5 attempt"):
            lvm.remove_lv("vgiris", "s")

    def test_remove_other_error_not_retried(self):
        runner = FakeRunner([(has("lvremove"), (5, "", "  Failed to find logical volume \"vgiris/s\"\n"))])
        lvm = _lvm.Lvm(runner=runner, which=which, sleep=lambda s: None)
        with pytest.raises(_lvm.LvmError, match="after 1 attempt"):
            lvm.remove_lv("vgiris", "s")

    def test_umount_busy(self):
        runner = FakeRunner([(has("umount"), (32, "", "umount: /m: target is busy.\n"))])
        lvm = _lvm.Lvm(runner=runner, which=which, sleep=lambda s: None)
        with pytest.raises(_lvm.LvmError, match="fuser -vm /m"):
            lvm.umount("/m")
        assert len(runner.calls) == 3

    def test_umount_not_mounted_is_fine(self):
        runner = FakeRunner([(has("umount"), (32, "", "umount: /m: not mounted.\n"))])
        _lvm.Lvm(runner=runner, which=which).umount("/m")

    def test_lv_for_path_by_device_number_and_by_name(self):
        lvs = lvs_of(lv_row("db", major="253", minor="0"), lv_row("journal", major="253", minor="1"))
        runner = FakeRunner([
            (lambda argv: argv[-1].startswith("/iris/journal"),
             (0, 'SOURCE="/dev/mapper/vgiris-journal" TARGET="/iris/journal" FSTYPE="ext4" MAJ:MIN="253:1"\n', "")),
            (has("/iris/db"), (0, 'SOURCE="/dev/vgiris/db" TARGET="/iris/db" FSTYPE="xfs" MAJ:MIN=""\n', "")),
            (has("/tmp"), (0, 'SOURCE="/dev/vda" TARGET="/" FSTYPE="ext4" MAJ:MIN="254:1"\n', "")),
        ])
        lvm = _lvm.Lvm(runner=runner, which=which)
        assert lvm.lv_for_path("/iris/journal/sub", lvs).name == "journal"
        assert lvm.lv_for_path("/iris/db", lvs).name == "db"
        with pytest.raises(_lvm.LvmError, match="not an LVM logical volume"):
            lvm.lv_for_path("/tmp", lvs)

    def test_records_commands(self):
        runner = FakeRunner([(has("lvcreate"), (0, "", ""))])
        lvm = _lvm.Lvm(runner=runner, which=which)
        lvm.create_snapshot("vgiris", "db", "s", 3, test=True)
        assert lvm.commands[0]["cmd"][0] == "/usr/sbin/lvcreate" and lvm.commands[0]["rc"] == 0
        assert "--test" in lvm.commands[0]["cmd"]

    def test_failure_carries_command(self):
        runner = FakeRunner([(has("lvcreate"), (5, "", "  Volume group \"vgiris\" has insufficient free space\n"))])
        lvm = _lvm.Lvm(runner=runner, which=which)
        with pytest.raises(_lvm.LvmError) as info:
            lvm.create_snapshot("vgiris", "db", "s", 3)
        details = info.value.as_dict()
        assert details["rc"] == 5 and "lvcreate" in details["cmd"] and "insufficient" in details["msg"]


class TestSubprocessRunner:
    def test_runs_with_c_locale_and_no_stdin(self):
        rc, out, err = _lvm.subprocess_runner(
            [sys.executable, "-c", "import os,sys; print(os.environ['LC_ALL']); print(repr(sys.stdin.read()))"])
        assert rc == 0 and out.splitlines() == ["C", "''"]

    def test_feeds_data(self):
        rc, out, err = _lvm.subprocess_runner([sys.executable, "-c", "import sys; print(sys.stdin.read()[::-1])"],
                                              data="abc")
        assert out.strip() == "cba"

    def test_timeout_kills(self):
        rc, out, err = _lvm.subprocess_runner([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
        assert rc is None and "timed out" in err

    def test_find_binary(self):
        assert _lvm.find_binary("sh")
        assert _lvm.find_binary("surely-no-such-binary-here") is None


def test_remove_dry_run_of_a_mounted_lv_is_predicted():
    runner = FakeRunner([])
    _lvm.Lvm(runner=runner, which=which).remove_lv("vgiris", "s", mountpoints=["/m"], test=True)
    assert runner.calls == []


def test_remove_dry_run_uses_lvm_test():
    runner = FakeRunner([(has("lvremove", "--test"), (0, "", ""))])
    _lvm.Lvm(runner=runner, which=which).remove_lv("vgiris", "s", test=True)
    assert len(runner.calls) == 1


def test_remove_mountpoint(tmp_path):
    root = tmp_path / "root"
    (root / "vg" / "a").mkdir(parents=True)
    (root / "vg" / "b").mkdir()
    assert _lvm.Lvm.remove_mountpoint(str(root / "vg" / "a"), str(root)) == [str(root / "vg" / "a")]
    assert (root / "vg").is_dir()  # b is still there
    assert _lvm.Lvm.remove_mountpoint(str(root / "vg" / "b"), str(root)) == [str(root / "vg" / "b"), str(root / "vg")]
    assert root.is_dir()
    # never outside the root
    other = tmp_path / "other"
    other.mkdir()
    assert _lvm.Lvm.remove_mountpoint(str(other), str(root)) == []
    assert other.is_dir()
