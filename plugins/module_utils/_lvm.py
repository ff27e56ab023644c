# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
#
# Standard library only, no ansible import: an on-host program can use a verbatim copy of this file.

"""Everything the collection knows about LVM.

* running ``lvs``/``vgs``/``lvcreate``/``lvremove``/``findmnt``/``mount``/``umount`` through a *runner*
  ``runner(argv, data=None, timeout=None) -> (rc, stdout, stderr)`` (argv is a list, no shell; ``rc`` is ``None``
  on timeout), the same contract as ``_iris.py``;
* parsing their machine-readable reports (JSON report format, or ``--noheadings --separator``) and ``lv_attr``;
* size arithmetic (absolute sizes with units, ``N%ORIGIN``, ``N%FREE``, ``N%VG``) rounded to extents;
* the preflight of a set of snapshots (origins exist, no leftovers, free space for all of them);
* mapping a directory to the LV that holds it (``findmnt`` + device numbers, ``/dev/mapper`` names);
* read-only mounts of snapshots (``nouuid`` for XFS) and a robust removal.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import math
import os
import re
import shutil
import threading
import time
from fractions import Fraction

try:
    from ansible_collections.irisops.backup.plugins.module_utils import _run
except ImportError:  # an on-host copy (irisops-backup): the engine files side by side
    import _run  # pylint: disable=import-error

# LVM needs --yes (2.02.99+) so that it never waits for an answer on stdin, and --reportformat json (2.02.158+).
MIN_LVM_VERSION = "2.02.158"

#: Seconds an overdue lvcreate gets, after the instances were thawed, to finish by itself before it is killed.
LVCREATE_GRACE = 30

# Tags put on every snapshot this collection creates. RUN_TAG_PREFIX + run id marks the run that created it.
SNAPSHOT_TAG = "irisops_snapshot"
RUN_TAG_PREFIX = "irisops_run_"
DEFAULT_SUFFIX = "_irisops_snap"

LV_FIELDS = (
    "lv_name", "vg_name", "lv_attr", "lv_size", "origin", "origin_size", "data_percent", "snap_percent",
    "lv_path", "lv_dm_path", "lv_kernel_major", "lv_kernel_minor", "lv_tags", "lv_snapshot_invalid",
    "pool_lv", "metadata_percent",
)
VG_FIELDS = ("vg_name", "vg_attr", "vg_size", "vg_free", "vg_extent_size", "vg_extent_count", "vg_free_count")

#: A thin snapshot shares its origin's thin pool: while it exists, every block the instance rewrites takes new pool
#: space, and a full pool stops the writes of every volume in it (production included).  The preflight refuses,
#: before anything is frozen, when the pool's data or metadata is at or above this percentage - dmeventd's first
#: "thin pool is now 80% full" warning, i.e. the level at which LVM itself starts to worry.
THIN_POOL_MAX_PERCENT = 80.0
#: lvm.conf settings of LVM's own growth of classic snapshots and thin pools: dmeventd extends one by ``_percent`` once
#: it passes ``_threshold`` percent full; 100 turns it off, ``monitoring`` must be on (lvm.conf(5)).  The collection
#: reports them and never changes them.
AUTOEXTEND_SETTINGS = ("activation/snapshot_autoextend_threshold", "activation/snapshot_autoextend_percent",
                       "activation/thin_pool_autoextend_threshold", "activation/thin_pool_autoextend_percent",
                       "activation/monitoring")
MOUNTINFO_PATH = "/proc/self/mountinfo"
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/bin", "/bin")

UNIT_FACTORS = {
    "b": 1, "s": 512, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4, "p": 1024 ** 5, "e": 1024 ** 6,
}
PERCENT_BASES = ("ORIGIN", "FREE", "VG")

# LV names: lvm(8) "VALID NAMES"
_LV_NAME_RE = re.compile(r"^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$")
_RESERVED_LV_SUBSTRINGS = ("_cdata", "_cmeta", "_corig", "_mlog", "_mimage", "_pmspare", "_rimage", "_rmeta",
                           "_tdata", "_tmeta", "_vorigin", "_vdata")
_TAG_BAD_CHARS_RE = re.compile(r"[^A-Za-z0-9_+.\-/=!:&#]")

_ABS_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)\s*(?:([bBsS])|([kKmMgGtTpPeE])(?:i[bB])?)?$")
_PCT_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)\s*%\s*([A-Za-z]+)$")

SIZE_HELP = ("use an absolute size such as 512M, 2G or 1.5g (binary units b s k m g t p e, default m), "
             "or a percentage N%ORIGIN, N%FREE or N%VG with 0 < N <= 100")


class LvmError(Exception):
    """A failure with everything a caller needs for a good message."""

    def __init__(self, msg, cmd=None, rc=None, stdout=None, stderr=None):
        super(LvmError, self).__init__(msg)
        self.msg = msg
        self.cmd = cmd
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    def as_dict(self):
        result = {"msg": self.msg}
        if self.cmd is not None:
            result["cmd"] = " ".join(self.cmd) if isinstance(self.cmd, (list, tuple)) else self.cmd
        for key in ("rc", "stdout", "stderr"):
            if getattr(self, key) is not None:
                result[key] = getattr(self, key)
        return result


class SizeError(LvmError, ValueError):
    """A size specification that does not parse or cannot be satisfied."""


# ----------------------------------------------------------------------------------------------------------------
# running commands

def find_binary(name, path=None):
    """Absolute path of ``name`` on PATH or in the sbin directories, or ``None``."""
    search = os.pathsep.join([path or os.environ.get("PATH", "")] + list(SBIN_DIRS))
    return shutil.which(name, path=search)


def command_env():
    """Environment for LVM and util-linux commands: C locale (parseable output), no fd-leak warnings."""
    return _run.command_env("lvm")


def subprocess_runner(argv, data=None, timeout=None):
    """Run ``argv`` (a list, no shell) through the collection's one runner (_run.run): ``(rc, stdout, stderr)``,
    ``rc`` is ``None`` on timeout (the whole process group is killed), stdin is ``data`` or /dev/null, so a command
    that asks a question gets EOF instead of hanging."""
    return _run.run(argv, data=data, timeout=timeout, env=command_env())


#: The real runner (tests replace ``subprocess_runner``): only its processes can be killed by create_snapshot_bounded.
REAL_RUNNER = subprocess_runner


# ----------------------------------------------------------------------------------------------------------------
# command lines (pure functions: easy to test)

def report_argv(command, fields, json_format=True, names=None):
    """``lvs``/``vgs`` command line with machine-readable output in bytes."""
    argv = [command, "--units", "b", "--nosuffix", "-o", ",".join(fields)]
    if json_format:
        argv += ["--reportformat", "json"]
    else:
        argv += ["--noheadings", "--separator", "|"]
    argv += list(names or [])
    return argv


def lvcreate_snapshot_argv(vg, origin, name, extents, tags=(), test=False):
    """``lvcreate`` for a classic (COW) snapshot of ``vg/origin`` with ``extents`` extents, or, with ``extents``
    None, a thin snapshot of a thin ``origin`` (no size: it takes space in the origin's pool as blocks diverge).

    ``--yes`` keeps lvcreate from ever asking (community.general#12477, ansible/ansible#28052);
    ``--test`` is LVM's own dry run, used for check mode.  A thin snapshot gets ``--setactivationskip n``: by
    default LVM flags thin snapshots to be skipped on activation, and this one is created to be mounted at once
    (lvmthin(7); RHEL "Controlling logical volume activation": ``lvcreate -n Snap -kn -s vg/ThinLV``).
    """
    argv = ["lvcreate", "--yes"]
    if test:
        argv.append("--test")
    if extents is None:
        argv += ["--snapshot", "--setactivationskip", "n", "--name", name]
    else:
        argv += ["--snapshot", "--extents", str(int(extents)), "--name", name]
    for tag in tags:
        argv += ["--addtag", tag]
    argv.append("%s/%s" % (vg, origin))
    return argv


def lvmconfig_argv(settings=AUTOEXTEND_SETTINGS):
    """``lvmconfig --typeconfig full``: each setting as LVM uses it (lvm.conf merged with the built-in defaults)."""
    return ["lvmconfig", "--typeconfig", "full"] + list(settings)


def parse_lvmconfig(text):
    """``name=value`` lines of lvmconfig (each setting by its own name, ``monitoring=1``) -> {name: int or str}."""
    out = {}
    for line in (text or "").splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep:
            continue
        value = value.strip().strip('"')
        out[key.strip()] = int(value) if value.lstrip("-").isdigit() else value
    return out


def dmeventd_running(proc="/proc"):
    """Whether a dmeventd process runs (it does the autoextension and the thin pool monitoring)."""
    try:
        pids = [d for d in os.listdir(proc) if d.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            with open(os.path.join(proc, pid, "comm")) as handle:
                if handle.read().strip() == "dmeventd":
                    return True
        except (IOError, OSError):
            continue
    return False


def autoextend_warnings(settings, thin_pools=(), thick=False):
    """What the autoextend settings mean for snapshots about to be taken: one warning per problem (empty when
    nothing to say).  ``thin_pools``: the pools of the thin snapshots; ``thick``: classic snapshots are taken too."""
    if not settings or settings.get("error"):
        return []           # unknown settings: reported as the error, nothing to warn about
    out = []
    # lvmconfig prints each setting by its own name, without the section: ``monitoring=1``
    watched = bool(settings.get("monitoring")) and settings.get("dmeventd_running") is not False
    pool_t = settings.get("thin_pool_autoextend_threshold")
    snap_t = settings.get("snapshot_autoextend_threshold")
    if thin_pools and isinstance(pool_t, int) and pool_t >= 100:
        out.append("thin pool autoextend is off (activation/thin_pool_autoextend_threshold=%d): %s will not grow by "
                   "itself while the snapshot exists; set it below 100 in lvm.conf, with dmeventd running, to let "
                   "LVM extend it" % (pool_t, ", ".join(sorted(set(thin_pools)))))
    used = (thin_pools and isinstance(pool_t, int) and pool_t < 100) or (
        thick and isinstance(snap_t, int) and snap_t < 100)
    if used and not watched:
        out.append("autoextend is set in lvm.conf but nothing will act on it: activation/monitoring=%s, dmeventd %s"
                   % (settings.get("monitoring"),
                      "running" if settings.get("dmeventd_running") else "not running"))
    return out


def lvremove_argv(vg, name, test=False):
    argv = ["lvremove", "--yes", "--force"]
    if test:
        argv.append("--test")
    argv.append("%s/%s" % (vg, name))
    return argv


def findmnt_argv(path):
    return ["findmnt", "--noheadings", "--pairs", "--output", "SOURCE,TARGET,FSTYPE,MAJ:MIN", "--target", path]


def mount_options(fstype, extra=None):
    """Read-only mount options for a snapshot of a ``fstype`` file system.

    XFS refuses a second file system with the same UUID (the origin is mounted), hence ``nouuid``. The snapshot LV
    itself stays writable so that XFS/ext4 can replay their log into the COW store when mounting.
    """
    opts = ["ro"]
    if fstype == "xfs":
        opts.append("nouuid")
    for opt in extra or []:
        if opt not in opts:
            opts.append(opt)
    return opts


def mount_argv(device, mountpoint, fstype, extra_options=None):
    argv = ["mount"]
    if fstype:
        argv += ["-t", fstype]
    argv += ["-o", ",".join(mount_options(fstype, extra_options)), device, mountpoint]
    return argv


def umount_argv(mountpoint):
    return ["umount", mountpoint]


def blkid_argv(device):
    return ["blkid", "-o", "value", "-s", "TYPE", device]


# ----------------------------------------------------------------------------------------------------------------
# parsing

def parse_report_json(text, kind):
    """Rows of a ``--reportformat json`` report: ``kind`` is ``lv`` or ``vg``. Values stay strings."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise LvmError("cannot parse the JSON report of %ss: %s" % (kind, exc), stdout=text)
    rows = []
    for report in data.get("report", []):
        rows.extend(report.get(kind, []))
    return rows


def parse_report_columns(text, fields, separator="|"):
    """Rows of a ``--noheadings --separator`` report as dicts keyed by ``fields``."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        values = [v.strip() for v in line.strip().split(separator)]
        if len(values) != len(fields):
            raise LvmError("unexpected report line (%d fields, expected %d): %r" % (len(values), len(fields), line))
        rows.append(dict(zip(fields, values)))
    return rows


def _to_int(value, default=None):
    if value is None:
        return default
    value = str(value).strip()
    if value in ("", "-1") and default is not None:
        return default
    try:
        return int(value)
    except ValueError:
        try:
            return int(float(value))
        except ValueError:
            return default


def _to_percent(value):
    if value is None:
        return None
    value = str(value).strip().rstrip("%")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        return None


ATTR_NAMES = ("volume_type", "permissions", "allocation_policy", "fixed_minor", "state", "device_open",
              "target_type", "zero", "health", "skip_activation")


def parse_lv_attr(attr):
    """``lv_attr`` (10 characters, lvs(8)) as a dict; short or empty strings give ``-`` for missing bits."""
    attr = (attr or "").ljust(len(ATTR_NAMES), "-")
    return dict(zip(ATTR_NAMES, attr))


class LogicalVolume(object):
    """One row of ``lvs``."""

    def __init__(self, row):
        self.row = dict(row)
        self.name = row.get("lv_name", "")
        self.vg = row.get("vg_name", "")
        self.attr = row.get("lv_attr", "") or ""
        self.size = _to_int(row.get("lv_size"), 0)
        self.origin = (row.get("origin") or "").strip() or None
        self.origin_size = _to_int(row.get("origin_size"), None)
        percent = _to_percent(row.get("data_percent"))
        if percent is None:
            percent = _to_percent(row.get("snap_percent"))
        self.data_percent = percent
        self.path = row.get("lv_path") or "/dev/%s/%s" % (self.vg, self.name)
        self.dm_path = row.get("lv_dm_path") or None
        self.major = _to_int(row.get("lv_kernel_major"), -1)
        self.minor = _to_int(row.get("lv_kernel_minor"), -1)
        tags = row.get("lv_tags") or ""
        self.tags = [t for t in tags.split(",") if t]
        # lvm2 2.03 prints "snapshot invalid" for invalid snapshots, "" for valid ones, "unknown" for other LVs
        flag = str(row.get("lv_snapshot_invalid", "") or "").strip().lower()
        self.snapshot_invalid_flag = flag in ("1", "yes") or ("invalid" in flag and not flag.startswith("not"))
        self.pool = (row.get("pool_lv") or "").strip() or None
        self.metadata_percent = _to_percent(row.get("metadata_percent"))

    @property
    def full_name(self):
        return "%s/%s" % (self.vg, self.name)

    @property
    def attrs(self):
        return parse_lv_attr(self.attr)

    @property
    def is_snapshot(self):
        """A classic (thick, COW) snapshot: bit 1 ``s``, or ``S`` while merging."""
        return self.attr[:1] in ("s", "S")

    @property
    def is_thin_snapshot(self):
        """A thin snapshot: a thin volume (``V``) with an origin."""
        return self.is_thin and bool(self.origin)

    @property
    def is_any_snapshot(self):
        """A classic or a thin snapshot (what the clean-up of a run may remove, by its tag)."""
        return self.is_snapshot or self.is_thin_snapshot

    @property
    def is_origin(self):
        return self.attr[:1] in ("o", "O")

    @property
    def is_thin(self):
        return self.attr[:1] == "V"

    @property
    def is_thin_pool(self):
        return self.attr[:1] in ("t", "T")

    @property
    def is_active(self):
        return self.attrs["state"] == "a"

    @property
    def is_open(self):
        return self.attrs["device_open"] == "o"

    @property
    def is_invalid(self):
        """Bit 5 ``I`` (invalid snapshot) or ``S`` (invalid suspended snapshot), or ``lv_snapshot_invalid``."""
        return self.attrs["state"] in ("I", "S") or self.snapshot_invalid_flag

    @property
    def is_full(self):
        """A classic snapshot whose COW store is full (invalid from then on).  A thin volume's data_percent is how
        much of its virtual size is mapped, not a fill: its risk is the pool's (see THIN_POOL_MAX_PERCENT)."""
        return self.is_snapshot and self.data_percent is not None and self.data_percent >= 100.0

    @property
    def valid(self):
        return not (self.is_invalid or self.is_full)

    def has_run_tag(self, run_id):
        return bool(run_id) and run_tag(run_id) in self.tags

    def __repr__(self):
        return "LogicalVolume(%s, attr=%s, origin=%s)" % (self.full_name, self.attr, self.origin)


class VolumeGroup(object):
    """One row of ``vgs``."""

    def __init__(self, row):
        self.row = dict(row)
        self.name = row.get("vg_name", "")
        self.attr = row.get("vg_attr", "")
        self.size = _to_int(row.get("vg_size"), 0)
        self.free = _to_int(row.get("vg_free"), 0)
        self.extent_size = _to_int(row.get("vg_extent_size"), 0)
        self.extent_count = _to_int(row.get("vg_extent_count"), 0)
        self.free_count = _to_int(row.get("vg_free_count"), 0)

    def __repr__(self):
        return "VolumeGroup(%s, free=%d/%d extents of %d)" % (
            self.name, self.free_count, self.extent_count, self.extent_size)


def parse_lvs(text, json_format=True, fields=LV_FIELDS):
    rows = parse_report_json(text, "lv") if json_format else parse_report_columns(text, fields)
    return [LogicalVolume(r) for r in rows]


def parse_vgs(text, json_format=True):
    rows = parse_report_json(text, "vg") if json_format else parse_report_columns(text, VG_FIELDS)
    return [VolumeGroup(r) for r in rows]


def _unhex(value):
    """findmnt --pairs / mountinfo escapes: ``\\x20`` (findmnt) and ``\\040`` (mountinfo)."""
    value = re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), value)
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), value)


