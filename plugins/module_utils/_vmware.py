# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
#
# The one place that knows the VMware side of the mirror QoS question: how to find vmware.log files (plain,
# gzip, rotated vmware-N.log), how to read the "Checkpoint_Unstun: vm stopped for N us" lines in them, and how a
# stun compares with an IRIS mirror QoS timeout.  Standard library only (Python 3.6+), nothing from ansible.
"""Private helpers to read VM stun times from VMware vmware.log files and judge them against a mirror QoS."""

from __future__ import absolute_import, division, print_function

import datetime
import glob
import gzip
import io
import math
import os
import re

__metaclass__ = type

#: IRIS default mirror QoS timeout in milliseconds (CPF [Mirrors] 5th field; 2000 ms in old versions, 8000 ms since
#: the 2015 change made because VM backups and migrations caused unwanted failovers).  Reference facts, section 4.3.
DEFAULT_QOS_TIMEOUT_MS = 8000

#: A backup failover member can start a takeover after just over HALF the QoS timeout of silence from the primary
#: (it pings after QoS/2 and waits another QoS/2; Murray Oldfield / Peter Greskoff, "VM Backups and IRIS
#: freeze/thaw scripts", March 2018 update).  A stun at or above QoS * RISK_FRACTION is reported as a risk.
RISK_FRACTION = 0.5

#: Percentile reported besides the maximum (nearest-rank method).
PERCENTILE = 95

#: Verdicts, from good to bad.
VERDICT_NO_STUNS = 'no_stuns'
VERDICT_OK = 'ok'
VERDICT_RISK = 'risk'
VERDICT_EXCEEDS = 'exceeds_qos'

#: The message itself: the stun duration in microseconds.  Found anywhere in a line, so that every variant of the
#: line prefix below (and grep output with a "file:" prefix) is counted; an unknown prefix only loses the timestamp.
UNSTUN_RE = re.compile(r'Checkpoint_Unstun:\s*vm\s+stopped\s+for\s+(?P<us>\d+)\s*us\b')

_TS = r'(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)'
#: Prefix forms accepted in front of the message (documented in the module and in docs/mirroring.md):
#:   pipe  (ESXi 5.x/6.x): ``2017-01-04T22:15:58.846Z| vcpu-0| I125: `` - any thread name (vcpu-N, vmx, ...), level
#:         tag I120/I125/... or none (older ESXi: ``2012-03-23T16:22:51.876Z| vcpu-0| ``)
#:   level (ESXi 7.x/8.x): ``2023-04-15T08:52:34.879Z In(05) vcpu-0 - `` - any level (In(05), Wa(03), ...), any thread
#: either optionally preceded by ``<file>:`` (grep over several files).
PREFIX_FORMS = (
    ('pipe', re.compile(r'^(?:\S*?\.log(?:\.gz)?:)?' + _TS + r'\s*\|\s*(?P<thread>[^|]*?)\s*\|\s*'
                        r'(?:(?P<level>[A-Z][A-Za-z]?\d+(?:\(\d+\))?):\s*)?$')),
    ('level', re.compile(r'^(?:\S*?\.log(?:\.gz)?:)?' + _TS + r'\s+(?P<level>[A-Z][a-z]\(\d+\))\s+'
                         r'(?P<thread>\S+)\s+-\s+$')),
)

#: File names of a VM's logs in its datastore folder: the current vmware.log and the rotated vmware-N.log,
#: also gzip-compressed (as support bundles and some download tools store them).
LOG_NAME_RE = re.compile(r'^vmware(?:-\d+)?\.log(?:\.gz)?$')

_GZIP_MAGIC = b'\x1f\x8b'
UTC = datetime.timezone.utc


class StunLogError(Exception):
    """A log path that cannot be used; the message names the path and what to do."""


def _is_glob(path):
    return any(c in path for c in '*?[')


