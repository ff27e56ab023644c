# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
#
# This file is the one place that knows how to talk to InterSystems IRIS and Cache: instance discovery
# (qlist, parameters.isc, CPF), running ObjectScript in a session as the instance owner with credentials on
# stdin, the 5/3 exit-code convention, and parsing of the freeze/thaw log output.
#
# It imports nothing from ansible and nothing outside the Python standard library (Python 3.6+): the hooks
# role installs a verbatim copy of this file next to an on-host program that imports it directly.
"""Private helpers to discover, freeze, thaw and query InterSystems IRIS / Cache instances."""

from __future__ import absolute_import, division, print_function

import concurrent.futures
import datetime
import os
import pwd
import grp
import re
import shutil
import tempfile
import threading
import time

try:
    from ansible_collections.irisops.backup.plugins.module_utils import _run
except ImportError:  # an on-host copy (hook program, irisops-backup, dead-man switch): the files side by side
    import _run  # pylint: disable=import-error

__metaclass__ = type

#: The interface the on-host programs (irisops-hook, irisops-backup) were written against; they refuse a copy of
#: this file with another value.
API_VERSION = 2

# UNCONFIRMED facts this file relies on, each kept in one constant below so that it is easy to correct:
#   SET_HISTORY_WRAP   ExternalSetHistory's exit status from an OS command, and its (LogFile, Text) signature
#   STAT_RESUME_ARGS   `-W` on Cache's cstat (documented for irisstat only)
#   METHOD_RC          any exit status other than 5/3 (login refused, <NAMESPACE>, instance down) is only "not 5/3"
#   BACKUP_ROLE_PRIVILEGES  the privileges of the custom least-privilege backup role (the default role is %Manager)

# ---------------------------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------------------------

#: Exit status of ExternalFreeze/ExternalThaw/IsWDSuspendedExt called from an OS command: success / frozen.
RC_SUCCESS = 5
#: Exit status of ExternalFreeze/ExternalThaw/IsWDSuspendedExt called from an OS command: failure / not frozen.
RC_FAILURE = 3

#: Exit-status convention per method.  ExternalFreeze, ExternalThaw and IsWDSuspendedExt are documented (5/3).
#: ExternalSetHistory is NOT documented to set an exit status (UNCONFIRMED), so set_history_expr() wraps it in
#: $SYSTEM.Process.Terminate() to produce the same 5/3 convention; change SET_HISTORY_WRAP if that is wrong.
METHOD_RC = {
    'freeze': (RC_SUCCESS, RC_FAILURE),
    'thaw': (RC_SUCCESS, RC_FAILURE),
    'is_wd_suspended': (RC_SUCCESS, RC_FAILURE),
    'set_history': (RC_SUCCESS, RC_FAILURE),
}

#: When True, set_history_expr() converts the %Status of ExternalSetHistory into exit status 5/3 with
#: $SYSTEM.Process.Terminate() (the Terminate(,code) idiom is from IRISMeister/azure_backup_script ZBACKUP.mac).
#: UNCONFIRMED on real IRIS; one switch to flip.
SET_HISTORY_WRAP = True

#: Arguments that make ``iris stat INST`` / ``ccontrol stat INST`` resume a write daemon suspended by a backup.
#: ``irisstat -W`` is documented (IRIS Data Integrity Guide); ``cstat -W`` on Cache is UNCONFIRMED.
STAT_RESUME_ARGS = ('-W',)

#: The namespace every Backup.General call runs in.
SYS_NAMESPACE = '%SYS'

#: Privileges ("Resource:Permissions") of the custom least-privilege role that iris_backup_user / the backup_user
#: role create with custom_role=true: the single source of truth.  UNCONFIRMED (docs/unconfirmed.md): InterSystems
#: documents no minimum privilege for Backup.General.  %Service_Terminal:U lets the user log in through
#: iris session / csession (a resource-based service); %Admin_Operate:U and RW on the system database are the
#: reference notes' candidate for Backup.General.  {sysdb} is replaced by SYSTEM_DATABASE of the flavour.
BACKUP_ROLE_PRIVILEGES = ('%Service_Terminal:U', '%Admin_Operate:U', '%DB_{sysdb}:RW')
SYSTEM_DATABASE = {'iris': 'IRISSYS', 'cache': 'CACHESYS'}


def backup_role_resources(flavour):
    """Security.Roles resource string of the custom backup role for an instance of ``flavour``."""
    sysdb = SYSTEM_DATABASE.get(flavour or 'iris', SYSTEM_DATABASE['iris'])
    return ','.join(p.replace('{sysdb}', sysdb) for p in BACKUP_ROLE_PRIVILEGES)


#: IRIS default ExternalFreezeTimeOut (seconds) when a freezer is not given one (CONFIRMED: Data Integrity Guide;
#: the one default of the collection, docs/unconfirmed.md row 8 for the 1200 s cap).
DEFAULT_EXTERNAL_FREEZE_TIMEOUT = 600

#: Default waits (seconds) for one session.  A session against an instance frozen past its
#: ExternalFreezeTimeOut blocks at login, so every call has a bound.
DEFAULT_SESSION_TIMEOUT = 60
DEFAULT_QUERY_TIMEOUT = 30
#: Minimum bound (seconds) for the `stat -W` fallback: it does not log in, so it does not hang like a session
#: does, but it must not be cut short by a small session timeout on a busy host.
STAT_MIN_TIMEOUT = 30

#: Flavour table.  Command names are looked up on PATH (plus EXTRA_BIN_DIRS), then in <install_dir>/bin.
FLAVOURS = {
    'iris': {
        'control': 'iris',
        'session': ['iris', 'session'],
        'session_alt': 'irissession',
        'stat': 'irisstat',
        'cpf': 'iris.cpf',
        'log': 'messages.log',
        'dat': 'IRIS.DAT',
        'owner_user_key': 'security_settings.iris_user',
        'owner_group_key': 'security_settings.iris_group',
    },
    'cache': {
        'control': 'ccontrol',
        'session': ['csession'],
        'session_alt': None,
        'stat': 'cstat',
        'cpf': 'cache.cpf',
        'log': 'cconsole.log',
        'dat': 'CACHE.DAT',
        'owner_user_key': 'security_settings.cache_user',
        'owner_group_key': 'security_settings.cache_group',
    },
}
FLAVOUR_ORDER = ('iris', 'cache')
EXTRA_BIN_DIRS = ('/usr/bin', '/usr/local/bin')

MANAGER_USER_KEY = 'security_settings.manager_user'
MANAGER_GROUP_KEY = 'security_settings.manager_group'

#: The 13 caret-delimited fields of `iris qlist` / `ccontrol qlist` (1-based position = index + 1).
QLIST_FIELDS = (
    'name', 'install_dir', 'version', 'status_raw', 'cpf_file', 'superserver_port', 'webserver_port',
    'jdbc_port', 'state', 'product', 'mirror_member_type', 'mirror_status', 'data_dir',
)

#: Status words a qlist status can normalise to.
STATUS_RUNNING = 'running'
STATUS_INHIBITED = 'sign-on inhibited'
STATUS_DOWN = 'down'
STATUS_CRASHED = 'crashed'
STATUS_IN_USE = 'in use by another node'
STATUS_UNKNOWN = 'unknown'

#: Journal file names: YYYYMMDD.NNN, optionally after a prefix: the journal file prefix setting (the seed article
#: shows H20152_20170104.011) or a mirror journal's MIRRORNAME-20240101.001.
JOURNAL_FILE_RE = re.compile(r'^[A-Za-z0-9_-]*\d{8}\.\d{3,}[a-z]?$')


# ---------------------------------------------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------------------------------------------

def subprocess_runner(argv, data=None, timeout=None, env=None):
    """Run ``argv`` (a list, no shell) through the collection's one runner (_run.run) and return
    ``(rc, stdout, stderr)`` as text: stdin is /dev/null unless ``data`` is given (a session that prompts for a
    username sees end-of-file instead of waiting forever), the child runs in a new session, and after ``timeout``
    seconds its whole process group is killed and rc is None.

    Why not AnsibleModule.run_command: it has no timeout, and an IRIS session against an instance that stayed
    frozen past its ExternalFreezeTimeOut hangs at login (documented IRIS behaviour: new processes cannot sign
    on until ExternalThaw), so a module using it could block a play forever while the database is frozen.
    """
    if not isinstance(argv, (list, tuple)) or not argv:
        raise ValueError('argv must be a non-empty list')
    return _run.run(argv, data=data, timeout=timeout, env=env if env is not None else _run.command_env('iris'))


def _text(value):
    if value is None:
        return ''
    if isinstance(value, bytes):
        return value.decode('utf-8', 'replace')
    return value


# ---------------------------------------------------------------------------------------------------------------
# Parsers
# ---------------------------------------------------------------------------------------------------------------

def _norm_dir(path):
    path = (path or '').strip()
    if len(path) > 1:
        path = path.rstrip('/')
        if not path:
            path = '/'
    return path


def _int_or_none(value):
    value = (value or '').strip()
    if value.isdigit():
        return int(value)
    return None


def parse_status(status_raw):
    """Split a qlist status field into ``dict(status, status_detail, since, last_used, up, ready)``.

    Handles "running, since DATE", "down, last used DATE", "sign-on inhibited",
    "sign-on inhibited:primary transition", "running on node ? (cache.ids missing)", "crashed..." and
    "...in use by node...".  ``up``: the instance has shared memory up (running or sign-on inhibited);
    ``ready``: sessions can be expected to work (running, including the cache.ids-missing variant, as isclib).
    """
    raw = (status_raw or '').strip()
    head, _sep, activity = raw.partition(',')
    head = head.strip()
    activity = activity.strip()
    res = {'status': STATUS_UNKNOWN, 'status_detail': '', 'since': None, 'last_used': None,
           'up': False, 'ready': False}
    if activity.startswith('since '):
        res['since'] = activity[len('since '):].strip()
    elif activity.startswith('last used '):
        res['last_used'] = activity[len('last used '):].strip()
    elif activity:
        res['status_detail'] = activity
    low = head.lower()
    if low.startswith('running'):
        res['status'] = STATUS_RUNNING
        rest = head[len('running'):].strip()
        if rest:
            res['status_detail'] = rest
        res['up'] = res['ready'] = True
    elif low.startswith('sign-on inhibited'):
        res['status'] = STATUS_INHIBITED
        rest = head[len('sign-on inhibited'):].lstrip(':').strip()
        if rest:
            res['status_detail'] = rest
        res['up'] = True
    elif low.startswith('down'):
        res['status'] = STATUS_DOWN
    elif 'crash' in low:
        res['status'] = STATUS_CRASHED
        res['status_detail'] = head
    elif 'in use by node' in low:
        res['status'] = STATUS_IN_USE
        res['status_detail'] = head
    else:
        res['status_detail'] = head
    return res