def parse_findmnt_pairs(text):
    """First line of ``findmnt --pairs`` output as a dict (SOURCE, TARGET, FSTYPE, MAJ:MIN)."""
    for line in text.splitlines():
        if not line.strip():
            continue
        return dict((k, _unhex(v)) for k, v in re.findall(r'([A-Z:_-]+)="((?:[^"\\]|\\.)*)"', line))
    return {}


def parse_mountinfo(text):
    """``/proc/self/mountinfo`` as a list of dicts: major, minor, root, mountpoint, fstype, source, options."""
    mounts = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 10 or "-" not in parts[6:]:
            continue
        sep = parts.index("-", 6)
        try:
            major, minor = (int(x) for x in parts[2].split(":"))
        except ValueError:
            continue
        mounts.append({
            "major": major, "minor": minor, "root": _unhex(parts[3]), "mountpoint": _unhex(parts[4]),
            "options": parts[5], "fstype": parts[sep + 1], "source": _unhex(parts[sep + 2]),
        })
    return mounts


def mountpoints_of(mounts, major, minor):
    return [m["mountpoint"] for m in mounts if m["major"] == major and m["minor"] == minor]


def split_dm_name(dm_name):
    """Split a device-mapper name ``vg-lv[-layer]`` into ``(vg, lv, layer)``.

    LVM doubles every dash inside VG and LV names (``my--vg-db--1`` is VG ``my-vg``, LV ``db-1``), so the
    separators are the single dashes. ``layer`` is e.g. ``cow``/``real`` for snapshot internals, else ``None``.
    """
    parts = []
    current = []
    i = 0
    while i < len(dm_name):
        ch = dm_name[i]
        if ch == "-":
            if i + 1 < len(dm_name) and dm_name[i + 1] == "-":
                current.append("-")
                i += 2
                continue
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise LvmError("'%s' is not a device-mapper name of an LVM logical volume (vg-lv)" % dm_name)
    layer = "-".join(parts[2:]) if len(parts) > 2 else None
    return parts[0], parts[1], layer