def _log_sort_key(path):
    """vmware.log first, then vmware-1.log, vmware-2.log ... (numeric), then anything else by name."""
    base = os.path.basename(path)
    m = re.match(r'^vmware(?:-(\d+))?\.log', base)
    if m:
        return (0, int(m.group(1) or -1), base)
    return (1, 0, base)


def expand_paths(paths, isdir=os.path.isdir, isfile=os.path.isfile, listdir=os.listdir, globber=glob.glob):
    """Resolve the ``paths`` option to a list of files.

    Each entry is a file, a directory (its ``vmware.log``, ``vmware-N.log`` and their ``.gz`` forms are taken) or a
    glob pattern.  Raises StunLogError for an entry that names nothing usable.  Duplicates are dropped.
    """
    files = []
    for entry in paths or []:
        entry = os.path.expanduser(entry)
        if _is_glob(entry):
            found = sorted((p for p in globber(entry) if isfile(p)), key=_log_sort_key)
            if not found:
                raise StunLogError('the pattern %s matches no file; check the path, or download the vmware.log files '
                                   'of the VM first (see docs/mirroring.md)' % entry)
        elif isdir(entry):
            found = sorted((os.path.join(entry, n) for n in listdir(entry) if LOG_NAME_RE.match(n)),
                           key=_log_sort_key)
            if not found:
                raise StunLogError('the directory %s holds no vmware.log, vmware-N.log or .gz of them; point paths at '
                                   'the folder the VM logs were downloaded to' % entry)
        elif isfile(entry):
            found = [entry]
        else:
            raise StunLogError('%s does not exist (or is not readable by the user the module runs as); download the '
                               'vmware.log files of the VM first (see docs/mirroring.md)' % entry)
        for path in found:
            if path not in files:
                files.append(path)
    if not files:
        raise StunLogError('no log file given: set paths to vmware.log files, a folder holding them or a pattern')
    return files


def read_log(path):
    """Text of a log file; gzip is recognised by its magic bytes, whatever the file name."""
    try:
        with open(path, 'rb') as fh:
            head = fh.read(2)
            fh.seek(0)
            if head == _GZIP_MAGIC:
                with gzip.GzipFile(fileobj=fh) as gz:
                    data = gz.read()
            else:
                data = fh.read()
    except (IOError, OSError, EOFError) as exc:
        raise StunLogError('cannot read %s: %s; check the file (a truncated .gz cannot be read) and its permissions'
                           % (path, exc))
    return data.decode('utf-8', 'replace')


def parse_timestamp(text):
    """A vmware.log ISO 8601 timestamp as a timezone-aware UTC datetime, or None."""
    if not text:
        return None
    m = re.match(r'^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$', text)
    if not m:
        return None
    y, mo, d, h, mi, s, frac, tz = m.groups()
    micro = int((frac or '0')[:6].ljust(6, '0'))
    try:
        value = datetime.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro)
    except ValueError:
        return None
    offset = datetime.timedelta(0)
    if tz and tz != 'Z':
        sign = -1 if tz[0] == '-' else 1
        digits = tz[1:].replace(':', '')
        offset = sign * datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return (value - offset).replace(tzinfo=UTC)


def parse_stuns(text, source=None):
    """Every ``Checkpoint_Unstun: vm stopped for N us`` line of one log text.

    Returns a list of dicts: ``timestamp`` (as written, or None when the prefix is not one of PREFIX_FORMS),
    ``us``, ``seconds``, ``thread``, ``level``, ``format`` (``pipe``, ``level`` or ``other``), ``file``, ``line``.
    """
    stuns = []
    for number, line in enumerate(io.StringIO(text or ''), 1):
        if 'Unstun' not in line:
            continue
        m = UNSTUN_RE.search(line)
        if not m:
            continue
        prefix = line[:m.start()]
        entry = {'timestamp': None, 'thread': None, 'level': None, 'format': 'other'}
        for name, regex in PREFIX_FORMS:
            pm = regex.match(prefix)
            if pm:
                entry.update(timestamp=pm.group('ts'), thread=pm.group('thread') or None,
                             level=pm.group('level'), format=name)
                break
        us = int(m.group('us'))
        entry.update(us=us, seconds=round(us / 1e6, 6), file=source, line=number)
        stuns.append(entry)
    return stuns