def parse_qlist_line(line, flavour=None):
    """Parse one qlist line; returns a dict or None for blank/garbage lines."""
    line = (line or '').strip('\r\n').strip()
    if not line or '^' not in line:
        return None
    parts = line.split('^')
    if not parts[0].strip():
        return None
    parts = (parts + [''] * len(QLIST_FIELDS))[:len(QLIST_FIELDS)]
    inst = dict(zip(QLIST_FIELDS, [p.strip() for p in parts]))
    inst['name'] = inst['name']
    inst['install_dir'] = _norm_dir(inst['install_dir'])
    inst['data_dir'] = _norm_dir(inst['data_dir'])
    for key in ('superserver_port', 'webserver_port', 'jdbc_port'):
        inst[key] = _int_or_none(inst[key])
    inst.update(parse_status(inst['status_raw']))
    cpf = inst['cpf_file'].lower()
    if cpf.endswith('iris.cpf'):
        inst['flavour'] = 'iris'
    elif cpf.endswith('cache.cpf'):
        inst['flavour'] = 'cache'
    else:
        inst['flavour'] = flavour
    inst['mirror_member'] = bool(inst['mirror_member_type'])
    inst['qlist'] = line
    return inst


def parse_qlist(text, flavour=None):
    """Parse ``iris qlist`` / ``ccontrol qlist`` output: one dict per instance (all 13 fields + status split)."""
    result = []
    for line in (text or '').replace('\r\n', '\n').split('\n'):
        inst = parse_qlist_line(line, flavour=flavour)
        if inst is not None:
            result.append(inst)
    return result


def parse_parameters_isc(text):
    """Parse ``parameters.isc`` (``key: value`` lines).  Returns a dict; a repeated key keeps its last value
    and all values are also available under ``key + '[]'`` as a list."""
    res = {}
    for line in (text or '').replace('\r\n', '\n').split('\n'):
        line = line.strip()
        if not line or line.startswith('#') or ':' not in line:
            continue
        key, _sep, value = line.partition(':')
        key = key.strip()
        value = value.strip()
        if not key or ' ' in key:
            continue
        res[key] = value
        res.setdefault(key + '[]', []).append(value)
    return res


def parse_cpf(text):
    """Parse a CPF (iris.cpf / cache.cpf).

    Returns ``dict(sections, databases, journal, mirror_qos_timeout_ms, wij_dir, backups_before_purge,
    days_before_purge, journal_dirs)``.  ``sections`` maps section name -> ordered dict of key -> raw value
    (the case of section and key names is kept; look-ups below are case-insensitive).
    """
    sections = {}
    current = None
    for line in (text or '').replace('\r\n', '\n').split('\n'):
        stripped = line.strip()
        if not stripped or stripped.startswith(';') or stripped.startswith('#'):
            continue
        if stripped.startswith('[') and stripped.endswith(']'):
            current = stripped[1:-1].strip()
            sections.setdefault(current, {})
            continue
        if current is None or '=' not in stripped:
            continue
        key, _sep, value = stripped.partition('=')
        sections[current][key.strip()] = value.strip()

    def section(name):
        for sec_name, values in sections.items():
            if sec_name.lower() == name.lower():
                return values
        return {}

    def get(sec, key):
        for k, v in sec.items():
            if k.lower() == key.lower():
                return v
        return None

    databases = {}
    for dbname, value in section('Databases').items():
        directory = value.split(',')[0].strip()
        remote = value.split(',')[1].strip() if len(value.split(',')) > 1 else ''
        databases[dbname] = {'directory': _norm_dir(directory), 'server': remote}

    jsec = section('Journal')
    journal = dict(jsec)
    journal_dirs = []
    for key in ('CurrentDirectory', 'AlternateDirectory'):
        val = get(jsec, key)
        if val:
            d = _norm_dir(val)
            if d not in journal_dirs:
                journal_dirs.append(d)

    qos = None
    mirrors = section('Mirrors')
    mirror_name = next(iter(mirrors), None)     # [Mirrors] Name=GUID,...: the key is the mirror set's name
    for _name, value in mirrors.items():
        fields = value.split(',')
        if len(fields) > 4 and fields[4].strip().isdigit():
            qos = int(fields[4].strip())
            break
    if qos is None:
        val = get(section('MirrorMember'), 'QOSTimeout')
        if val and val.strip().isdigit():
            qos = int(val.strip())

    config = section('config')
    wij = get(config, 'wijdir')

    return {
        'sections': sections,
        'databases': databases,
        'database_dirs': sorted(set(d['directory'] for d in databases.values() if d['directory'] and not d['server'])),
        'journal': journal,
        'journal_dirs': journal_dirs,
        'backups_before_purge': _int_or_none(get(jsec, 'BackupsBeforePurge')),
        'days_before_purge': _int_or_none(get(jsec, 'DaysBeforePurge')),
        'freeze_on_error': _int_or_none(get(jsec, 'FreezeOnError')),
        'mirror_qos_timeout_ms': qos,
        'mirror_name': mirror_name,
        'wij_dir': _norm_dir(wij) if wij else None,
    }


_CONSOLE_TS = re.compile(r'^(?P<mo>\d{2})/(?P<d>\d{2})/(?P<y>\d{4}) (?P<t>\d{2}:\d{2}:\d{2}):\s+(?P<msg>.*)$')
_MLOG_TS = re.compile(r'^(?P<mo>\d{2})/(?P<d>\d{2})/(?P<y>\d{2})-(?P<t>\d{2}:\d{2}:\d{2})(?::(?P<ms>\d{1,3}))?'
                      r'\s+\((?P<pid>\d+)\)\s+(?P<sev>\d+)\s+\[(?P<cat>[^\]]*)\]\s+(?P<msg>.*)$')
_RESTORE_RE = re.compile(r'Start a journal restore for this backup with journal file:\s*(?P<path>\S+)')
_MARKER_RE = re.compile(r'offset\s+(?P<off>\d+)\s+of\s+(?P<path>\S+)')
_NOT_JRN_RE = re.compile(r'Warning,\s+(?P<dir>\S+)\s+is not being journall?ed')
_SWITCHED_INLINE_RE = re.compile(r'(?:Journaling|Journal file) switched to:\s*(?P<path>\S+)')


def _iso(mo, d, y, t, ms=None):
    if len(y) == 2:
        y = '20' + y
    iso = '%s-%s-%sT%s' % (y, mo, d, t)
    if ms:
        iso += '.%03d' % int(ms)
    return iso


def _split_log_lines(text):
    """Yield ``(timestamp_iso_or_None, message)`` for log text in either format (CRLF tolerated)."""
    for raw in (text or '').replace('\r\n', '\n').replace('\r', '\n').split('\n'):
        line = raw.strip()
        if not line:
            continue
        m = _MLOG_TS.match(line)
        if m:
            yield _iso(m.group('mo'), m.group('d'), m.group('y'), m.group('t'), m.group('ms')), m.group('msg')
            continue
        m = _CONSOLE_TS.match(line)
        if m:
            yield _iso(m.group('mo'), m.group('d'), m.group('y'), m.group('t')), m.group('msg')
            continue
        yield None, line


def parse_freeze_log(text):
    """Parse ExternalFreeze output (its LogFile, stdout, or messages.log/cconsole.log lines).

    Returns ``dict(journal_file, marker_offset, marker_file, switched_to, not_journalled, warnings, errors,
    suspended, suspending_at, suspended_at, messages)``.  Timestamps are ISO 8601 in the instance's local time
    as written by IRIS (no time zone).
    """
    res = {'journal_file': None, 'marker_offset': None, 'marker_file': None, 'switched_to': None,
           'not_journalled': [], 'warnings': [], 'errors': [], 'suspended': False,
           'suspending_at': None, 'suspended_at': None, 'messages': []}
    expect = None
    for ts, msg in _split_log_lines(text):
        if expect == 'switched' and not ts and msg.startswith('/'):
            res['switched_to'] = msg.split()[0]
            expect = None
            continue
        if expect == 'marker' and not ts:
            m = _MARKER_RE.search(msg)
            if m:
                res['marker_offset'] = int(m.group('off'))
                res['marker_file'] = m.group('path')
                expect = None
                continue
        expect = None
        body = msg
        if 'ExternalFreeze:' in body:
            body = body.split('ExternalFreeze:', 1)[1].strip()
        res['messages'].append(msg)
        if re.match(r'^(Journal file|Journaling) switched to:\s*$', msg):
            expect = 'switched'
            continue
        m = _SWITCHED_INLINE_RE.search(msg)
        if m:
            res['switched_to'] = m.group('path')
            continue
        if msg.startswith('Journal marker set at'):
            m = _MARKER_RE.search(msg)
            if m:
                res['marker_offset'] = int(m.group('off'))
                res['marker_file'] = m.group('path')
            else:
                expect = 'marker'
            continue
        m = _RESTORE_RE.search(msg)
        if m:
            res['journal_file'] = m.group('path')
            continue
        m = _NOT_JRN_RE.search(msg)
        if m:
            if m.group('dir') not in res['not_journalled']:
                res['not_journalled'].append(m.group('dir'))
            res['warnings'].append(body)
            continue
        if body.startswith('Warning') or ' Warning' in body:
            res['warnings'].append(body)
            continue
        if body.startswith('Suspending system'):
            res['suspending_at'] = ts
            continue
        if body.startswith('System suspended'):
            res['suspended'] = True
            res['suspended_at'] = ts
            continue
        if re.search(r'\b(ERROR|Error|error|failed|Failed|FAILED|abort)', body) or body.startswith('<'):
            res['errors'].append(body)
    if res['journal_file'] is None and res['switched_to']:
        # Without an explicit "Start a journal restore" line the switched-to file is where a restore starts.
        res['journal_file'] = res['switched_to']
    return res