def dm_name(vg, lv):
    """The device-mapper name of ``vg/lv`` (dashes doubled), the inverse of ``split_dm_name``."""
    return "%s-%s" % (vg.replace("-", "--"), lv.replace("-", "--"))


def source_to_vg_lv(source):
    """``(vg, lv)`` from a mount source ``/dev/mapper/vg-lv`` or ``/dev/vg/lv``, else ``None``.

    A bind-mount suffix (``/dev/mapper/vg-lv[/sub]``) is ignored.
    """
    source = re.sub(r"\[.*\]$", "", source or "")
    if source.startswith("/dev/mapper/"):
        try:
            vg, lv, layer = split_dm_name(source[len("/dev/mapper/"):])
        except LvmError:
            return None
        return None if layer else (vg, lv)
    match = re.match(r"^/dev/([^/]+)/([^/]+)$", source)
    if match and match.group(1) not in ("mapper", "disk", "block", "md", "bus", "char", "pts", "shm", "fd"):
        return match.group(1), match.group(2)
    return None


def run_tag(run_id):
    """The LV tag that marks snapshots created by run ``run_id`` (characters LVM does not allow become ``_``)."""
    return (RUN_TAG_PREFIX + _TAG_BAD_CHARS_RE.sub("_", str(run_id)))[:1024]