def percentile(values, pct=PERCENTILE):
    """Nearest-rank percentile: the smallest value such that pct % of the values are <= it; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(math.ceil(pct / 100.0 * len(ordered))))
    return ordered[rank - 1]


def _order_key(stun):
    ts = parse_timestamp(stun.get('timestamp'))
    # stuns without a usable timestamp keep their file/line order, after the dated ones
    return (ts is None, ts or datetime.datetime.min.replace(tzinfo=UTC), stun.get('file') or '', stun['line'])


def judge(stuns, qos_timeout_ms, risk_fraction=RISK_FRACTION):
    """Statistics and verdict of ``stuns`` (from parse_stuns) against a QoS timeout in milliseconds.

    Verdict: ``no_stuns`` (none found), ``ok`` (every stun below QoS * risk_fraction), ``risk`` (at least one at or
    above that: a backup member can take over), ``exceeds_qos`` (at least one at or above the whole QoS timeout).
    """
    if not qos_timeout_ms or qos_timeout_ms <= 0:
        raise ValueError('the QoS timeout must be a positive number of milliseconds, got %r' % (qos_timeout_ms,))
    ordered = sorted(stuns, key=_order_key)
    values = [s['us'] for s in ordered]
    threshold_us = int(round(qos_timeout_ms * 1000 * risk_fraction))
    qos_us = int(qos_timeout_ms) * 1000
    at_risk = [s for s in ordered if s['us'] >= threshold_us]
    max_us = max(values) if values else None
    p95_us = percentile(values)
    if not values:
        verdict = VERDICT_NO_STUNS
    elif max_us >= qos_us:
        verdict = VERDICT_EXCEEDS
    elif at_risk:
        verdict = VERDICT_RISK
    else:
        verdict = VERDICT_OK
    worst = max(ordered, key=lambda s: s['us']) if ordered else None
    return {
        'stuns': ordered,
        'count': len(values),
        'max_us': max_us,
        'max_seconds': round(max_us / 1e6, 6) if max_us is not None else None,
        'p95_us': p95_us,
        'p95_seconds': round(p95_us / 1e6, 6) if p95_us is not None else None,
        'worst': worst,
        'qos_timeout_ms': int(qos_timeout_ms),
        'risk_threshold_ms': round(qos_timeout_ms * risk_fraction, 3),
        'at_risk': at_risk,
        'at_risk_count': len(at_risk),
        'risk': bool(at_risk),
        'verdict': verdict,
    }


def describe(result):
    """One line for warnings and failures: the worst stun against the QoS timeout."""
    worst = result.get('worst')
    if not worst:
        return 'no Checkpoint_Unstun line found'
    where = '%s line %s' % (worst.get('file'), worst.get('line'))
    return ('%d of %d stun(s) at or above half the mirror QoS timeout (%s ms of %d ms); longest %.3f s at %s (%s)'
            % (result['at_risk_count'], result['count'], _fmt_ms(result['risk_threshold_ms']),
               result['qos_timeout_ms'], worst['seconds'], worst.get('timestamp') or 'unknown time', where))


def _fmt_ms(value):
    return ('%d' % value) if float(value).is_integer() else ('%.1f' % value)


def analyse(paths, qos_timeout_ms, risk_fraction=RISK_FRACTION, reader=read_log, expander=expand_paths):
    """Read every log of ``paths`` and judge its stuns.  Raises StunLogError for unusable paths."""
    files = expander(paths)
    stuns = []
    per_file = []
    for path in files:
        found = parse_stuns(reader(path), source=path)
        per_file.append({'path': path, 'count': len(found)})
        stuns.extend(found)
    result = judge(stuns, qos_timeout_ms, risk_fraction=risk_fraction)
    result['files'] = per_file
    return result