def parse_thaw_log(text):
    """Parse ExternalThaw output.  Returns ``dict(resuming_at, resumed, resumed_at, warnings, errors, messages)``."""
    res = {'resuming_at': None, 'resumed': False, 'resumed_at': None, 'warnings': [], 'errors': [], 'messages': []}
    for ts, msg in _split_log_lines(text):
        res['messages'].append(msg)
        body = msg.split('ExternalThaw:', 1)[1].strip() if 'ExternalThaw:' in msg else msg
        if body.startswith('Resuming system'):
            res['resuming_at'] = ts
        elif body.startswith('System resumed'):
            res['resumed'] = True
            res['resumed_at'] = ts
        elif body.startswith('Warning'):
            res['warnings'].append(body)
        elif re.search(r'\b(ERROR|Error|error|failed|Failed|FAILED)', body) or body.startswith('<'):
            res['errors'].append(body)
    return res


#: Instance-log lines that mark a freeze starting and a write daemon resuming (IRIS 2021.1 messages.log, verbatim in
#: the reference; "Write daemon resumed" after WDSuspendLimit / irisstat -W is UNCONFIRMED wording, matched loosely).
#: The freeze engine counts them since a position to tell its own freeze from a later one (docs/unconfirmed.md row 15).
FREEZE_LOG_EVENTS = (
    ('suspending', re.compile(r'ExternalFreeze:\s+Suspending system')),
    ('suspended', re.compile(r'ExternalFreeze:\s+System suspended')),
    ('resumed', re.compile(r'ExternalThaw:\s+System resumed|[Ww]rite daemon resumed')),
)


def log_events(text):
    """The freeze/resume events (``'suspending'``, ``'suspended'``, ``'resumed'``) of instance-log text, in order."""
    events = []
    for line in (text or '').splitlines():
        for kind, pattern in FREEZE_LOG_EVENTS:
            if pattern.search(line):
                events.append(kind)
                break
    return events


def log_position(instance):
    """Where the instance log (messages.log / cconsole.log) ends now: ``dict(path, inode, offset)``, or None."""
    path = instance.get('messages_log')
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {'path': path, 'inode': st.st_ino, 'offset': st.st_size}


def log_events_since(position, read_from=None):
    """The events logged since ``position`` (see log_position), or None when the log cannot tell: no position, the
    file was rotated (another inode, or shorter than the position) or cannot be read."""
    if not position or not position.get('path'):
        return None
    try:
        if read_from is not None:
            text = read_from(position)
        else:
            with open(position['path'], 'rb') as f:
                st = os.fstat(f.fileno())
                if st.st_ino != position.get('inode') or st.st_size < position.get('offset', 0):
                    return None
                f.seek(position.get('offset', 0))
                text = f.read().decode('utf-8', 'replace')
    except (IOError, OSError):
        return None
    if text is None:
        return None
    return log_events(text)


# ---------------------------------------------------------------------------------------------------------------
# Discovery
# ---------------------------------------------------------------------------------------------------------------

def find_executable(name, which=None, extra_dirs=EXTRA_BIN_DIRS):
    """shutil.which plus the usual bin directories (Ansible's PATH on some hosts lacks /usr/local/bin)."""
    which = which or shutil.which
    found = which(name)
    if found:
        return found
    for d in extra_dirs:
        cand = os.path.join(d, name)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def _read_text(path):
    with open(path, 'rb') as f:
        return f.read().decode('utf-8', 'replace')


def _session_cmd(flavour, control_path, install_dir, which):
    """The argv prefix that starts a session for this flavour."""
    spec = FLAVOURS[flavour]
    if flavour == 'iris':
        return [control_path, 'session']
    name = spec['session'][0]
    cands = []
    if control_path:
        cands.append(os.path.join(os.path.dirname(control_path), name))
    if install_dir:
        cands.append(os.path.join(install_dir, 'bin', name))
    found = find_executable(name, which=which)
    if found:
        return [found]
    for c in cands:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return [c]
    return [name]


def instance_paths(inst):
    """Paths of parameters.isc and the CPF for a qlist instance dict."""
    install = inst.get('install_dir') or ''
    conf_dir = inst.get('data_dir') or install
    cpf = inst.get('cpf_file') or FLAVOURS.get(inst.get('flavour') or 'iris', FLAVOURS['iris'])['cpf']
    cpf_path = cpf if os.path.isabs(cpf) else os.path.join(conf_dir, cpf)
    return os.path.join(install, 'parameters.isc'), cpf_path


def enrich_instance(inst, read_file=None):
    """Add owner/manager users (parameters.isc) and database/journal dirs, purge settings, mirror QoS (CPF)."""
    read_file = read_file or _read_text
    flavour = inst.get('flavour') or 'iris'
    spec = FLAVOURS[flavour]
    params_path, cpf_path = instance_paths(inst)
    inst['parameters_file'] = params_path
    inst['cpf_path'] = cpf_path
    inst['discovery_warnings'] = list(inst.get('discovery_warnings') or [])
    params = {}
    try:
        params = parse_parameters_isc(read_file(params_path))
    except (IOError, OSError) as exc:
        inst['discovery_warnings'].append('cannot read %s: %s' % (params_path, exc))
    inst['manager_user'] = params.get(MANAGER_USER_KEY) or None
    inst['manager_group'] = params.get(MANAGER_GROUP_KEY) or None
    inst['owner_user'] = (params.get(spec['owner_user_key']) or params.get('security_settings.iris_user')
                          or params.get('security_settings.cache_user') or None)
    inst['owner_group'] = (params.get(spec['owner_group_key']) or params.get('security_settings.iris_group')
                           or params.get('security_settings.cache_group') or None)
    cpf = None
    try:
        cpf = parse_cpf(read_file(cpf_path))
    except (IOError, OSError) as exc:
        inst['discovery_warnings'].append('cannot read %s: %s' % (cpf_path, exc))
    if cpf is not None:
        inst['databases'] = dict((k, v['directory']) for k, v in cpf['databases'].items())
        inst['database_dirs'] = cpf['database_dirs']
        inst['journal_dirs'] = cpf['journal_dirs']
        inst['journal_current_dir'] = _norm_dir(cpf['journal'].get('CurrentDirectory') or '') or None
        inst['journal_alternate_dir'] = _norm_dir(cpf['journal'].get('AlternateDirectory') or '') or None
        inst['backups_before_purge'] = cpf['backups_before_purge']
        inst['days_before_purge'] = cpf['days_before_purge']
        inst['freeze_on_error'] = cpf['freeze_on_error']
        inst['mirror_qos_timeout_ms'] = cpf['mirror_qos_timeout_ms']
        inst['mirror_name'] = cpf['mirror_name']
        inst['wij_dir'] = cpf['wij_dir']
    else:
        for key in ('databases',):
            inst[key] = {}
        for key in ('database_dirs', 'journal_dirs'):
            inst[key] = []
        for key in ('journal_current_dir', 'journal_alternate_dir', 'backups_before_purge', 'days_before_purge',
                    'freeze_on_error', 'mirror_qos_timeout_ms', 'mirror_name', 'wij_dir'):
            inst[key] = None
    inst['messages_log'] = os.path.join(inst.get('data_dir') or inst.get('install_dir') or '', 'mgr', spec['log'])
    return inst


def discover_instances(runner=None, which=None, read_file=None, flavours=FLAVOUR_ORDER, timeout=DEFAULT_QUERY_TIMEOUT):
    """Find ``iris`` and ``ccontrol``, run ``qlist`` with each and merge the instances of both flavours.

    Returns ``(instances, errors)``: a list of instance dicts (qlist fields, flavour, control/session commands,
    owner/manager users, CPF facts) and a list of error strings (a qlist that failed, files not readable).
    An instance listed by both commands is reported once (first flavour wins unless its CPF says otherwise).
    """
    runner = runner or subprocess_runner
    instances = []
    errors = []
    seen = set()
    for flavour in flavours:
        spec = FLAVOURS[flavour]
        control = find_executable(spec['control'], which=which)
        if not control:
            continue
        argv = [control, 'qlist']
        rc, out, err = runner(argv, None, timeout)
        if rc != 0:
            errors.append('%s failed (rc=%s): %s' % (' '.join(argv), rc, (err or out).strip()))
            continue
        for inst in parse_qlist(out, flavour=flavour):
            key = inst['name'].upper()
            if key in seen:
                continue
            seen.add(key)
            inst_flavour = inst.get('flavour') or flavour
            inst['flavour'] = inst_flavour
            # The control command that listed the instance is the one that manages it.
            if inst_flavour != flavour:
                other = find_executable(FLAVOURS[inst_flavour]['control'], which=which)
                ctl = other or control
            else:
                ctl = control
            inst['control_cmd'] = ctl
            inst['session_cmd'] = _session_cmd(inst_flavour, ctl, inst['install_dir'], which)
            enrich_instance(inst, read_file=read_file)
            instances.append(inst)
    return instances, errors


def find_instance(instances, name):
    """Case-insensitive look-up of an instance by name; None when unknown."""
    for inst in instances:
        if inst['name'].upper() == (name or '').upper():
            return inst
    return None


def default_run_as(instance):
    """The OS user to run sessions as: the instance manager user, else its owner; None when unknown."""
    return instance.get('manager_user') or instance.get('owner_user') or None


def current_username():
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def check_run_as(run_as):
    """Return an error string when ``run_as`` is not an existing OS user, else None."""
    if not run_as:
        return None
    try:
        pwd.getpwnam(run_as)
    except KeyError:
        return 'OS user %r does not exist on this host' % run_as
    return None


def instance_not_ready_error(instance):
    """An error message when sessions cannot be expected to work on this instance, else None."""
    status = instance.get('status')
    if instance.get('ready'):
        return None
    if status == STATUS_DOWN:
        return ('instance %s is down (qlist: %r); start it (`%s start %s`) or leave it out of the selection'
                % (instance['name'], instance.get('status_raw'), os.path.basename(instance.get('control_cmd') or
                                                                                  'iris'), instance['name']))
    return ('instance %s is not ready for sessions (qlist status %r); wait until it is running'
            % (instance['name'], instance.get('status_raw')))


def list_journal_files(dirs):
    """Sorted list of journal file paths found in ``dirs`` (unreadable directories are skipped)."""
    files = set()
    for d in dirs or []:
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for n in names:
            if JOURNAL_FILE_RE.match(n) and os.path.isfile(os.path.join(d, n)):
                files.add(os.path.join(d, n))
    return sorted(files)