def validate_lv_name(name):
    """``None`` if ``name`` is a valid new LV name, else the reason."""
    if not name:
        return "the name is empty"
    if len(name) > 127:
        return "the name is longer than 127 characters"
    if name in (".", "..") or not _LV_NAME_RE.match(name):
        return "LV names may contain only A-Z a-z 0-9 + _ . - and must not start with -"
    if name.startswith("snapshot") or name.startswith("pvmove"):
        return "LVM reserves names starting with 'snapshot' and 'pvmove'"
    for sub in _RESERVED_LV_SUBSTRINGS:
        if sub in name:
            return "LVM reserves names containing '%s'" % sub
    return None


# ----------------------------------------------------------------------------------------------------------------
# sizes

class SizeSpec(object):
    """A parsed size: ``kind`` is ``bytes`` (``value`` = bytes) or ORIGIN/FREE/VG (``value`` = percent)."""

    def __init__(self, text, kind, value):
        self.text = text
        self.kind = kind
        self.value = value

    @property
    def is_percent(self):
        return self.kind != "bytes"

    def __repr__(self):
        return "SizeSpec(%r, %s, %s)" % (self.text, self.kind, self.value)

    def __eq__(self, other):
        return isinstance(other, SizeSpec) and (self.kind, self.value) == (other.kind, other.value)

    def __ne__(self, other):
        return not self == other

    __hash__ = None