def instance_dirs(inst, include_install=True):
    """``(role, directory)`` pairs that hold an instance's data, in backup order: the installation and durable
    %SYS directories, every local database, the current and alternate journal directories, and the WIJ.  A
    snapshot backup must contain all of them from one moment (IRIS Data Integrity Guide)."""
    dirs = []
    if include_install and inst.get('install_dir'):
        dirs.append(('install', inst['install_dir']))
    if include_install and inst.get('data_dir') and inst['data_dir'] != inst.get('install_dir'):
        dirs.append(('data', inst['data_dir']))
    names = dict((v, k) for k, v in (inst.get('databases') or {}).items())
    for d in inst.get('database_dirs') or []:
        dirs.append(('database %s' % names.get(d, '?'), d))
    if inst.get('journal_current_dir'):
        dirs.append(('journal', inst['journal_current_dir']))
    if inst.get('journal_alternate_dir') and inst['journal_alternate_dir'] != inst.get('journal_current_dir'):
        dirs.append(('alternate journal', inst['journal_alternate_dir']))
    if inst.get('wij_dir'):
        dirs.append(('wij', inst['wij_dir']))
    return dirs


# ---------------------------------------------------------------------------------------------------------------
# ObjectScript builders
# ---------------------------------------------------------------------------------------------------------------

def objectscript_string(value):
    """An ObjectScript string literal: quotes doubled.  Control characters are refused."""
    value = '' if value is None else str(value)
    if any(ord(c) < 32 for c in value):
        raise ValueError('control characters (newline, tab, ...) are not allowed in %r' % value)
    return '"' + value.replace('"', '""') + '"'


def _os_arg(value, kind):
    if value is None:
        return ''
    if kind == 'str':
        return objectscript_string(value)
    if kind == 'bool':
        if isinstance(value, bool):
            return '1' if value else '0'
        if str(value) in ('0', '1'):
            return str(value)
        raise ValueError('expected a boolean, got %r' % (value,))
    if kind == 'int':
        if isinstance(value, bool):
            raise ValueError('expected an integer, got %r' % (value,))
        try:
            ivalue = int(value)
        except (TypeError, ValueError):
            raise ValueError('expected an integer, got %r' % (value,))
        if ivalue < 0:
            raise ValueError('expected a non-negative integer, got %r' % (value,))
        return str(ivalue)
    raise ValueError(kind)


def _call(method, args):
    while args and args[-1] == '':
        args = args[:-1]
    return '##Class(Backup.General).%s(%s)' % (method, ','.join(args))


def external_freeze_expr(log_file=None, text=None, switch_journal=None, timeout=None, hibernate=None,
                         verbose=None, external_freeze_timeout=None, username=None, password=None,
                         wd_suspend_limit=None):
    """``##Class(Backup.General).ExternalFreeze(LogFile,Text,SwitchJournalFile,TimeOut,Hibernate,Verbose,
    ExternalFreezeTimeOut,Username,Password,WDSuspendLimit)`` with omitted arguments left empty.

    Username/Password end up on the session's command line: freeze() never passes them (the login credentials
    go on stdin instead); they are accepted here only for completeness.
    """
    args = [
        _os_arg(log_file, 'str'), _os_arg(text, 'str'), _os_arg(switch_journal, 'bool'), _os_arg(timeout, 'int'),
        _os_arg(hibernate, 'int'), _os_arg(verbose, 'bool'), _os_arg(external_freeze_timeout, 'int'),
        _os_arg(username, 'str'), _os_arg(password, 'str'), _os_arg(wd_suspend_limit, 'int'),
    ]
    return _call('ExternalFreeze', args)


def external_thaw_expr(log_file=None, username=None, password=None):
    """``##Class(Backup.General).ExternalThaw(LogFile,Username,Password)``."""
    return _call('ExternalThaw', [_os_arg(log_file, 'str'), _os_arg(username, 'str'), _os_arg(password, 'str')])


def set_history_expr(log_file=None, text=None):
    """ExternalSetHistory(LogFile,Text) - signature beyond LogFile UNCONFIRMED.

    With SET_HISTORY_WRAP the %Status is turned into exit status 5 (OK) / 3 (error) by
    ``##Class(%SYSTEM.Process).Terminate(,code)``.
    """
    inner = _call('ExternalSetHistory', [_os_arg(log_file, 'str'), _os_arg(text, 'str')])
    if not SET_HISTORY_WRAP:
        return inner
    return '##Class(%%SYSTEM.Process).Terminate(,$Select(##Class(%%SYSTEM.Status).IsOK(%s):%d,1:%d))' % (
        inner, RC_SUCCESS, RC_FAILURE)


def is_wd_suspended_expr():
    """``##Class(Backup.General).IsWDSuspendedExt()`` - exit status 5 when suspended (frozen), 3 otherwise."""
    return _call('IsWDSuspendedExt', [])


# ---------------------------------------------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------------------------------------------

def _runuser_path():
    return find_executable('runuser', extra_dirs=('/usr/sbin', '/sbin', '/usr/bin', '/bin')) or 'runuser'


def _sudo_path():
    return find_executable('sudo', extra_dirs=('/usr/bin', '/usr/local/bin', '/bin')) or 'sudo'


def wrap_run_as(argv, run_as=None, current_user=None):
    """Prefix ``argv`` so that it runs as ``run_as``: nothing when already that user, ``runuser -u USER --`` as
    root, else ``sudo -n -u USER --`` (non-interactive: fails instead of prompting)."""
    if current_user is None:
        current_user = current_username()
    if not run_as or run_as == current_user:
        return list(argv)
    if current_user == 'root':
        return [_runuser_path(), '-u', run_as, '--'] + list(argv)
    return [_sudo_path(), '-n', '-u', run_as, '--'] + list(argv)


def build_session_argv(instance, expr, run_as=None, current_user=None, namespace=SYS_NAMESPACE):
    """argv running ``iris session INST -U %SYS "expr"`` (``csession`` on Cache) as ``run_as``."""
    cmd = instance.get('session_cmd')
    if not cmd:
        flavour = instance.get('flavour') or 'iris'
        cmd = list(FLAVOURS[flavour]['session'])
    argv = list(cmd) + [instance['name'], '-U', namespace, expr]
    return wrap_run_as(argv, run_as=run_as, current_user=current_user)


def build_stat_argv(instance, args, run_as=None, current_user=None):
    """argv for ``iris stat INST ARGS`` / ``ccontrol stat INST ARGS`` (wrappers of irisstat/cstat that
    locate the instance's manager directory themselves).  ``-W`` on cstat is UNCONFIRMED."""
    control = instance.get('control_cmd') or FLAVOURS[instance.get('flavour') or 'iris']['control']
    argv = [control, 'stat', instance['name']] + list(args)
    return wrap_run_as(argv, run_as=run_as, current_user=current_user)


def credentials_stdin(username=None, password=None):
    """Text fed on stdin to answer the session's Username:/Password: prompts (None when no credentials)."""
    if not username and not password:
        return None
    return '%s\n%s\n' % (username or '', password or '')


def session(runner, instance, expr, run_as=None, username=None, password=None, timeout=None, current_user=None):
    """Run one ObjectScript expression in %SYS; returns ``(rc, stdout, stderr, argv, duration_ms)``.

    Credentials, when given, are fed on stdin and never appear in argv.
    """
    runner = runner or subprocess_runner
    argv = build_session_argv(instance, expr, run_as=run_as, current_user=current_user)
    data = credentials_stdin(username, password)
    start = time.time()
    rc, out, err = runner(argv, data, timeout)
    duration_ms = int(round((time.time() - start) * 1000))
    out = _scrub(out, password)
    err = _scrub(err, password)
    return rc, out, err, argv, duration_ms


def _scrub(text, secret):
    if secret and text:
        return text.replace(secret, '********')
    return text


# ---------------------------------------------------------------------------------------------------------------
# Exit codes
# ---------------------------------------------------------------------------------------------------------------

_METHOD_NAMES = {
    'freeze': 'ExternalFreeze', 'thaw': 'ExternalThaw', 'is_wd_suspended': 'IsWDSuspendedExt',
    'set_history': 'ExternalSetHistory',
}


def _diagnose(rc, stdout, stderr):
    text = '%s\n%s' % (stdout or '', stderr or '')
    low = text.lower()
    if rc is None:
        return ('the session did not finish within the timeout and was killed; a session hangs at login when the '
                'instance has been frozen past its ExternalFreezeTimeOut: thaw it (iris_thaw with stat_fallback) '
                'and check the instance')
    if 'access denied' in low or 'unauthorized' in low or 'login failed' in low or 'username:' in low:
        return ('login refused: enable OS authentication for %Service_Terminal and create an IRIS user named like '
                'the OS user the session runs as (with the %Manager role), or pass username/password')
    if 'sudo:' in low and ('password' in low or 'not allowed' in low or 'not in the sudoers' in low):
        return 'sudo refused to switch user: run the task as root (become: true) or allow sudo -n to the run_as user'
    if 'runuser:' in low or 'su:' in low:
        return 'switching to the run_as OS user failed: check that the user exists and its shell allows commands'
    if '<namespace>' in low or 'namespace' in low and 'not' in low:
        return 'namespace %SYS not available to this user'
    if '<protect>' in low:
        return ('the IRIS user lacks the privileges for Backup.General (grant %%Manager, or a custom role with %s)'
                % backup_role_resources('iris'))
    if 'not running' in low or 'is down' in low or 'not started' in low or 'cannot connect' in low:
        return 'the instance is not running: start it, or leave it out of the selection'
    if rc == 127 or 'no such file' in low or 'not found' in low:
        return 'the session command was not found: check the instance installation and PATH'
    return 'unexpected exit status; look at stdout/stderr and the instance log (messages.log / cconsole.log)'


def interpret_rc(method, rc, stdout='', stderr=''):
    """Map the exit status of a Backup.General call to ``(outcome, message)``.

    outcome is 'success' (5: frozen / thawed / WD suspended), 'failure' (3: freeze or thaw failed / WD not
    suspended) or 'error' (anything else: timeout, login refused, wrong namespace, instance down, ...).
    """
    ok, fail = METHOD_RC.get(method, (RC_SUCCESS, RC_FAILURE))
    name = _METHOD_NAMES.get(method, method)
    if rc is not None and rc == ok:
        return 'success', '%s returned %d (success)' % (name, rc)
    if rc is not None and rc == fail:
        if method == 'is_wd_suspended':
            return 'failure', '%s returned %d (write daemon not suspended)' % (name, rc)
        return 'failure', '%s returned %d (failure)' % (name, rc)
    shown = 'None (timeout)' if rc is None else rc
    hint = _diagnose(rc, stdout, stderr)
    return 'error', '%s: exit status %s is neither %d nor %d: %s' % (name, shown, ok, fail, hint)


# ---------------------------------------------------------------------------------------------------------------
# Log files
# ---------------------------------------------------------------------------------------------------------------

class LogCapture(object):
    """A log file for one Backup.General call.

    With ``path`` given, remembers its size now and returns what was appended.  Without it, creates a private
    temporary file in a fresh 0711 directory that ``run_as`` can write (owner run_as, group the instance owner
    group, mode 0660 when root; mode 0666 inside the unlistable directory when not root and another user
    writes it), and deletes it afterwards.
    """

    def __init__(self, path=None, run_as=None, group=None, tmp_dir=None, current_user=None):
        self.user_path = path
        self.tmpdir = None
        self.offset = 0
        if path:
            self.path = path
            try:
                self.offset = os.path.getsize(path)
            except OSError:
                self.offset = 0
            return
        self.tmpdir = tempfile.mkdtemp(prefix='irisops-', dir=tmp_dir)
        os.chmod(self.tmpdir, 0o711)
        fd, self.path = tempfile.mkstemp(prefix='backup-', suffix='.log', dir=self.tmpdir)
        os.close(fd)
        if current_user is None:
            current_user = current_username()
        if run_as and run_as != current_user:
            try:
                pw = pwd.getpwnam(run_as)
            except KeyError:
                pw = None
            if os.geteuid() == 0 and pw is not None:
                gid = pw.pw_gid
                if group:
                    try:
                        gid = grp.getgrnam(group).gr_gid
                    except KeyError:
                        pass
                os.chown(self.path, pw.pw_uid, gid)
                os.chmod(self.path, 0o660)
            else:
                # Not root (cannot chown) or unknown user (the session will fail anyway): the file name is random
                # and its directory cannot be listed by others.
                os.chmod(self.path, 0o666)
        else:
            os.chmod(self.path, 0o660)

    def read(self):
        try:
            with open(self.path, 'rb') as f:
                f.seek(self.offset)
                return f.read().decode('utf-8', 'replace')
        except (IOError, OSError):
            return ''

    def cleanup(self):
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None


# ---------------------------------------------------------------------------------------------------------------
# High level
# ---------------------------------------------------------------------------------------------------------------

def _now_iso():
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0, tzinfo=None)
    return now.isoformat() + 'Z'


def base_result(instance, action):
    """The common fields of a session result (freeze, thaw, set_history, is_frozen) of ``instance``."""
    return {
        'instance': instance['name'], 'flavour': instance.get('flavour'), 'action': action,
        'changed': False, 'failed': False, 'rc': None, 'stdout': '', 'stderr': '', 'command': [],
        'duration_ms': 0, 'msg': '',
    }


def _resolve_run_as(instance, run_as):
    return run_as if run_as else default_run_as(instance)


def is_frozen(runner, instance, run_as=None, username=None, password=None, timeout=DEFAULT_QUERY_TIMEOUT,
              current_user=None):
    """Query IsWDSuspendedExt.  Result has ``frozen`` True/False, or None with ``failed`` and ``msg`` on error."""
    run_as = _resolve_run_as(instance, run_as)
    res = base_result(instance, 'is_frozen')
    rc, out, err, argv, dur = session(runner, instance, is_wd_suspended_expr(), run_as=run_as, username=username,
                                      password=password, timeout=timeout, current_user=current_user)
    outcome, message = interpret_rc('is_wd_suspended', rc, out, err)
    res.update(rc=rc, stdout=out, stderr=err, command=argv, duration_ms=dur, run_as=run_as)
    if outcome == 'success':
        res['frozen'] = True
        res['msg'] = 'instance %s is frozen (write daemon suspended)' % instance['name']
    elif outcome == 'failure':
        res['frozen'] = False
        res['msg'] = 'instance %s is not frozen' % instance['name']
    else:
        res['frozen'] = None
        res['failed'] = True
        res['timed_out'] = rc is None
        res['msg'] = 'cannot tell whether instance %s is frozen: %s' % (instance['name'], message)
    return res


def _state_check(runner, instance, res, run_as, username, password, timeout, current_user):
    """IsWDSuspendedExt before freeze/thaw/set_history, bounded by the query timeout; recorded in res."""
    state = is_frozen(runner, instance, run_as=run_as, username=username, password=password,
                      timeout=min(timeout or DEFAULT_QUERY_TIMEOUT, DEFAULT_QUERY_TIMEOUT),
                      current_user=current_user)
    res['state_check'] = brief(state)
    return state


def freeze(runner, instance, log_file=None, text=None, switch_journal=None, external_freeze_timeout=None,
           wd_suspend_limit=None, quiesce_timeout=None, hibernate=None, verbose=None, timeout=DEFAULT_SESSION_TIMEOUT,
           run_as=None, username=None, password=None, check_state=True, tmp_dir=None, current_user=None,
           thaw_on_failure=True):
    """ExternalFreeze one instance.

    Already frozen (IsWDSuspendedExt = 5): ok, not changed.  On success ``changed`` is True and the result has
    journal_file, marker_offset, marker_file, switched_to, not_journalled, warnings, frozen_at (UTC ISO),
    log_suspended_at (instance local time from the log), log (text captured).  On exit 3 or any other status the
    result is failed; if the write daemon ended up suspended anyway it is thawed (``thawed_after_failure``).
    """
    run_as = _resolve_run_as(instance, run_as)
    res = base_result(instance, 'freeze')
    res['run_as'] = run_as
    res['already_frozen'] = False
    if check_state:
        state = _state_check(runner, instance, res, run_as, username, password, timeout, current_user)
        if state['failed']:
            res.update(failed=True, rc=state['rc'], stdout=state['stdout'], stderr=state['stderr'],
                       command=state['command'], duration_ms=state['duration_ms'],
                       msg='%s; nothing was frozen. Command: %s' % (state['msg'], ' '.join(state['command'])))
            return res
        if state['frozen']:
            res.update(already_frozen=True, frozen=True, rc=state['rc'], command=state['command'],
                       duration_ms=state['duration_ms'],
                       msg='instance %s is already frozen; nothing done' % instance['name'])
            return res
    try:
        expr = external_freeze_expr(log_file=None, text=text, switch_journal=switch_journal, timeout=quiesce_timeout,
                                    hibernate=hibernate, verbose=verbose,
                                    external_freeze_timeout=external_freeze_timeout,
                                    wd_suspend_limit=wd_suspend_limit)
    except ValueError as exc:
        res.update(failed=True, msg='invalid freeze option for instance %s: %s' % (instance['name'], exc))
        return res
    capture = LogCapture(path=log_file, run_as=run_as, group=instance.get('owner_group'), tmp_dir=tmp_dir,
                         current_user=current_user)
    try:
        expr = external_freeze_expr(log_file=capture.path, text=text, switch_journal=switch_journal,
                                    timeout=quiesce_timeout, hibernate=hibernate, verbose=verbose,
                                    external_freeze_timeout=external_freeze_timeout,
                                    wd_suspend_limit=wd_suspend_limit)
        rc, out, err, argv, dur = session(runner, instance, expr, run_as=run_as, username=username,
                                          password=password, timeout=timeout, current_user=current_user)
        log_text = capture.read()
    finally:
        capture.cleanup()
    parsed = parse_freeze_log(log_text + '\n' + out)
    outcome, message = interpret_rc('freeze', rc, out, err)
    res.update(rc=rc, stdout=out, stderr=err, command=argv, duration_ms=dur, log=log_text,
               log_file=log_file, outcome=outcome)
    res.update(_public_freeze_fields(parsed))
    if outcome == 'success':
        res.update(changed=True, frozen=True, frozen_at=_now_iso(),
                   msg='instance %s frozen (%s)' % (instance['name'], message))
        return res
    # Failed: find out whether the write daemon is suspended anyway, and thaw it if so.
    res['failed'] = True
    res['frozen'] = False
    after = is_frozen(runner, instance, run_as=run_as, username=username, password=password,
                      timeout=DEFAULT_QUERY_TIMEOUT, current_user=current_user)
    res['state_after_failure'] = brief(after)
    next_step = 'check the instance log (%s) and the output above, fix the cause and retry' % (
        instance.get('messages_log') or FLAVOURS[instance.get('flavour') or 'iris']['log'])
    if after['frozen'] or (after['failed'] and rc is None):
        res['suspended_after_failure'] = bool(after['frozen'])
        if thaw_on_failure:
            t = thaw(runner, instance, timeout=timeout, run_as=run_as, username=username, password=password,
                     check_state=False, tmp_dir=tmp_dir, current_user=current_user, stat_fallback=True)
            res['thawed_after_failure'] = not t['failed']
            res['thaw_after_failure'] = brief(t)
            if t['failed']:
                next_step = ('THE INSTANCE MAY STILL BE FROZEN and the automatic thaw failed (%s): run iris_thaw '
                             'with stat_fallback=true now' % t['msg'])
            else:
                next_step = 'the write daemon was suspended anyway and has been thawed; ' + next_step
    res['msg'] = 'freeze of instance %s failed: %s. Command: %s. Next: %s' % (
        instance['name'], message, ' '.join(argv), next_step)
    return res


def _public_freeze_fields(parsed):
    return {
        'journal_file': parsed['journal_file'], 'marker_offset': parsed['marker_offset'],
        'marker_file': parsed['marker_file'], 'switched_to': parsed['switched_to'],
        'not_journalled': parsed['not_journalled'], 'warnings': parsed['warnings'],
        'log_errors': parsed['errors'], 'log_suspended_at': parsed['suspended_at'],
        'log_suspending_at': parsed['suspending_at'], 'log_suspended': parsed['suspended'],
    }


def brief(res):
    """The part of a session result worth returning inside another result."""
    keys = ('rc', 'failed', 'msg', 'command', 'duration_ms', 'frozen', 'thawed_by', 'stdout', 'stderr')
    return dict((k, res.get(k)) for k in keys if k in res)