def parse_size(text):
    """Parse ``512M``, ``2g``, ``1.5GiB``, ``4096s``, ``100`` (MiB), ``20%ORIGIN``, ``50%FREE``, ``10%VG``.

    Units are binary as in lvcreate(8) ``-L``. Raises SizeError with a message that says what is accepted.
    """
    if isinstance(text, bool):
        raise SizeError("size %r is not understood: %s" % (text, SIZE_HELP))
    if isinstance(text, int):
        text = str(text)
    raw = str(text if text is not None else "")
    spec = raw.strip()
    if not spec:
        raise SizeError("size is empty: %s" % SIZE_HELP)
    match = _PCT_SIZE_RE.match(spec)
    if match:
        base = match.group(2).upper()
        if base not in PERCENT_BASES:
            raise SizeError("size '%s': percentages must be of ORIGIN, FREE or VG, not %s; %s"
                            % (raw, match.group(2), SIZE_HELP))
        percent = Fraction(match.group(1))
        if percent <= 0:
            raise SizeError("size '%s' must be more than 0%%" % raw)
        if percent > 100:
            raise SizeError("size '%s' is more than 100%%" % raw)
        return SizeSpec(raw, base, percent)
    if "%" in spec:
        raise SizeError("size '%s' is not understood: %s" % (raw, SIZE_HELP))
    match = _ABS_SIZE_RE.match(spec)
    if not match:
        raise SizeError("size '%s' is not understood: %s" % (raw, SIZE_HELP))
    number = Fraction(match.group(1))
    unit = (match.group(2) or match.group(3) or "m").lower()
    size = number * UNIT_FACTORS[unit]
    if size <= 0:
        raise SizeError("size '%s' must be more than 0" % raw)
    return SizeSpec(raw, "bytes", int(math.ceil(size)))