def qlist_status(runner, instance, timeout=DEFAULT_QUERY_TIMEOUT):
    """The instance's current qlist line, parsed (``status``, ``status_raw``, ... as ``parse_qlist_line``), or None
    when its control command is unknown, qlist fails or does not list it."""
    control = instance.get('control_cmd')
    if not control:
        return None
    rc, out, _err = (runner or subprocess_runner)([control, 'qlist'], None, timeout)
    if rc != 0:
        return None
    return find_instance(parse_qlist(out, flavour=instance.get('flavour')), instance['name'])


def went_down(runner, instance, res, message):
    """After a session that failed with an error (not a timeout): when qlist says the instance is down, mark
    ``res`` down and not frozen - a stopped instance holds no freeze - and return True."""
    status = qlist_status(runner, instance)
    if not status or status['status'] != STATUS_DOWN:
        return False
    control = os.path.basename(instance.get('control_cmd') or 'iris')
    res.update(failed=True, frozen=False, down=True, status_raw=status['status_raw'],
               msg='thaw of instance %s failed: %s. The instance is down (qlist: %r), so it is not frozen: a stopped '
                   'instance holds no freeze. Next: find out why it stopped (%s), start it (`%s start %s`) and take '
                   'the backup again' % (instance['name'], message, status['status_raw'],
                                         instance.get('messages_log') or 'the instance log', control,
                                         instance['name']))
    return True


def thaw(runner, instance, log_file=None, timeout=DEFAULT_SESSION_TIMEOUT, run_as=None, username=None,
         password=None, stat_fallback=False, check_state=True, tmp_dir=None, current_user=None):
    """ExternalThaw one instance.  Not frozen: ok, not changed.  ``thawed_by`` reports 'ExternalThaw' or
    'stat -W' (the irisstat/cstat fallback, only with ``stat_fallback``).  An instance found down (qlist) when the
    thaw session fails is reported failed with ``down`` True and ``frozen`` False."""
    run_as = _resolve_run_as(instance, run_as)
    res = base_result(instance, 'thaw')
    res['run_as'] = run_as
    res['thawed_by'] = None
    state = None
    if check_state:
        state = _state_check(runner, instance, res, run_as, username, password, timeout, current_user)
        if state['frozen'] is False:
            res.update(rc=state['rc'], command=state['command'], duration_ms=state['duration_ms'], frozen=False,
                       msg='instance %s is not frozen; nothing done' % instance['name'])
            return res
        if state['failed'] and not state.get('timed_out'):
            # Login refused / instance down: a thaw session would fail the same way.  Only fall through when
            # the query hung (the symptom of a freeze held past ExternalFreezeTimeOut).
            if went_down(runner, instance, res, state['msg']):
                res.update(rc=state['rc'], stdout=state['stdout'], stderr=state['stderr'], command=state['command'],
                           duration_ms=state['duration_ms'])
                return res
            if not stat_fallback:
                res.update(failed=True, rc=state['rc'], stdout=state['stdout'], stderr=state['stderr'],
                           command=state['command'], duration_ms=state['duration_ms'],
                           msg='%s; nothing was done. Command: %s' % (state['msg'], ' '.join(state['command'])))
                return res
    capture = LogCapture(path=log_file, run_as=run_as, group=instance.get('owner_group'), tmp_dir=tmp_dir,
                         current_user=current_user)
    try:
        expr = external_thaw_expr(log_file=capture.path)
        rc, out, err, argv, dur = session(runner, instance, expr, run_as=run_as, username=username,
                                          password=password, timeout=timeout, current_user=current_user)
        log_text = capture.read()
    finally:
        capture.cleanup()
    parsed = parse_thaw_log(log_text + '\n' + out)
    outcome, message = interpret_rc('thaw', rc, out, err)
    res.update(rc=rc, stdout=out, stderr=err, command=argv, duration_ms=dur, log=log_text, log_file=log_file,
               outcome=outcome, log_resumed_at=parsed['resumed_at'], warnings=parsed['warnings'],
               log_errors=parsed['errors'])
    if outcome == 'success':
        res.update(changed=True, frozen=False, thawed_by='ExternalThaw', thawed_at=_now_iso(),
                   msg='instance %s thawed (%s)' % (instance['name'], message))
        return res
    if outcome == 'error' and rc is not None and went_down(runner, instance, res, message):
        return res
    if stat_fallback:
        stat_argv = build_stat_argv(instance, STAT_RESUME_ARGS, run_as=run_as, current_user=current_user)
        start = time.time()
        stat_timeout = max(timeout or 0, STAT_MIN_TIMEOUT)
        src, sout, serr = (runner or subprocess_runner)(stat_argv, None, stat_timeout)
        sdur = int(round((time.time() - start) * 1000))
        res['stat_fallback'] = {'command': stat_argv, 'rc': src, 'stdout': sout, 'stderr': serr, 'duration_ms': sdur}
        after = is_frozen(runner, instance, run_as=run_as, username=username, password=password,
                          timeout=DEFAULT_QUERY_TIMEOUT, current_user=current_user)
        res['state_after'] = brief(after)
        if after['frozen'] is False:
            res.update(changed=True, frozen=False, thawed_by='stat -W', thawed_at=_now_iso(),
                       msg='instance %s: %s; resumed the write daemon with `%s`' % (
                           instance['name'], message, ' '.join(stat_argv)))
            return res
        res.update(failed=True, frozen=after['frozen'],
                   msg='thaw of instance %s failed: %s; the fallback `%s` (rc=%s) did not resume it either (%s). '
                       'Next: look at %s and resume the system by hand; users are blocked while it stays frozen'
                       % (instance['name'], message, ' '.join(stat_argv), src, after['msg'],
                          instance.get('messages_log') or 'the instance log'))
        return res
    res.update(failed=True,
               msg='thaw of instance %s failed: %s. Command: %s. Next: retry, or run iris_thaw with '
                   'stat_fallback=true (irisstat -W resumes a write daemon suspended by a backup)'
                   % (instance['name'], message, ' '.join(argv)))
    return res


def set_history(runner, instance, log_file=None, text=None, timeout=DEFAULT_SESSION_TIMEOUT, run_as=None,
                username=None, password=None, check_state=True, tmp_dir=None, current_user=None):
    """Record an external backup with ExternalSetHistory; refused while the instance is frozen."""
    run_as = _resolve_run_as(instance, run_as)
    res = base_result(instance, 'set_history')
    res['run_as'] = run_as
    if check_state:
        state = _state_check(runner, instance, res, run_as, username, password, timeout, current_user)
        if state['failed']:
            res.update(failed=True, rc=state['rc'], stdout=state['stdout'], stderr=state['stderr'],
                       command=state['command'], msg='%s; backup not recorded' % state['msg'])
            return res
        if state['frozen']:
            res.update(failed=True, frozen=True, refused=True,
                       msg='instance %s is still frozen; thaw it (iris_thaw) before recording the backup with '
                           'ExternalSetHistory' % instance['name'])
            return res
    try:
        set_history_expr(log_file=None, text=text)
    except ValueError as exc:
        res.update(failed=True, msg='invalid text for instance %s: %s' % (instance['name'], exc))
        return res
    capture = LogCapture(path=log_file, run_as=run_as, group=instance.get('owner_group'), tmp_dir=tmp_dir,
                         current_user=current_user)
    try:
        expr = set_history_expr(log_file=capture.path, text=text)
        rc, out, err, argv, dur = session(runner, instance, expr, run_as=run_as, username=username,
                                          password=password, timeout=timeout, current_user=current_user)
        log_text = capture.read()
    finally:
        capture.cleanup()
    outcome, message = interpret_rc('set_history', rc, out, err)
    res.update(rc=rc, stdout=out, stderr=err, command=argv, duration_ms=dur, log=log_text, outcome=outcome)
    if outcome == 'success':
        res.update(changed=True, recorded_at=_now_iso(), msg='backup recorded for instance %s' % instance['name'])
    else:
        res.update(failed=True, msg='ExternalSetHistory on instance %s failed: %s. Command: %s. Next: check the '
                                    'output and %s' % (instance['name'], message, ' '.join(argv),
                                                       instance.get('messages_log') or 'the instance log'))
    return res


def run_concurrently(fn, items):
    """Call ``fn(item)`` for every item, one thread each (sessions of different instances run side by side: the
    freeze window is as long as the slowest one, not the sum).  A single item runs in this thread."""
    items = list(items)
    if len(items) == 1:
        fn(items[0])
    elif items:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(items)) as pool:
            list(pool.map(fn, items))


def freeze_many(runner, instances, run_as=None, **kwargs):
    """Freeze several instances concurrently (one thread each), all or nothing.

    ``run_as`` may be a string (same user for all), a dict name -> user, or None (each instance's manager
    user).  If any freeze fails, every instance this call froze is thawed (and any failed one whose write daemon
    ended up suspended anyway, which freeze() already tries) before returning.

    Returns ``dict(failed, changed, results={name: result}, rolled_back={name: thaw_result}, msg)``.
    """
    def user_for(inst):
        if isinstance(run_as, dict):
            return run_as.get(inst['name'])
        return run_as

    results = {}
    lock = threading.Lock()

    def one(inst):
        try:
            r = freeze(runner, inst, run_as=user_for(inst), **kwargs)
        except Exception as exc:  # a bug must not leave other instances frozen
            r = base_result(inst, 'freeze')
            r.update(failed=True, msg='freeze of instance %s raised %s: %s' % (inst['name'], type(exc).__name__, exc))
        with lock:
            results[inst['name']] = r

    run_concurrently(one, instances)

    failed = [n for n, r in results.items() if r['failed']]
    rolled_back = {}
    if failed:
        thaw_kwargs = dict((k, kwargs[k]) for k in ('username', 'password', 'tmp_dir', 'current_user', 'timeout')
                           if k in kwargs)
        for inst in instances:
            r = results.get(inst['name'])
            if r is None:
                continue
            need = r.get('changed') or (r.get('suspended_after_failure') and not r.get('thawed_after_failure'))
            if need:
                # the stat -W fallback too: a rollback that leaves an instance frozen is the worst outcome
                t = thaw(runner, inst, run_as=user_for(inst), check_state=False, stat_fallback=True, **thaw_kwargs)
                rolled_back[inst['name']] = brief(t)
                if not t['failed']:
                    r['changed'] = False
                    r['frozen'] = False
                    r['rolled_back'] = True
                else:
                    r['rolled_back'] = False
    still_frozen = [n for n, t in rolled_back.items() if t['failed']]
    if failed:
        details = ' | '.join(results[n]['msg'] for n in sorted(failed))
        msg = 'freeze failed on %s: %s' % (', '.join(sorted(failed)), details)
        if rolled_back:
            thawed_again = sorted(n for n in rolled_back if n not in still_frozen)
            msg += '. Thawed again: %s' % (', '.join(thawed_again) or 'none')
        if still_frozen:
            msg += '. STILL FROZEN (thaw failed): %s - run iris_thaw with stat_fallback=true now' % (
                ', '.join(sorted(still_frozen)))
    else:
        msg = 'frozen: %s' % (', '.join(sorted(n for n, r in results.items() if r['changed'])) or 'none')
    return {
        'failed': bool(failed), 'changed': any(r['changed'] for r in results.values()),
        'results': results, 'rolled_back': rolled_back, 'still_frozen': still_frozen, 'msg': msg,
    }


def select_instances(instances, selection, running_only_for_all=True, include_inhibited=False):
    """Resolve ``selection`` (a name, a list of names, or 'all') against discovered instances.

    Returns ``(selected, errors)``.  'all' means every instance that is ready (running), or with
    ``include_inhibited`` every instance that is up (also "sign-on inhibited": a thaw must reach an instance frozen
    past its ExternalFreezeTimeOut, which may show that way); names are matched case-insensitively; unknown names
    produce an error listing the known instances.
    """
    if isinstance(selection, str):
        selection = [selection]
    selection = [s for s in (selection or []) if s is not None and str(s).strip()]
    errors = []
    selected = []
    known = ', '.join(i['name'] for i in instances) or 'none found by iris/ccontrol qlist'
    if not selection:
        return [], ["no instance selected: the instance list is empty; give instance names or 'all' (known: %s)"
                    % known]
    if any(str(s).lower() == 'all' for s in selection):
        if len(selection) > 1:
            errors.append("'all' cannot be combined with instance names: %s; give either 'all' or only names"
                          % ', '.join(str(s) for s in selection))
        selected = [i for i in instances if i.get('ready') or not running_only_for_all
                    or (include_inhibited and i.get('up'))]
        return selected, errors
    for name in selection:
        inst = find_instance(instances, name)
        if inst is None:
            errors.append('unknown instance %r (known: %s)' % (name, known))
        elif inst not in selected:
            selected.append(inst)
    return selected, errors


# ---------------------------------------------------------------------------------------------------------------
# Shared module plumbing (plain data, no ansible import)
# ---------------------------------------------------------------------------------------------------------------

def common_argument_spec():
    """Argument spec of the options documented in the irisops.backup.iris doc fragment."""
    return dict(
        run_as=dict(type='str'),
        username=dict(type='str'),
        password=dict(type='str', no_log=True),
        timeout=dict(type='int', default=DEFAULT_SESSION_TIMEOUT),
    )


def instances_argument_spec():
    return dict(instances=dict(type='list', elements='str', required=True, aliases=['instance', 'name']))


def validate_common(params):
    """Errors (list of str) in the common options before anything runs."""
    errors = []
    if params.get('timeout') is not None and params['timeout'] <= 0:
        errors.append('timeout must be a positive number of seconds')
    if bool(params.get('username')) != bool(params.get('password')):
        errors.append('username and password must be given together')
    err = check_run_as(params.get('run_as'))
    if err:
        errors.append('run_as: %s' % err)
    return errors


def log_file_error(path):
    """An error text when ``log_file`` names a file in a directory that does not exist, else None."""
    if path is None:
        return None
    log_dir = os.path.dirname(path)
    if not log_dir or not os.path.isdir(log_dir):
        return 'log_file: directory %s does not exist' % log_dir
    return None


def prepare_selection(selection, runner=None, which=None, read_file=None, require_ready=True, run_as=None,
                      include_inhibited=False):
    """Discover instances and resolve ``selection``; check each selected instance is usable.

    Returns ``dict(instances, selected, errors, discovery_errors)``; ``errors`` lists every reason not to go on
    (unknown instance with the known ones, instance down, run_as user missing, nothing discovered).
    """
    instances, discovery_errors = discover_instances(runner=runner, which=which, read_file=read_file)
    errors = []
    if not instances:
        errors.append('no IRIS or Cache instance found on this host (iris qlist / ccontrol qlist)%s'
                      % ((': ' + '; '.join(discovery_errors)) if discovery_errors else
                         ' - neither iris nor ccontrol is on PATH, /usr/bin or /usr/local/bin'))
        return {'instances': [], 'selected': [], 'errors': errors, 'discovery_errors': discovery_errors}
    selected, sel_errors = select_instances(instances, selection, include_inhibited=include_inhibited)
    errors.extend(sel_errors)
    if require_ready:
        for inst in selected:
            err = instance_not_ready_error(inst)
            if err:
                errors.append(err)
    for inst in selected:
        user = run_as or default_run_as(inst)
        err = check_run_as(user)
        if err:
            errors.append('instance %s: cannot run sessions as %s (%s); set run_as' % (inst['name'], user, err))
    if not selected and not errors:
        errors.append('no running instance to act on (known: %s)' % ', '.join(
            '%s (%s)' % (i['name'], i['status']) for i in instances))
    return {'instances': instances, 'selected': selected, 'errors': errors, 'discovery_errors': discovery_errors}


def public_instance(inst):
    """The instance facts returned by modules (internal helper keys dropped)."""
    drop = ('qlist_line',)
    return dict((k, v) for k, v in inst.items() if k not in drop)


# ===============================================================================================================
# Security.* and script sessions (iris_backup_user)
# ===============================================================================================================
#
# How the collection reads and changes the security settings of an instance: ObjectScript lines for
# Security.System, Security.Services, Security.Users and Security.Roles, run as one `iris session INST -U %SYS`
# (`csession` on Cache) with the script on standard input (the login answers first when credentials are given).
# Every line reports through "IRISOPS|key|value" markers; prompts and banners around them are ignored.  What to
# change is decided by plugins/modules/iris_backup_user.py; how to say it to IRIS is here.
#
# UNCONFIRMED facts of this section, each in one constant (docs/unconfirmed.md rows 4, 5, 7, 14):
#   USERS_CREATE_ARGS        the positional signature of Security.Users.Create
#   USERS_PASSWORD_PROPERTY  the property of Security.Users.Modify that takes a clear-text password
#   SYSTEM_OBJECT            the name of the Security.System object
#   ROLES_CREATE_ARGS        the positional signature of Security.Roles.Create

#: Bits of AutheEnabled (CONFIRMED: $$$AutheOS=16, $$$AuthePassword=32).
AUTHE_OS = 16
AUTHE_PASSWORD = 32
#: The service used by `iris session` / `csession` on UNIX.
TERMINAL_SERVICE = '%Service_Terminal'
#: Name of the Security.System object (public Cache/IRIS scripts pass "SYSTEM"; IRIS also accepts an omitted name).
SYSTEM_OBJECT = 'SYSTEM'
#: Positional signature of Security.Users.Create as used in public scripts (UNCONFIRMED against the class reference):
#: Create(Username, Roles, Password, FullName, NameSpace, Routine, ExpirationDate, ChangePassword, Enabled, Comment)
USERS_CREATE_ARGS = ('Username', 'Roles', 'Password', 'FullName', 'NameSpace', 'Routine', 'ExpirationDate',
                     'ChangePassword', 'Enabled', 'Comment')
#: Property that takes a clear-text password in Security.Users.Modify (UNCONFIRMED; IRIS objects call it
#: PasswordExternal).
USERS_PASSWORD_PROPERTY = 'Password'
#: Positional signature of Security.Roles.Create as used in public scripts (UNCONFIRMED against the class reference):
#: Create(Name, Description, Resources, GrantedRoles)
ROLES_CREATE_ARGS = ('Name', 'Description', 'Resources', 'GrantedRoles')
#: Security.Users flags that keep an unused account or an old password from ever stopping the backups.
USER_FLAGS = ('AccountNeverExpires', 'PasswordNeverExpires')
#: Output marker of the scripts (prompts and banners around it are ignored).
SCRIPT_MARK = 'IRISOPS|'
SCRIPT_MARK_RE = re.compile(r'IRISOPS\|([A-Za-z0-9_.]+)\|(.*)$')
#: An ObjectScript error as a session prints it (``<PROTECT> ...``, ``<UNDEFINED> ...``).
OBJECTSCRIPT_ERROR_RE = re.compile(r'<[A-Z][A-Z ]*>[^\r\n]*')


def scrub_secrets(text, secrets):
    """``text`` with every one of ``secrets`` replaced by asterisks."""
    for secret in secrets:
        text = _scrub(text, secret)
    return text


def objectscript_errors(text):
    """The ObjectScript error lines (``<PROTECT> ...``) found in session output, in order."""
    return OBJECTSCRIPT_ERROR_RE.findall(text or '')


def script_argv(inst, run_as):
    """``iris session INST -U %SYS`` (``csession`` on Cache) with no command: lines are read from stdin."""
    cmd = inst.get('session_cmd') or list(FLAVOURS[inst.get('flavour') or 'iris']['session'])
    return wrap_run_as(list(cmd) + [inst['name'], '-U', SYS_NAMESPACE], run_as=run_as)


def run_script(inst, lines, run_as, timeout, creds=None, secrets=(), runner=None):
    """Run ObjectScript ``lines`` in %SYS; ``creds`` = (username, password) answers the login prompts first.

    Returns dict(rc, values, errors, stdout, stderr, command, denied, complete): ``values`` are the markers the
    lines printed (``complete`` when the script reached its end marker).  Every secret is scrubbed from the output.
    """
    argv = script_argv(inst, run_as)
    data = ''
    if creds:
        data = credentials_stdin(creds[0], creds[1])
    data += '\n'.join(list(lines) + ['Write "%send|1",!' % SCRIPT_MARK, 'Halt']) + '\n'
    rc, out, err = (runner or subprocess_runner)(argv, data, timeout)
    out = scrub_secrets(out, secrets)
    err = scrub_secrets(err, secrets)
    values = {}
    errors = []
    for line in (out or '').replace('\r\n', '\n').split('\n'):
        m = SCRIPT_MARK_RE.search(line)
        if m:
            values[m.group(1)] = m.group(2).rstrip()
            continue
        e = OBJECTSCRIPT_ERROR_RE.search(line)
        if e:
            errors.append(e.group(0).strip())
    denied = 'end' not in values and 'access denied' in (out or '').lower()
    return {'rc': rc, 'values': values, 'errors': errors, 'stdout': out, 'stderr': err, 'command': argv,
            'denied': denied, 'complete': values.get('end') == '1'}