def size_to_extents(spec, extent_size, origin_extents=None, vg_extents=None, free_extents=None):
    """Number of extents for ``spec``.

    Absolute sizes and %ORIGIN round *up* to whole extents (as lvcreate does for -L, and a snapshot should not be
    smaller than asked); %FREE and %VG round *down* (never more than the share of the VG that was asked for).
    """
    if extent_size <= 0:
        raise SizeError("extent size %r is not valid" % extent_size)
    if spec.kind == "bytes":
        extents = -(-spec.value // extent_size)
    else:
        base = {"ORIGIN": origin_extents, "FREE": free_extents, "VG": vg_extents}[spec.kind]
        if base is None:
            raise SizeError("size '%s' needs the size of the %s, which is not known" % (spec.text, spec.kind))
        amount = Fraction(base) * spec.value / 100
        if spec.kind == "ORIGIN":
            extents = int(math.ceil(amount))
        else:
            extents = int(math.floor(amount))
    if extents < 1:
        raise SizeError("size '%s' is less than one extent (%s) here" % (spec.text, human_size(extent_size)))
    return int(extents)


def human_size(nbytes):
    if nbytes is None:
        return "?"
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            return ("%d %s" % (value, unit)) if unit == "B" else ("%.2f %s" % (value, unit))
        value /= 1024.0
    return "%d B" % nbytes  # pragma: no cover


# ----------------------------------------------------------------------------------------------------------------
# planning a set of snapshots (the preflight)

class SnapshotRequest(object):
    """One origin to snapshot: ``vg``/``lv`` of the origin, the snapshot ``name`` and ``size`` text."""

    def __init__(self, vg, lv, name, size, path=None):
        self.vg = vg
        self.lv = lv
        self.name = name
        self.size = size
        self.path = path

    @property
    def origin(self):
        return "%s/%s" % (self.vg, self.lv)

    @property
    def full_name(self):
        return "%s/%s" % (self.vg, self.name)

    def __repr__(self):
        return "SnapshotRequest(%s -> %s, %s)" % (self.origin, self.name, self.size)


class PlannedSnapshot(object):
    """What to do for one request. ``action``: ``create``, ``keep`` (reuse/ours) or ``recreate``.  ``pool``: the
    thin pool of a thin snapshot (which has no size of its own), else None."""

    def __init__(self, request, action, extents=0, extent_size=0, existing=None, pool=None):
        self.request = request
        self.action = action
        self.extents = extents
        self.extent_size = extent_size
        self.existing = existing
        self.pool = pool

    @property
    def thin(self):
        return self.pool is not None

    @property
    def lvcreate_extents(self):
        """What lvcreate gets: the extents of a classic snapshot, None for a thin one."""
        return None if self.thin else self.extents

    @property
    def size(self):
        return self.extents * self.extent_size

    @property
    def step_label(self):
        """How a message names this snapshot: ``vg/name of vg/origin``."""
        return "%s of %s" % (self.request.full_name, self.request.origin)

    @property
    def step_name(self):
        """How a freeze window's step list names this snapshot: its origin, ``vg/lv``."""
        return self.request.origin

    def __repr__(self):
        return "PlannedSnapshot(%s, %s, %d extents)" % (self.request.full_name, self.action, self.extents)


class PreflightError(LvmError):
    """The preflight found problems; ``problems`` lists all of them. Nothing was changed."""

    def __init__(self, problems):
        self.problems = list(problems)
        super(PreflightError, self).__init__(
            "preflight failed, nothing was created: " + "; ".join(self.problems))


def plan_snapshots(requests, lvs, vgs, existing="fail", run_id=None, thin_pool_max_percent=THIN_POOL_MAX_PERCENT):
    """Check a set of snapshot requests against the current LVs/VGs and compute extents for each.

    * every origin exists and is not a snapshot or a thin pool; a thin volume gets a thin snapshot (no size), and
      its pool's data and metadata must be below ``thin_pool_max_percent``;
    * the snapshot name is valid and not taken by anything but a snapshot of the same origin;
    * a snapshot of the same origin with the same name already there is ours (tagged with ``run_id``: kept),
      or a leftover handled by ``existing``: ``fail`` (a problem), ``remove`` (recreated) or ``reuse`` (kept);
    * sizes parse, and all new snapshots of a VG fit into its free extents together (``%FREE`` is taken of what
      is free at the moment that snapshot is created, in the order given).

    Returns a list of PlannedSnapshot in request order or raises PreflightError listing every problem.
    """
    if existing not in ("fail", "remove", "reuse"):
        raise ValueError("existing must be fail, remove or reuse")
    lv_index = dict(((lv.vg, lv.name), lv) for lv in lvs)
    vg_index = dict((vg.name, vg) for vg in vgs)
    problems = []
    plans = []
    seen = {}
    specs = {}

    for req in requests:
        vg = vg_index.get(req.vg)
        if vg is None:
            problems.append("volume group '%s' of origin %s does not exist (vgs lists: %s)"
                            % (req.vg, req.origin, ", ".join(sorted(vg_index)) or "none"))
            continue
        origin = lv_index.get((req.vg, req.lv))
        if origin is None:
            problems.append("origin logical volume %s does not exist" % req.origin)
            continue
        if origin.is_any_snapshot:
            problems.append("%s is itself a snapshot (lv_attr %s); snapshots of snapshots are not supported"
                            % (req.origin, origin.attr))
            continue
        if origin.is_thin_pool:
            problems.append("%s is a thin pool (lv_attr %s); snapshot the thin volumes in it instead"
                            % (req.origin, origin.attr))
            continue
        pool = None
        if origin.is_thin:
            pool = lv_index.get((req.vg, origin.pool or ""))
            if pool is None:
                problems.append("thin volume %s: its pool %s/%s is not listed by lvs" % (
                    req.origin, req.vg, origin.pool or "?"))
                continue
            full = [("data", pool.data_percent), ("metadata", pool.metadata_percent)]
            full = ["%s %.2f%%" % (k, v) for k, v in full if v is not None and v >= thin_pool_max_percent]
            if full:
                problems.append(
                    "thin pool %s of %s is too full for a snapshot (%s; the limit is %g%%): while the snapshot "
                    "exists every block the instance rewrites takes pool space, and a full pool stops the writes of "
                    "every volume in it. Next: extend the pool (lvextend -L +SIZE %s, or --poolmetadatasize for "
                    "metadata) or free space in it, then run again" % (
                        pool.full_name, req.origin, ", ".join(full), thin_pool_max_percent, pool.full_name))
                continue
        reason = validate_lv_name(req.name)
        if reason:
            problems.append("snapshot name '%s' for %s is not valid: %s" % (req.name, req.origin, reason))
            continue
        if (req.vg, req.name) in seen:
            problems.append("snapshot %s is requested twice (for %s and %s)"
                            % (req.full_name, seen[(req.vg, req.name)], req.origin))
            continue
        seen[(req.vg, req.name)] = req.origin
        try:
            specs[id(req)] = parse_size(req.size)
        except SizeError as exc:
            problems.append("%s: %s" % (req.origin, exc.msg))
            continue

        current = lv_index.get((req.vg, req.name))
        pool_name = pool.name if pool is not None else None
        if current is None:
            plans.append(PlannedSnapshot(req, "create", extent_size=vg.extent_size, pool=pool_name))
        elif not current.is_any_snapshot or current.origin != req.lv:
            problems.append("an LV named %s already exists and is not a snapshot of %s (lv_attr %s, origin %s); "
                            "choose another snapshot name or suffix"
                            % (req.full_name, req.origin, current.attr, current.origin or "none"))
        elif (run_id and current.has_run_tag(run_id)) or existing == "reuse":
            plans.append(PlannedSnapshot(req, "keep", extents=0 if pool else current.size // max(vg.extent_size, 1),
                                         extent_size=vg.extent_size, existing=current, pool=pool_name))
        elif existing == "remove":
            plans.append(PlannedSnapshot(req, "recreate", extent_size=vg.extent_size, existing=current,
                                         pool=pool_name))
        else:
            problems.append(
                "snapshot %s of %s already exists (%s, %s used, tags: %s): a leftover from an earlier or crashed "
                "run? Check that no backup is still reading it, then remove it (state=absent) or rerun with "
                "existing=remove (or existing=reuse to keep it)"
                % (req.full_name, req.origin, human_size(current.size),
                   "%.2f%%" % current.data_percent if current.data_percent is not None else "?",
                   ",".join(current.tags) or "none"))

    # space, per VG, in request order
    free = dict((name, vg.free_count) for name, vg in vg_index.items())
    for plan in plans:
        if plan.action == "recreate" and not plan.thin:
            free[plan.request.vg] += plan.existing.size // max(vg_index[plan.request.vg].extent_size, 1)
    needed = {}
    for plan in plans:
        if plan.action == "keep" or plan.thin:      # a thin snapshot takes no extents of the VG
            continue
        req = plan.request
        vg = vg_index[req.vg]
        origin = lv_index[(req.vg, req.lv)]
        try:
            plan.extents = size_to_extents(specs[id(req)], vg.extent_size,
                                           origin_extents=origin.size // vg.extent_size,
                                           vg_extents=vg.extent_count, free_extents=max(free[req.vg], 0))
        except SizeError as exc:
            problems.append("%s: %s" % (req.origin, exc.msg))
            continue
        free[req.vg] -= plan.extents
        needed.setdefault(req.vg, []).append(plan)
    for vg_name, vg_plans in sorted(needed.items()):
        if free[vg_name] < 0:
            vg = vg_index[vg_name]
            total = sum(p.extents for p in vg_plans)
            problems.append(
                "volume group %s has %d free extents (%s) but the snapshots need %d (%s: %s); use smaller sizes or "
                "extend the volume group"
                % (vg_name, total + free[vg_name], human_size((total + free[vg_name]) * vg.extent_size), total,
                   human_size(total * vg.extent_size),
                   ", ".join("%s %s" % (p.request.name, human_size(p.size)) for p in vg_plans)))
    if problems:
        raise PreflightError(problems)
    return plans


# ----------------------------------------------------------------------------------------------------------------
# the runner-backed facade

class Lvm(object):
    """Runs LVM and util-linux commands through ``runner`` and parses what they print."""

    def __init__(self, runner=None, timeout=120, which=None, sleep=None, mountinfo_path=None):
        self.runner = runner or subprocess_runner
        self.timeout = timeout
        self.which = which or find_binary
        self.sleep = sleep or time.sleep
        self.mountinfo_path = mountinfo_path or MOUNTINFO_PATH
        self.commands = []  # every command run, for the module's result
        self._bin_cache = {}
        self.json_reports = True

    # -- plumbing --
    def _resolve(self, argv):
        name = argv[0]
        if name not in self._bin_cache:
            path = self.which(name)
            if path is None and name in ("lvs", "vgs", "lvcreate", "lvremove", "lvmconfig"):
                lvm = self.which("lvm")
                if lvm:
                    self._bin_cache[name] = [lvm, name]
                    return self._bin_cache[name] + list(argv[1:])
            if path is None:
                raise LvmError("command '%s' not found on PATH or in %s; install %s"
                               % (name, ":".join(SBIN_DIRS),
                                  "lvm2" if name in ("lvs", "vgs", "lvcreate", "lvremove") else "util-linux"),
                               cmd=argv)
            self._bin_cache[name] = [path]
        return self._bin_cache[name] + list(argv[1:])

    def run(self, argv, check=True, timeout=None):
        full = self._resolve(argv)
        started = time.time()
        rc, out, err = self.runner(full, timeout=timeout or self.timeout)
        self.commands.append({"cmd": full, "rc": rc, "seconds": round(time.time() - started, 3)})
        if check and rc != 0:
            what = "timed out after %s s" % (timeout or self.timeout) if rc is None else "failed (rc=%s)" % rc
            raise LvmError("%s %s: %s" % (" ".join(full), what, (err or out or "").strip()),
                           cmd=full, rc=rc, stdout=out, stderr=err)
        return rc, out or "", err or ""

    # -- reports --
    def _report(self, command, fields, kind, names=None):
        if self.json_reports:
            rc, out, err = self.run(report_argv(command, fields, True, names), check=False)
            if rc == 0:
                return parse_report_json(out, kind)
            if "reportformat" not in err and "json" not in err.lower():
                raise LvmError("%s failed (rc=%s): %s" % (command, rc, err.strip()),
                               cmd=report_argv(command, fields, True, names), rc=rc, stdout=out, stderr=err)
            self.json_reports = False  # LVM older than 2.02.158: fall back to columns
        rc, out, err = self.run(report_argv(command, fields, False, names))
        return parse_report_columns(out, fields)

    def lvs(self, names=None):
        return [LogicalVolume(r) for r in self._report("lvs", LV_FIELDS, "lv", names)]

    def vgs(self, names=None):
        return [VolumeGroup(r) for r in self._report("vgs", VG_FIELDS, "vg", names)]

    def autoextend(self):
        """The autoextend settings (AUTOEXTEND_SETTINGS) and ``dmeventd_running``; ``{'error': ...}`` when
        lvmconfig fails (an old LVM without ``--typeconfig full``, say): reported, never a reason to stop."""
        try:
            rc, out, err = self.run(lvmconfig_argv(), check=False)
        except LvmError as exc:        # lvmconfig not found
            return {"error": exc.msg}
        if rc != 0:
            return {"error": "lvmconfig rc=%s: %s" % (rc, (err or out or "").strip()[-200:])}
        res = parse_lvmconfig(out)
        res["dmeventd_running"] = dmeventd_running()
        return res

    # -- mounts --
    def mountinfo(self):
        with open(self.mountinfo_path) as handle:
            return parse_mountinfo(handle.read())

    def mountpoints(self, lv, mounts=None):
        if lv.major < 0 or lv.minor < 0:
            return []
        return mountpoints_of(mounts if mounts is not None else self.mountinfo(), lv.major, lv.minor)

    def findmnt(self, path):
        """(source, target, fstype, (major, minor)) of the file system that holds ``path``."""
        rc, out, err = self.run(findmnt_argv(path), check=False)
        if rc != 0 and not os.path.lexists(path):
            raise LvmError("path %s does not exist, so it is on no file system to snapshot; give an existing directory "
                           "or file, or the LV as vg/lv" % path, cmd=findmnt_argv(path), rc=rc, stdout=out, stderr=err)
        if rc != 0:
            raise LvmError("findmnt found no file system for %s: %s" % (path, (err or "").strip() or "rc=%s" % rc),
                           cmd=findmnt_argv(path), rc=rc, stdout=out, stderr=err)
        info = parse_findmnt_pairs(out)
        majmin = None
        if info.get("MAJ:MIN"):
            try:
                majmin = tuple(int(x) for x in info["MAJ:MIN"].split(":"))
            except ValueError:
                majmin = None
        return info.get("SOURCE", ""), info.get("TARGET", ""), info.get("FSTYPE", ""), majmin

    def lv_for_path(self, path, lvs=None):
        """The LogicalVolume whose file system holds ``path`` (directory or file), via findmnt."""
        source, target, fstype, majmin = self.findmnt(path)
        lvs = lvs if lvs is not None else self.lvs()
        if majmin:
            for lv in lvs:
                if (lv.major, lv.minor) == majmin:
                    return lv
        names = source_to_vg_lv(source)
        if names:
            for lv in lvs:
                if (lv.vg, lv.name) == names:
                    return lv
        raise LvmError("%s is on %s (mounted at %s, %s), which is not an LVM logical volume"
                       % (path, source or "?", target or "?", fstype or "?"))

    def detect_fstype(self, device):
        rc, out, err = self.run(blkid_argv(device), check=False)
        if rc == 0 and out.strip():
            return out.strip().splitlines()[0]
        return None

    def mount(self, device, mountpoint, fstype, extra_options=None):
        try:
            os.makedirs(mountpoint, 0o755)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise LvmError("cannot create mount point %s: %s" % (mountpoint, exc))
        self.run(mount_argv(device, mountpoint, fstype, extra_options))

    def umount(self, mountpoint, retries=3, delay=1.0):
        for attempt in range(retries):
            rc, out, err = self.run(umount_argv(mountpoint), check=False)
            if rc == 0:
                return
            if "not mounted" in err:
                return
            if attempt + 1 < retries and ("busy" in err or "in use" in err):
                self.sleep(delay)
                continue
            raise LvmError("cannot unmount %s (rc=%s): %s%s"
                           % (mountpoint, rc, err.strip(),
                              "; a process still uses it, see fuser -vm %s" % mountpoint if "busy" in err else ""),
                           cmd=umount_argv(mountpoint), rc=rc, stdout=out, stderr=err)

    @staticmethod
    def remove_mountpoint(mountpoint, root):
        """Remove the (empty) directory ``mountpoint`` and its empty parents up to, not including, ``root``.

        Only directories below ``root`` are touched; anything not empty stays. Returns the directories removed.
        """
        removed = []
        root = os.path.normpath(root)
        path = os.path.normpath(mountpoint)
        while path != root and path.startswith(root + os.sep):
            try:
                os.rmdir(path)
            except OSError:
                break
            removed.append(path)
            path = os.path.dirname(path)
        return removed

    # -- snapshots --
    def create_snapshot(self, vg, origin, name, extents, tags=(), test=False):
        return self.run(lvcreate_snapshot_argv(vg, origin, name, extents, tags=tags, test=test))

    def create_snapshot_bounded(self, vg, origin, name, extents, deadline, on_overdue, tags=(), interrupted=None,
                                grace=LVCREATE_GRACE):
        """``lvcreate`` inside a freeze window: wait at most ``deadline`` seconds (or until ``interrupted()`` says
        so).  On expiry ``on_overdue(reason)`` runs first (the freeze engine thaws IRIS: users must not wait for
        LVM), then lvcreate gets ``grace`` more seconds to finish by itself, because a killed lvcreate can leave the
        origin's device-mapper table suspended; after that its process group is killed and any suspended device of
        the volume group is resumed (``dmsetup resume``).  Raises LvmError in every overdue case: the caller removes
        whatever got created (by its run tag)."""
        argv = lvcreate_snapshot_argv(vg, origin, name, extents, tags=tags)
        full = self._resolve(argv)
        box = {}
        started = time.time()

        def work():
            try:
                if self.runner is REAL_RUNNER:   # the real runner: keep the process so it can be killed
                    box["proc"] = _run.start(full, env=command_env())
                    box["res"] = _run.finish(box["proc"])
                else:                            # an injected runner (tests): no process to kill
                    box["res"] = self.runner(full, None, None)
            except Exception as exc:  # pylint: disable=broad-except  # reported as a failed lvcreate, not lost
                box["res"] = (127 if isinstance(exc, OSError) else 1, "", "%s: %s" % (full[0], exc))

        worker = threading.Thread(target=work, name="lvcreate %s/%s" % (vg, name))
        worker.daemon = True
        worker.start()
        reason = None
        while worker.is_alive():
            worker.join(0.05)
            if not worker.is_alive():
                break
            why = interrupted() if interrupted is not None else None
            if why:
                reason = why
                break
            if time.time() - started >= deadline:
                reason = ("lvcreate of %s/%s from %s did not finish within %.1f s, the time left in the freeze "
                          "budget" % (vg, name, origin, deadline))
                break
        if reason is None:
            rc, out, err = box["res"]
            self.commands.append({"cmd": full, "rc": rc, "seconds": round(time.time() - started, 3)})
            if rc != 0:
                raise LvmError("%s failed (rc=%s): %s" % (" ".join(full), rc, (err or out or "").strip()),
                               cmd=full, rc=rc, stdout=out, stderr=err)
            return rc, out, err
        on_overdue(reason)
        worker.join(grace)
        killed = False
        if worker.is_alive() and box.get("proc") is not None:
            _run.kill_group(box["proc"])
            killed = True
            worker.join(5)
        resumed = self.resume_suspended(vg)
        self.commands.append({"cmd": full, "rc": (box.get("res") or (None,))[0],
                              "seconds": round(time.time() - started, 3), "overdue": True})
        detail = []
        if killed:
            detail.append("lvcreate was killed %d s after the thaw" % grace)
        if resumed:
            detail.append("resumed suspended device(s) %s" % ", ".join(resumed))
        raise LvmError("%s%s; the instances were thawed first" % (reason, (" (%s)" % "; ".join(detail)) if detail
                                                                  else ""), cmd=full)

    def resume_suspended(self, vg):
        """``dmsetup resume`` every device of ``vg`` that a killed lvcreate left suspended; returns their names."""
        if not self.which("dmsetup"):
            return []
        rc, out, _err = self.run(["dmsetup", "info", "-c", "--noheadings", "-o", "name,suspended", "--separator",
                                  "|"], check=False)
        resumed = []
        if rc != 0:
            return resumed
        prefix = vg.replace("-", "--") + "-"
        for line in out.splitlines():
            dm, _sep, state = line.strip().partition("|")
            if dm.startswith(prefix) and state.strip().lower() == "suspended":
                if self.run(["dmsetup", "resume", dm], check=False)[0] == 0:
                    resumed.append(dm)
        return resumed

    def remove_lv(self, vg, name, mountpoints=(), test=False, retries=5, delay=1.0):
        """Unmount whatever is left mounted, then ``lvremove -f``, retrying while the LV is reported in use.

        With ``test`` (check mode) nothing is unmounted and ``lvremove --test`` is run, except for a mounted LV:
        LVM refuses to dry-run the removal of an LV in use, which the real run would have unmounted first.
        """
        if test and mountpoints:
            return
        if not test:
            for mountpoint in mountpoints:
                self.umount(mountpoint)
        last = None
        for attempt in range(retries):
            rc, out, err = self.run(lvremove_argv(vg, name, test=test), check=False)
            if rc == 0:
                return
            last = (rc, out, err)
            transient = any(s in err for s in ("in use", "open logical volume", "busy", "Can't remove open"))
            if test or not transient or attempt + 1 == retries:
                break
            settle = self.which("udevadm")
            if settle:
                self.run([settle, "settle", "--timeout=10"], check=False)
            self.sleep(delay)
        rc, out, err = last
        raise LvmError("lvremove of %s/%s failed (rc=%s) after %d attempt(s): %s"
                       % (vg, name, rc, attempt + 1, err.strip()),
                       cmd=lvremove_argv(vg, name, test=test), rc=rc, stdout=out, stderr=err)