def mirror_lag_lines():
    """Read-only script: how far a mirror member is behind the primary, in journal files and in databases
    (``SYS.Mirror.DistanceFromPrimaryJournalFiles()`` / ``...Databases()``: 1 when there is no lag)."""
    return ['Write "%sjournal_distance|",##class(SYS.Mirror).DistanceFromPrimaryJournalFiles(),!,"%sdatabase_distance|",'
            '##class(SYS.Mirror).DistanceFromPrimaryDatabases(),!' % (SCRIPT_MARK, SCRIPT_MARK)]


def mirror_lag(inst, run_as=None, username=None, password=None, timeout=DEFAULT_QUERY_TIMEOUT, runner=None):
    """``(journal_distance, database_distance, error)`` of a running mirror member; the distances are ints, or None
    with ``error`` saying why."""
    creds = (username, password) if username else None
    res = run_script(inst, mirror_lag_lines(), run_as or default_run_as(inst), timeout, creds=creds,
                     secrets=[password] if password else (), runner=runner)
    got = [_int_or_none(res['values'].get(k)) for k in ('journal_distance', 'database_distance')]
    if not res['complete'] or None in got:
        output = (res['stdout'] or res['stderr'] or 'no output').strip()[-300:]
        why = '; '.join(res['errors']) or ('access denied' if res['denied'] else output)
        return None, None, 'instance %s: SYS.Mirror.DistanceFromPrimary* failed (rc %s): %s' % (
            inst['name'], res['rc'], why)
    return got[0], got[1], None


def script_status_write(key, sc='sc'):
    """ObjectScript that prints the %Status ``sc`` as the marker ``key`` (``1|`` or ``0|error text``)."""
    return 'Write "%s%s|",$SYSTEM.Status.IsOK(%s),"|",$SYSTEM.Status.GetErrorText(%s),!' % (SCRIPT_MARK, key, sc, sc)


def security_read_lines(name, role=None):
    """Read-only script: system and service authentication, the user ``name`` (and the role ``role`` when given)."""
    q = objectscript_string
    lines = [
        'Kill p Set sc=##class(Security.System).Get(%s,.p) %s Write "%ssystem.AutheEnabled|",$Get(p("AutheEnabled")),!'
        % (q(SYSTEM_OBJECT), script_status_write('system.sc'), SCRIPT_MARK),
        'Kill s Set sc=##class(Security.Services).Get(%s,.s) %s Write "%sservice.Enabled|",$Get(s("Enabled")),!,'
        '"%sservice.AutheEnabled|",$Get(s("AutheEnabled")),!'
        % (q(TERMINAL_SERVICE), script_status_write('service.sc'), SCRIPT_MARK, SCRIPT_MARK),
        'Write "%suser.exists|",##class(Security.Users).Exists(%s),!' % (SCRIPT_MARK, q(name)),
        'Kill u Set sc=##class(Security.Users).Get(%s,.u) Write "%suser.Roles|",$Get(u("Roles")),!,'
        '"%suser.Enabled|",$Get(u("Enabled")),!,"%suser.Comment|",$Get(u("Comment")),!'
        % (q(name), SCRIPT_MARK, SCRIPT_MARK, SCRIPT_MARK)
        + ''.join(',"%suser.%s|",$Get(u("%s")),!' % (SCRIPT_MARK, f, f) for f in USER_FLAGS),
    ]
    if role is not None:
        lines += [
            'Write "%srole.exists|",##class(Security.Roles).Exists(%s),!' % (SCRIPT_MARK, q(role)),
            'Kill r Set sc=##class(Security.Roles).Get(%s,.r) Write "%srole.Resources|",$Get(r("Resources")),!,'
            '"%srole.Description|",$Get(r("Description")),!' % (q(role), SCRIPT_MARK, SCRIPT_MARK),
        ]
    return lines


def _security_int(value):
    value = (value or '').strip()
    try:
        return int(value)
    except ValueError:
        return None


def parse_security_state(values, role_managed):
    """Turn the markers of security_read_lines() into a state dict; raises ValueError naming what is missing."""
    for key in ('system.sc', 'service.sc', 'user.exists'):
        if key not in values:
            raise ValueError('the read script printed no %s line' % key)
    if not values['system.sc'].startswith('1'):
        raise ValueError('Security.System.Get failed: %s' % values['system.sc'])
    if not values['service.sc'].startswith('1'):
        raise ValueError('Security.Services.Get(%s) failed: %s' % (TERMINAL_SERVICE, values['service.sc']))
    for key in ('user.exists', 'role.exists'):
        if key in values and values[key] not in ('0', '1'):
            raise ValueError('%s printed %r instead of 0 or 1' % (key, values[key]))
    exists = values.get('user.exists') == '1'
    state = {
        'system_authe': _security_int(values.get('system.AutheEnabled')),
        'service_enabled': _security_int(values.get('service.Enabled')),
        'service_authe': _security_int(values.get('service.AutheEnabled')),
        'user_exists': exists,
        'user_roles': split_roles(values.get('user.Roles')) if exists else [],
        'user_enabled': _security_int(values.get('user.Enabled')) if exists else None,
        'user_comment': values.get('user.Comment') if exists else None,
    }
    for f in USER_FLAGS:
        state['user_' + f] = _security_int(values.get('user.' + f)) if exists else None
    if state['system_authe'] is None or state['service_authe'] is None:
        raise ValueError('AutheEnabled could not be read (system %r, service %r)' % (
            values.get('system.AutheEnabled'), values.get('service.AutheEnabled')))
    if role_managed:
        if 'role.exists' not in values:
            raise ValueError('the read script printed no role.exists line (Security.Roles not available?)')
        state['role_exists'] = values.get('role.exists') == '1'
        state['role_resources'] = values.get('role.Resources') if state['role_exists'] else None
        state['role_description'] = values.get('role.Description') if state['role_exists'] else None
    return state


def split_roles(text):
    """The role names of a Security.Users ``Roles`` value ("A,B")."""
    return [r.strip() for r in (text or '').split(',') if r.strip()]


def same_roles(a, b):
    """Whether two lists of role names are the same set (role names are not case-sensitive)."""
    return sorted(r.lower() for r in a) == sorted(r.lower() for r in b)


def role_resources_map(text):
    """{resource (lower case): permissions as a sorted string} of a Security.Roles ``Resources`` value;
    "%DB_X:WR,%db_x:u" -> {'%db_x': 'RUW'}."""
    out = {}
    for item in (text or '').split(','):
        res, _sep, perms = item.strip().partition(':')
        if res.strip():
            key = res.strip().lower()
            out[key] = ''.join(sorted(set(out.get(key, '') + perms.strip().upper())))
    return out


def same_role_resources(a, b):
    """Whether two ``Resources`` values grant the same permissions on the same resources."""
    return role_resources_map(a) == role_resources_map(b)


# -- change lines: each prints its %Status as a "chg.*" marker ----------------------------------------------------

def user_delete_line(name):
    return 'Set sc=##class(Security.Users).Delete(%s) %s' % (
        objectscript_string(name), script_status_write('chg.user_delete'))


def user_create_line(name, role, password, full_name, comment):
    """Security.Users.Create of an enabled user with one role, no namespace or routine, no password change."""
    q = objectscript_string
    args = {'Username': q(name), 'Roles': q(role), 'Password': q(password), 'FullName': q(full_name),
            'NameSpace': '""', 'Routine': '""', 'ExpirationDate': '""', 'ChangePassword': '0', 'Enabled': '1',
            'Comment': q(comment)}
    return 'Set sc=##class(Security.Users).Create(%s) %s' % (
        ','.join(args[a] for a in USERS_CREATE_ARGS), script_status_write('chg.user_create'))


def user_modify_line(name, props, key='chg.user_modify'):
    """Security.Users.Modify of ``props`` [(property, ObjectScript value), ...]."""
    return 'Kill u %s Set sc=##class(Security.Users).Modify(%s,.u) %s' % (
        ' '.join('Set u("%s")=%s' % kv for kv in props), objectscript_string(name), script_status_write(key))


def user_flags_line(name):
    """Set every USER_FLAGS property of the user to 1."""
    return user_modify_line(name, [(f, '1') for f in USER_FLAGS], key='chg.user_flags')


def user_password_property(password):
    """The (property, value) that sets a clear-text password through Security.Users.Modify."""
    return (USERS_PASSWORD_PROPERTY, objectscript_string(password))


def role_create_line(name, description, resources):
    q = objectscript_string
    args = {'Name': q(name), 'Description': q(description), 'Resources': q(resources), 'GrantedRoles': '""'}
    return 'Set sc=##class(Security.Roles).Create(%s) %s' % (
        ','.join(args[a] for a in ROLES_CREATE_ARGS), script_status_write('chg.role_create'))


def role_resources_line(name, resources):
    """Security.Roles.Modify of the role's resources."""
    return 'Kill r Set r("Resources")=%s Set sc=##class(Security.Roles).Modify(%s,.r) %s' % (
        objectscript_string(resources), objectscript_string(name), script_status_write('chg.role_modify'))


def role_delete_line(name):
    return 'Set sc=##class(Security.Roles).Delete(%s) %s' % (
        objectscript_string(name), script_status_write('chg.role_delete'))


def system_authe_line(authe):
    """Security.System.Modify of AutheEnabled."""
    return 'Kill p Set p("AutheEnabled")=%d Set sc=##class(Security.System).Modify(%s,.p) %s' % (
        authe, objectscript_string(SYSTEM_OBJECT), script_status_write('chg.system'))


def terminal_service_line(enabled=None, authe=None):
    """Security.Services.Modify of TERMINAL_SERVICE: Enabled and/or AutheEnabled (None: left as it is)."""
    sets = []
    if enabled is not None:
        sets.append('Set s("Enabled")=%d' % enabled)
    if authe is not None:
        sets.append('Set s("AutheEnabled")=%d' % authe)
    return 'Kill s %s Set sc=##class(Security.Services).Modify(%s,.s) %s' % (
        ' '.join(sets), objectscript_string(TERMINAL_SERVICE), script_status_write('chg.service'))
