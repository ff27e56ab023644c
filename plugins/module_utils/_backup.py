# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
#
# Standard library only, no ansible import: installed on hosts as /usr/local/lib/irisops/_backup.py next to the other
# engine files and run as `irisops-backup` (the systemd timer runs it; no ansible-core needed on the host).
"""irisops-backup: the on-host backup engine.  One run is

    preflight -> freeze engine (freeze, LVM snapshots, validity check, thaw) -> mount read-only -> restic backup
    (progress) -> snapshot fill checked -> unmount and remove the LVM snapshots -> verify in the repository
    (restic check, file list and sizes against what was read, optional restore + command) -> tag the restic
    snapshot 'verified' -> ExternalSetHistory (only now: the backup is durable and verified) -> retention (restic
    forget with a floor of verified backups, prune) -> report (JSON + text) and metrics (node_exporter textfile).

Entry points, all thin: the module ``irisops.backup.iris_backup`` (``run`` in-process), the command
``irisops-backup run|list|check|prune|status|init`` (this file's ``main``), the systemd timer (``irisops-backup run``).

A backup is complete only when the repository holds its restic snapshot with the tag ``verified``: a run killed at
any point leaves either no restic snapshot (restic writes it last) or one without that tag, which ``list`` shows as
incomplete and the next run forgets.  Every failure thaws (the freeze engine), removes the LVM snapshots and forgets
a restic snapshot of the run that is not verified; ExternalSetHistory is never called for it.
"""

from __future__ import absolute_import, division, print_function

import argparse
import copy
import errno
import fcntl
import json
import os
import signal
import socket
import sys
import tempfile
import time

try:
    from ansible_collections.irisops.backup.plugins.module_utils import _drill
    from ansible_collections.irisops.backup.plugins.module_utils import _freeze
    from ansible_collections.irisops.backup.plugins.module_utils import _iris
    from ansible_collections.irisops.backup.plugins.module_utils import _lvm
    from ansible_collections.irisops.backup.plugins.module_utils import _restic
    from ansible_collections.irisops.backup.plugins.module_utils import _restore
    from ansible_collections.irisops.backup.plugins.module_utils import _run
    from ansible_collections.irisops.backup.plugins.module_utils import _snapset
except ImportError:  # an on-host copy: the engine files side by side
    if os.path.dirname(os.path.abspath(__file__)) not in sys.path:   # run as a script with python3 -I
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _drill  # pylint: disable=import-error
    import _freeze  # pylint: disable=import-error
    import _iris  # pylint: disable=import-error
    import _lvm  # pylint: disable=import-error
    import _restic  # pylint: disable=import-error
    import _restore  # pylint: disable=import-error
    import _run  # pylint: disable=import-error
    import _snapset  # pylint: disable=import-error

__metaclass__ = type

VERSION = '1.0.0'
DEFAULT_CONFIG = '/etc/irisops/backup.json'
#: The engine files a host needs for irisops-backup (the role copies them to /usr/local/lib/irisops).
ENGINE_FILES = ('_run.py', '_iris.py', '_lvm.py', '_freeze.py', '_snapset.py', '_restic.py', '_journal.py', '_drill.py',
                '_restore.py', '_backup.py')
#: Name of the systemd credential that holds the repository password (LoadCredential[Encrypted]=).
PASSWORD_CREDENTIAL = 'restic-password'
IRIS_PASSWORD_CREDENTIAL = 'iris-password'
MANIFEST_NAME = 'manifest.json'
MANIFEST_DIR = '.irisops'
MANIFEST_FORMAT = 1
#: Seconds between two progress lines (journal/stdout and the progress file the role polls).
PROGRESS_EVERY = 30

#: The configuration with its defaults (the role writes /etc/irisops/backup.json from its variables; the module takes
#: the same keys).  Keys of nested sections are listed in SECTIONS.
CONFIG_DEFAULTS = {
    'instances': ['all'],
    'volumes': [],
    'snapshot_size': '20%ORIGIN',
    'snapshot_suffix': '_irisops_bkp',
    'existing': 'remove',
    'unmapped_directories': 'fail',
    'include_install_dir': True,
    'mirror_primary': 'fail',
    'freeze_mode': 'together',
    'external_freeze_timeout': None,
    'max_freeze_seconds': None,
    'wd_suspend_limit': None,
    'deadman_timeout': None,
    'run_as': None,
    'username': None,
    'session_timeout': 60,
    'stat_fallback': True,
    'lvm_timeout': 120,
    'repository': None,
    'repository_password_file': None,
    'repository_password_credential': None,
    'password_credential': None,
    'repository_ssh_key': None,
    'repository_known_hosts': None,
    'repository_ssh_port': None,
    'restic_binary': 'restic',
    'restic_cache_dir': '/var/cache/irisops/restic',
    'compression': 'auto',
    'verify_read_data_subset': '10%',
    'verify_restore_command': None,
    'set_history': True,
    'retention': {'keep_last': 7, 'keep_daily': 7, 'keep_weekly': 4, 'keep_monthly': 6},
    'min_keep': 3,
    'prune': True,
    'mount_root': '/run/irisops/backup/mnt',
    'report_dir': '/var/lib/irisops/backup/reports',
    'metrics_file': '/var/lib/prometheus/node-exporter/irisops_backup.prom',
    'host': None,
    'progress_every': PROGRESS_EVERY,
    'journal_metrics_file': '/var/lib/prometheus/node-exporter/irisops_journals.prom',
    'drill_root': '/var/lib/irisops/drill',
    'drill_instance': None,
    'drill_metrics_file': '/var/lib/prometheus/node-exporter/irisops_drill.prom',
}
ABSOLUTE_PATHS = ('repository_password_file', 'repository_password_credential', 'password_credential',
                  'journal_metrics_file', 'drill_root', 'drill_metrics_file', 'repository_ssh_key',
                  'repository_known_hosts', 'restic_cache_dir',
                  'mount_root', 'report_dir', 'metrics_file')
CHOICES = {'existing': ('fail', 'remove'), 'unmapped_directories': ('fail', 'warn'),
           'mirror_primary': ('freeze', 'skip', 'fail'), 'freeze_mode': ('together', 'staggered'),
           'compression': ('auto', 'max', 'off')}


class BackupError(Exception):
    """A failure that ends the run; ``str()`` is the whole message (with its ``Next:``)."""


def _now():
    return time.time()


def iso(ts=None):
    return _freeze.now_iso(ts)


def host_name(cfg):
    return cfg.get('host') or socket.gethostname()


# ---------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------

def _bad_path(value):
    return not isinstance(value, str) or not os.path.isabs(value) or '/../' in value + '/' or '/./' in value + '/'


def validate_config(raw):
    """``(cfg, errors)``: the configuration with defaults filled in, and every reason not to run (before anything is
    frozen)."""
    cfg = copy.deepcopy(CONFIG_DEFAULTS)
    errors = []
    if not isinstance(raw, dict):
        return cfg, ['the configuration must be a mapping, got %s' % type(raw).__name__]
    unknown = sorted(set(raw) - set(CONFIG_DEFAULTS))
    if unknown:
        errors.append('unknown setting(s) %s (known: %s)' % (', '.join(unknown), ', '.join(sorted(CONFIG_DEFAULTS))))
    for key, value in raw.items():
        if key in CONFIG_DEFAULTS and value is not None:
            cfg[key] = value
    if isinstance(cfg['instances'], str):
        cfg['instances'] = [x.strip() for x in cfg['instances'].split(',') if x.strip()]
    if not cfg['repository']:
        errors.append('repository is not set: give an absolute path or sftp:user@host:/path')
    else:
        try:
            _restic.parse_repository(cfg['repository'])
        except ValueError as exc:
            errors.append(str(exc))
    for key in ABSOLUTE_PATHS:
        if cfg.get(key) is not None and _bad_path(cfg[key]):
            errors.append('%s %r: give an absolute path without "." or ".." components' % (key, cfg[key]))
    for key, choices in CHOICES.items():
        if cfg[key] not in choices:
            errors.append('%s %r: choose one of %s' % (key, cfg[key], ', '.join(choices)))
    for key in ('external_freeze_timeout', 'max_freeze_seconds', 'wd_suspend_limit', 'session_timeout',
                'lvm_timeout', 'progress_every'):
        if cfg[key] is not None and (not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] <= 0):
            errors.append('%s must be a positive number of seconds, got %r' % (key, cfg[key]))
    if cfg['deadman_timeout'] is not None and (not isinstance(cfg['deadman_timeout'], int) or
                                               cfg['deadman_timeout'] < 0):
        errors.append('deadman_timeout must be 0 (no switch) or a positive number of seconds')
    ret = cfg['retention']
    if not isinstance(ret, dict):
        errors.append('retention must be a mapping of %s to counts' % ', '.join(_restic.RETENTION_KEYS))
    else:
        bad = sorted(set(ret) - set(_restic.RETENTION_KEYS))
        if bad:
            errors.append('retention: unknown key(s) %s (known: %s)'
                          % (', '.join(bad), ', '.join(_restic.RETENTION_KEYS)))
        for key, value in ret.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                errors.append('retention.%s must be a count >= 0, got %r' % (key, value))
    if not isinstance(cfg['min_keep'], int) or isinstance(cfg['min_keep'], bool) or cfg['min_keep'] < 1:
        errors.append('min_keep must be at least 1 (the newest verified backup is never deleted), got %r'
                      % (cfg['min_keep'],))
    elif isinstance(ret, dict) and ret.get('keep_last') is not None and isinstance(ret.get('keep_last'), int) \
            and 0 < ret['keep_last'] < cfg['min_keep']:
        errors.append('retention.keep_last=%d is below the floor min_keep=%d: the policy could never be applied; '
                      'raise keep_last or lower min_keep' % (ret['keep_last'], cfg['min_keep']))
    elif isinstance(ret, dict) and not any(ret.get(k) for k in _restic.RETENTION_KEYS):
        errors.append('retention keeps nothing (all counts 0): give keep_last or keep_daily etc.')
    subset = cfg['verify_read_data_subset']
    if subset not in (None, '', '0', '0%') and not _valid_subset(subset):
        errors.append('verify_read_data_subset %r: give a percentage such as 10%% or n/t such as 1/5'
                      % (cfg['verify_read_data_subset'],))
    try:
        _lvm.parse_size(cfg['snapshot_size'])
    except _lvm.SizeError as exc:
        errors.append('snapshot_size: %s' % exc.msg)
    reason = _lvm.validate_lv_name('x' + str(cfg['snapshot_suffix']))
    if reason:
        errors.append('snapshot_suffix %r: %s' % (cfg['snapshot_suffix'], reason))
    return cfg, errors


def _valid_subset(value):
    value = str(value)
    if value.endswith('%'):
        try:
            return 0 < float(value[:-1]) <= 100
        except ValueError:
            return False
    a, sep, b = value.partition('/')
    return bool(sep) and a.isdigit() and b.isdigit() and 0 < int(a) <= int(b)


def load_config(path):
    try:
        with open(path) as f:
            raw = json.load(f)
    except (IOError, OSError) as exc:
        raise BackupError('cannot read the configuration %s: %s. Next: install it with the irisops.backup.lvm_backup '
                          'role or give --config' % (path, exc))
    except ValueError as exc:
        raise BackupError('the configuration %s is not valid JSON: %s' % (path, exc))
    cfg, errors = validate_config(raw)
    if errors:
        raise BackupError('nothing frozen: the configuration %s has problems: %s' % (path, '; '.join(errors)))
    return cfg


#: How a systemd encrypted credential is read back (root only; systemd 250 or later): the secret goes through a pipe
#: to restic (RESTIC_PASSWORD_COMMAND) and never lands in a file.
CREDS_DECRYPT = 'systemd-creds decrypt --name=%s %s -'


def password_source(cfg):
    """``(file, command)`` restic reads the repository password from: the credential systemd passed the service
    ($CREDENTIALS_DIRECTORY), else the encrypted credential file decrypted by systemd-creds, else the root-only
    file."""
    cred = os.environ.get('CREDENTIALS_DIRECTORY')
    if cred and os.path.isfile(os.path.join(cred, PASSWORD_CREDENTIAL)):
        return os.path.join(cred, PASSWORD_CREDENTIAL), None
    if cfg.get('repository_password_credential'):
        return None, CREDS_DECRYPT % (PASSWORD_CREDENTIAL, cfg['repository_password_credential'])
    return cfg.get('repository_password_file'), None


def iris_password(cfg):
    """The IRIS password for instances without OS authentication: given to the run, or from the service's
    credential, or decrypted from the credential file (never stored in the configuration)."""
    if cfg.get('password'):
        return cfg['password']
    cred = os.environ.get('CREDENTIALS_DIRECTORY')
    path = os.path.join(cred, IRIS_PASSWORD_CREDENTIAL) if cred else None
    if path and os.path.isfile(path):
        with open(path) as f:
            return f.read().rstrip('\n')
    if cfg.get('password_credential'):
        rc, out, _err = _run.run((CREDS_DECRYPT % (IRIS_PASSWORD_CREDENTIAL, cfg['password_credential'])).split(),
                                 timeout=60)
        if rc == 0:
            return out.rstrip('\n')
    return None


# ---------------------------------------------------------------------------------------------------------------
# Progress, report, metrics
# ---------------------------------------------------------------------------------------------------------------

class Progress(object):
    """Progress of a run: a line to ``emit`` (stdout/journal) at most every ``every`` seconds for the copy, at once
    for steps; the same as JSON in ``path`` for ``irisops-backup status`` (what the role polls)."""

    def __init__(self, path=None, emit=None, every=PROGRESS_EVERY, clock=_now):
        self.path = path
        self.emit = emit or (lambda line: None)
        self.every = every
        self.clock = clock
        self.last = 0
        self.state = {'phase': 'starting', 'started': iso(), 'pid': os.getpid()}

    def step(self, phase, text):
        self.state.update(phase=phase, text=text, updated=iso())
        self._write()
        self.emit('%s: %s' % (phase, text))

    def copy(self, status):
        done, total = status.get('bytes_done') or 0, status.get('total_bytes') or 0
        pct = status.get('percent_done')
        pct = 100.0 * pct if pct is not None else (100.0 * done / total if total else 0.0)
        elapsed = max(self.clock() - self.state.get('copy_started', self.clock()), 0.001)
        rate = done / elapsed
        text = 'copied %s of %s (%.0f%%), %s/s, %s files' % (_lvm.human_size(done), _lvm.human_size(total), pct,
                                                             _lvm.human_size(rate), status.get('files_done', 0))
        self.state.update(phase='copy', text=text, bytes_done=done, total_bytes=total, percent=round(pct, 1),
                          rate_bytes_per_s=int(rate), updated=iso())
        self._write()
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            self.emit('copy: ' + text)

    def _write(self):
        if not self.path:
            return
        try:
            _freeze.write_atomic(self.path, json.dumps(self.state, sort_keys=True), 0o600)
        except (IOError, OSError):
            pass


def metrics_text(report):
    """The node_exporter textfile of a run (text exposition format)."""
    host = report['host']
    lines = [
        '# HELP irisops_backup_last_run_timestamp_seconds When the last backup run of this host ended.',
        '# TYPE irisops_backup_last_run_timestamp_seconds gauge',
        'irisops_backup_last_run_timestamp_seconds{host="%s"} %d' % (host, int(report['finished_epoch'])),
        '# HELP irisops_backup_last_run_success 1 when the last backup run succeeded (verified in the repository).',
        '# TYPE irisops_backup_last_run_success gauge',
        'irisops_backup_last_run_success{host="%s"} %d' % (host, 1 if report['status'] == 'success' else 0),
        '# HELP irisops_backup_duration_seconds Duration of the last backup run.',
        '# TYPE irisops_backup_duration_seconds gauge',
        'irisops_backup_duration_seconds{host="%s"} %.3f' % (host, report['duration_s']),
        '# HELP irisops_backup_bytes_added Bytes the last run added to the repository (after deduplication).',
        '# TYPE irisops_backup_bytes_added gauge',
        'irisops_backup_bytes_added{host="%s"} %d' % (host, report.get('bytes_added') or 0),
        '# HELP irisops_backup_bytes_processed Bytes the last run read from the snapshots.',
        '# TYPE irisops_backup_bytes_processed gauge',
        'irisops_backup_bytes_processed{host="%s"} %d' % (host, report.get('bytes_processed') or 0),
        '# HELP irisops_backup_verified_snapshots Verified backups of this host in the repository after retention.',
        '# TYPE irisops_backup_verified_snapshots gauge',
        'irisops_backup_verified_snapshots{host="%s"} %d' % (host, report.get('verified_kept') or 0),
        '# HELP irisops_backup_freeze_window_seconds Longest freeze window of the last run, per instance.',
        '# TYPE irisops_backup_freeze_window_seconds gauge',
        '# HELP irisops_backup_last_success_timestamp_seconds When the newest verified backup of the instance was '
        'taken.',
        '# TYPE irisops_backup_last_success_timestamp_seconds gauge',
    ]
    for name, inst in sorted(report.get('instances', {}).items()):
        if inst.get('frozen_ms') is not None:
            lines.append('irisops_backup_freeze_window_seconds{host="%s",instance="%s"} %.3f'
                         % (host, name, inst['frozen_ms'] / 1000.0))
    for name, ts in sorted((report.get('last_success') or {}).items()):
        lines.append('irisops_backup_last_success_timestamp_seconds{host="%s",instance="%s"} %d' % (host, name, ts))
    return '\n'.join(lines) + '\n'


def write_metrics(path, text):
    """Atomically replace the textfile (temporary file in the same directory, then rename), as node_exporter needs."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, tmp = tempfile.mkstemp(prefix='.irisops-', suffix='.prom.tmp', dir=directory)
    with os.fdopen(fd, 'w') as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)


def report_text(rep):
    """The human report of a run (printed, and saved next to the JSON one)."""
    out = ['irisops-backup run %s on %s: %s' % (rep['run_id'], rep['host'], rep['status'].upper()),
           'started %s, finished %s (%.1f s), repository %s'
           % (rep['started'], rep['finished'], rep['duration_s'], rep['repository'])]
    if rep.get('error'):
        out.append('FAILED in %s: %s' % (rep.get('failed_step') or '?', rep['error']))
    out.append('freeze window %s ms (all snapshots in %s ms), freeze mode %s: %s' % (
        rep.get('freeze_window_ms') if rep.get('freeze_window_ms') is not None else '-',
        rep.get('snapshot_ms') if rep.get('snapshot_ms') is not None else '-', rep.get('freeze_mode'),
        '; '.join(rep.get('steps') or [])))
    out.append('instances:')
    for name, inst in sorted((rep.get('instances') or {}).items()):
        out.append('  %-10s %s, frozen %s ms, restore journal from %s%s%s' % (
            name, inst.get('action') or '-', inst.get('frozen_ms') if inst.get('frozen_ms') is not None else '-',
            inst.get('journal_file') or '-',
            (' offset %s' % inst['marker_offset']) if inst.get('marker_offset') is not None else '',
            ', history recorded' if inst.get('history_recorded') else ''))
    out.append('volumes:')
    for v in rep.get('volumes') or []:
        out.append('  %-18s snapshot %s, %s files, %s, fill %s%% at end of copy' % (
            '%s/%s' % (v['vg'], v['lv']), v['snapshot'], v.get('files', '-'), _lvm.human_size(v.get('bytes') or 0),
            v.get('fill_percent') if v.get('fill_percent') is not None else '-'))
    if rep.get('restic'):
        r = rep['restic']
        out.append('repository: snapshot %s, %s read, %s added (deduplicated, compressed), %s new / %s changed / %s '
                   'unchanged files, %.1f s' % (
                       r.get('snapshot_id') or '-', _lvm.human_size(r.get('bytes_processed') or 0),
                       _lvm.human_size(r.get('bytes_added') or 0), r.get('files_new'), r.get('files_changed'),
                       r.get('files_unmodified'), r.get('seconds') or 0))
    out.append('checks:')
    for c in rep.get('checks') or []:
        out.append('  %s: %s %s' % (c['check'], 'ok' if c['ok'] else 'FAILED', c.get('detail') or ''))
    if rep.get('retention'):
        r = rep['retention']
        out.append('retention: kept %s verified backup(s), forgot %s%s' % (
            r.get('verified_kept'), ', '.join(r.get('forgotten') or []) or 'none',
            (' (floor min_keep=%s protected %s)' % (r.get('min_keep'), ', '.join(r['protected'])))
            if r.get('protected') else ''))
    for w in rep.get('warnings') or []:
        out.append('warning: %s' % w)
    c = rep.get('cleanup') or {}
    out.append('cleanup: snapshots removed %s; left %s; frozen instances %s; repository snapshot of this run %s' % (
        ', '.join(c.get('snapshots_removed') or []) or 'none', ', '.join(c.get('snapshots_left') or []) or 'none',
        ', '.join(c.get('still_frozen') or []) or 'none', c.get('restic_snapshot') or 'none'))
    return '\n'.join(out) + '\n'


# ---------------------------------------------------------------------------------------------------------------
# The repository
# ---------------------------------------------------------------------------------------------------------------

class Repository(object):
    """restic on one repository, through the collection's runner (``run_child`` lets a run kill a long backup)."""

    def __init__(self, cfg, password_path=None, runner=None):
        """``password_path``: a file holding the password (the module's temporary one); default
        password_source(cfg)."""
        self.cfg = cfg
        self.url = cfg['repository']
        scheme, details = _restic.parse_repository(self.url)
        sftp = None
        if scheme == 'sftp':
            sftp = _restic.sftp_command(details, ssh_key=cfg.get('repository_ssh_key'),
                                        known_hosts=cfg.get('repository_known_hosts'),
                                        port=cfg.get('repository_ssh_port'))
        binary = _restic.find_binary(cfg['restic_binary'])
        self.binary = binary
        self.base = _restic.base_argv(self.url, binary or cfg['restic_binary'], sftp)
        pw_file, pw_command = (password_path, None) if password_path else password_source(cfg)
        self.password_file, self.password_command = pw_file, pw_command
        self.env = _run.command_env('restic', _restic.env(pw_file, cfg.get('restic_cache_dir'),
                                                          password_command=pw_command))
        self.runner = runner
        self.commands = []
        self.current = None

    def run(self, argv, timeout=3600, data=None):
        started = _now()
        if self.runner is not None:
            rc, out, err = self.runner(argv, data, timeout)
        else:
            rc, out, err = _run.run(argv, data=data, timeout=timeout, env=self.env)
        self.commands.append({'cmd': list(argv), 'rc': rc, 'seconds': round(_now() - started, 3)})
        return rc, out, err

    def fail(self, what, argv, rc, err):
        return BackupError('%s failed: `%s` exited %s: %s. Next: %s' % (
            what, ' '.join(argv), rc, (err or '').strip()[-600:], _restic.diagnose(rc, err)))

    def exists(self):
        argv = _restic.cat_config_argv(self.base)
        rc, out, err = self.run(argv, timeout=120)
        return rc == 0, (rc, err)

    def opened_listing(self, host):
        """``(ok, (rc, err), snapshots)``: this host's snapshots, the listing doubling as the check that the
        repository opens (a run needs the listing anyway; each restic call costs a start-up, the key derivation and
        a round trip: ~2-3 s on the TCG rig)."""
        argv = _restic.snapshots_argv(self.base, host=host, tags=(_restic.TAG,))
        rc, out, err = self.run(argv, timeout=600)
        if rc != 0:
            return False, (rc, err), None
        snaps = _restic.parse_snapshots(out)
        if snaps is None:
            return False, (rc, 'restic snapshots printed no JSON list: %s' % out[:300]), None
        return True, (rc, err), snaps

    def init(self):
        argv = _restic.init_argv(self.base, compression=True)
        rc, out, err = self.run(argv, timeout=300)
        if rc != 0:
            raise self.fail('initialising the repository %s' % self.url, argv, rc, err)
        return out

    def backup(self, paths, host, tags, on_status, interrupted):
        """restic backup with progress: ``on_status(status)`` for every status line; a ``interrupted()`` text kills
        restic (its snapshot is then never written).  Returns ``(rc, summary, errors, err)``."""
        argv = _restic.backup_argv(self.base, paths, host, tags, compression=self.cfg['compression'])
        started = _now()
        proc = _run.start(argv, env=self.env)
        self.current = proc
        summary, errors, lines_err = None, [], []
        try:
            import threading

            def read_err():
                lines_err.append(proc.stderr.read().decode('utf-8', 'replace'))
            t = threading.Thread(target=read_err)
            t.daemon = True
            t.start()
            for raw in iter(proc.stdout.readline, b''):
                for obj in _restic.parse_json_lines(raw.decode('utf-8', 'replace')):
                    kind = obj.get('message_type')
                    if kind == 'status':
                        on_status(obj)
                    elif kind == 'summary':
                        summary = obj
                    elif kind == 'error':
                        errors.append(obj)
                why = interrupted()
                if why:
                    _run.kill_group(proc)
                    break
            proc.wait()
            t.join(5)
        finally:
            self.current = None
        rc = proc.returncode
        self.commands.append({'cmd': list(argv), 'rc': rc, 'seconds': round(_now() - started, 3)})
        return rc, summary, errors, ''.join(lines_err)

    def snapshots(self, host=None, tags=(_restic.TAG,)):
        argv = _restic.snapshots_argv(self.base, host=host, tags=tags)
        rc, out, err = self.run(argv, timeout=600)
        if rc != 0:
            raise self.fail('listing the snapshots', argv, rc, err)
        snaps = _restic.parse_snapshots(out)
        if snaps is None:
            raise BackupError('restic snapshots printed no JSON list: %s' % out[:300])
        return snaps

    def check(self, subset=None):
        argv = _restic.check_argv(self.base, subset)
        rc, out, err = self.run(argv, timeout=6 * 3600)
        return rc, out, err, argv

    def ls(self, snapshot_id):
        argv = _restic.ls_argv(self.base, snapshot_id)
        rc, out, err = self.run(argv, timeout=3600)
        if rc != 0:
            raise self.fail('listing snapshot %s' % snapshot_id, argv, rc, err)
        return _restic.parse_ls(out)

    def tag_verified(self, snapshot_id):
        argv = _restic.tag_add_argv(self.base, snapshot_id, [_restic.VERIFIED_TAG])
        rc, out, err = self.run(argv, timeout=600)
        if rc != 0:
            raise self.fail('tagging snapshot %s as verified' % snapshot_id, argv, rc, err)

    def forget(self, ids):
        if not ids:
            return
        argv = _restic.forget_ids_argv(self.base, ids)
        rc, out, err = self.run(argv, timeout=1800)
        if rc != 0:
            raise self.fail('forgetting %s' % ', '.join(ids), argv, rc, err)

    def policy_would_remove(self, policy, host):
        argv = _restic.forget_policy_argv(self.base, policy, host=host, dry_run=True)
        rc, out, err = self.run(argv, timeout=600)
        if rc != 0:
            raise self.fail('computing the retention', argv, rc, err)
        parsed = _restic.parse_forget(out)
        if parsed is None:
            raise BackupError('restic forget --dry-run printed no JSON: %s' % out[:300])
        return parsed

    def prune(self):
        argv = _restic.prune_argv(self.base)
        rc, out, err = self.run(argv, timeout=6 * 3600)
        if rc != 0:
            raise self.fail('pruning the repository', argv, rc, err)

    def restore(self, snapshot_id, target, includes=()):
        argv = _restic.restore_argv(self.base, snapshot_id, target, includes)
        rc, out, err = self.run(argv, timeout=6 * 3600)
        if rc != 0:
            raise self.fail('restoring snapshot %s' % snapshot_id, argv, rc, err)

    def dump(self, snapshot_id, path):
        argv = self.base + ['dump', snapshot_id, path]
        rc, out, err = self.run(argv, timeout=600)
        if rc != 0:
            return None
        return out


# ---------------------------------------------------------------------------------------------------------------
# One backup run
# ---------------------------------------------------------------------------------------------------------------

class RunLock(object):
    """The host's backup-run lock (flock on <state>/backup.lock, dropped by the kernel when the run dies) with a
    record of who holds it; the freeze engine's own lock covers only the freeze window."""

    def __init__(self, base):
        self.path = os.path.join(base, 'backup.lock')
        self.record_path = os.path.join(base, 'backup.owner.json')
        self.fd = None

    def acquire(self, run_id):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, 'O_NOFOLLOW', 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (IOError, OSError) as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            holder = _freeze.read_json(self.record_path) or {}
            raise BackupError('another backup run holds %s (run %s, pid %s, since %s); nothing frozen. Next: wait '
                              'for it (irisops-backup status) - a run that died released the lock by itself'
                              % (self.path, holder.get('run_id', '?'), holder.get('pid', '?'),
                                 holder.get('since', '?')))
        self.fd = fd
        _freeze.write_atomic(self.record_path, json.dumps({'run_id': run_id, 'pid': os.getpid(), 'since': iso()}),
                             0o600)

    def release(self):
        if self.fd is not None:
            try:
                os.unlink(self.record_path)
            except OSError:
                pass
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class RunGuard(object):
    """SIGTERM/SIGINT/SIGHUP for the whole run outside the freeze window (which has its own guard): recorded, and a
    running restic is killed, so that the run stops at once and cleans up."""

    def __init__(self, repo):
        self.repo = repo
        self.received = []
        self.old = {}

    def _handler(self, signum, frame):
        self.received.append(signum)
        proc = self.repo.current if self.repo is not None else None
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except OSError:
                pass

    def __enter__(self):
        import threading
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                self.old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        return False

    def interrupted(self):
        if self.received:
            return 'interrupted by %s' % ', '.join(_freeze.signal_name(s) for s in self.received)
        return None


class BackupRun(object):
    """One ``irisops-backup run``."""

    def __init__(self, cfg, run_id=None, password_path=None, runner=None, emit=None, base=None, lvm=None):
        self.cfg = cfg
        self.host = host_name(cfg)
        self.run_id = run_id or _freeze.default_run_id('backup')
        self.base = base
        self.emit = emit or (lambda line: None)
        self.password_path = password_path
        self.runner = runner
        self.lvm = lvm or _lvm.Lvm(timeout=cfg['lvm_timeout'])
        self.started = _now()
        self.report = {
            'run_id': self.run_id, 'host': self.host, 'status': 'running', 'started': iso(self.started),
            'repository': cfg['repository'], 'freeze_mode': cfg['freeze_mode'], 'instances': {}, 'volumes': [],
            'checks': [], 'warnings': [], 'cleanup': {}, 'steps': [], 'version': VERSION, 'failed_step': None,
        }
        self.step = 'preflight'
        self.restic_snapshot = None
        self.verified = False
        self.host_listing = None   # this host's snapshots, listed right after the tag (verify), for the retention
        self.mounted = []
        self.snapset = None
        self.engine = None
        self.repo = None
        self.progress = None

    # -- helpers ----------------------------------------------------------------------------------------------
    def say(self, text):
        self.progress.step(self.step, text)

    def check(self, name, ok, detail=''):
        self.report['checks'].append({'check': name, 'ok': bool(ok), 'detail': detail})
        if not ok:
            raise BackupError('%s: %s' % (name, detail))

    def engine_options(self):
        c = self.cfg
        opts = dict(run_as=c['run_as'] or None, username=c['username'] or None, password=iris_password(c) or None,
                    timeout=c['session_timeout'], external_freeze_timeout=c['external_freeze_timeout'],
                    max_freeze_seconds=c['max_freeze_seconds'], wd_suspend_limit=c['wd_suspend_limit'],
                    deadman_timeout=c['deadman_timeout'], stat_fallback=c['stat_fallback'],
                    text='irisops-backup run %s' % self.run_id)
        return opts

    # -- the run ----------------------------------------------------------------------------------------------
    def run(self):
        self.base = self.base or _freeze.state_dir()
        lock = RunLock(self.base)
        self.progress = Progress(os.path.join(self.base, 'backup.progress.json'), self.emit,
                                 self.cfg['progress_every'])
        try:
            lock.acquire(self.run_id)
        except BackupError as exc:
            return self.finish(str(exc))
        try:
            self.repo = Repository(self.cfg, self.password_path, runner=self.runner)
            with RunGuard(self.repo) as guard:
                self.guard = guard
                try:
                    self.preflight()
                    self.freeze_and_snapshot()
                    self.copy()
                    self.remove_snapshots()
                    self.verify()
                    self.record_history()
                    self.retention()
                    self.report['status'] = 'success'
                except BackupError as exc:
                    self.abort(str(exc))
                except Exception as exc:  # pylint: disable=broad-except  # clean up whatever a bug interrupted
                    self.abort('unexpected %s: %s' % (type(exc).__name__, exc))
        finally:
            lock.release()
        return self.finish()

    def interrupted(self):
        return self.guard.interrupted()

    def preflight(self):
        self.step = 'preflight'
        cfg = self.cfg
        pw = self.repo.password_file
        if self.repo.binary is None:
            raise BackupError('nothing frozen: the restic command %r was not found on PATH. Next: install the restic '
                              'package (the irisops.backup.lvm_backup role does) or set restic_binary'
                              % cfg['restic_binary'])
        if not self.repo.password_command and (not pw or not os.path.isfile(pw)):
            raise BackupError('nothing frozen: the repository password file %s does not exist (no systemd credential '
                              '%s either). Next: install it with the role (lvm_backup_repository_password)'
                              % (pw, PASSWORD_CREDENTIAL))
        ok, (rc, err), listing = self.repo.opened_listing(self.host)
        if not ok:
            raise BackupError('nothing frozen: the repository %s cannot be opened: %s. Next: %s' % (
                cfg['repository'], (err or '').strip()[-400:], _restic.diagnose(rc, err)))
        self.say('repository %s opened' % cfg['repository'])
        sel = _iris.prepare_selection(cfg['instances'], run_as=cfg['run_as'] or None)
        if sel['errors']:
            raise BackupError('nothing frozen: ' + '; '.join(sel['errors']))
        probe = _freeze.FreezeEngine([], 'irisops-backup', self.engine_options(), run_id=self.run_id)
        opts = dict(self.engine_options(), size=cfg['snapshot_size'], suffix=cfg['snapshot_suffix'],
                    lvm_timeout=cfg['lvm_timeout'])
        errors, warnings = _snapset.validate_options(opts, probe.eft(), probe.budget(), probe.deadman_seconds)
        self.report['warnings'] += warnings
        if errors:
            raise BackupError('nothing frozen: ' + '; '.join(errors))
        problems = []
        entries = self.report['instances']
        selected = _snapset.apply_mirror_policy(sel['selected'], cfg['mirror_primary'], probe.budget(), probe.eft(),
                                                entries, problems, self.report['warnings'])
        if not selected and not problems:
            raise BackupError('nothing to back up: every selected instance was skipped (%s)' % ', '.join(entries))
        options = dict(volumes=cfg['volumes'], size=cfg['snapshot_size'], suffix=cfg['snapshot_suffix'],
                       existing=cfg['existing'], unmapped_directories=cfg['unmapped_directories'],
                       include_install_dir=cfg['include_install_dir'], freeze_mode=cfg['freeze_mode'])
        self.snapset = _snapset.SnapshotSet(self.lvm, selected, options, self.run_id, entries)
        try:
            self.snapset.preflight()
        except _lvm.LvmError as exc:
            raise BackupError('nothing frozen: cannot read the LVM state: %s' % exc.msg)
        problems += self.snapset.problems
        self.report['warnings'] += self.snapset.warnings
        self.report['lvm_autoextend'] = self.snapset.autoextend
        if problems:
            raise BackupError('nothing frozen: preflight failed: ' + ' | '.join(problems))
        try:
            self.report['warnings'] += self.snapset.remove_leftovers()
        except _lvm.LvmError as exc:
            raise BackupError('nothing frozen: cannot remove a leftover snapshot: %s' % exc.msg)
        self.forget_incomplete(listing)
        self.instances = selected
        self.say('preflight passed: %s on %s' % (', '.join(i['name'] for i in selected), ', '.join(
            p.request.origin for p in self.snapset.plans)))

    def forget_incomplete(self, snaps):
        """Forget the repository snapshots of this host (``snaps``, listed by the preflight) that an earlier run left
        unverified (it was killed between the restic backup and the tag): they must never be taken for a backup.
        The run lock is held from before that listing, so no run of this host can have added one since."""
        stale = [s['id'] for s in snaps if not _restic.snapshot_tags(s).get(_restic.VERIFIED_TAG)]
        if stale:
            self.repo.forget(stale)
            self.report['warnings'].append('forgot %d unverified repository snapshot(s) of an earlier run that did not '
                                           'finish: %s' % (len(stale), ', '.join(s[:8] for s in stale)))

    def freeze_and_snapshot(self):
        self.step = 'freeze'
        self.engine = _freeze.FreezeEngine(self.instances, 'irisops-backup', self.engine_options(), run_id=self.run_id,
                                           switch_cleanup=self.snapset.switch_cleanup())
        steps = self.snapset.steps()
        self.report['steps'] = _freeze.describe_steps(steps)
        self.say('freezing %s (%s)' % (', '.join(i['name'] for i in self.instances), self.cfg['freeze_mode']))
        res = self.engine.window(steps, snapshot=self.snapset.create, cleanup=self.snapset.cleanup)
        for key in ('freeze_window_ms', 'snapshot_ms', 'trace', 'valid', 'invalid'):
            self.report[key] = res.get(key)
        for inst in self.instances:
            got = self.engine.results.get(inst['name']) or {}
            entry = self.report['instances'][inst['name']]
            fr = got.get('freeze') or {}
            entry.update(action='frozen' if fr.get('changed') or fr.get('rolled_back') else 'failed',
                         frozen_ms=res['frozen_ms'].get(inst['name']), journal_file=fr.get('journal_file'),
                         marker_offset=fr.get('marker_offset'), marker_file=fr.get('marker_file'),
                         not_journalled=fr.get('not_journalled') or [], version=inst.get('version'),
                         flavour=inst.get('flavour'), install_dir=inst.get('install_dir'),
                         data_dir=inst.get('data_dir'), databases=inst.get('databases') or {},
                         journal_dirs=inst.get('journal_dirs') or [], wij_dir=inst.get('wij_dir'),
                         thawed_by=(got.get('thaw') or {}).get('thawed_by'))
            for d in entry['not_journalled']:
                self.report['warnings'].append('instance %s: database %s is not journalled (reported by '
                                               'ExternalFreeze)' % (inst['name'], d))
        if res['failed']:
            self.report['cleanup'].update(still_frozen=res.get('still_frozen') or [],
                                          snapshots_removed=(res.get('cleaned_up') or {}).get('removed') or [])
            raise BackupError(res['msg'])
        self.say('froze for at most %s ms, %d snapshot(s) in %s ms, thawed' % (
            res['freeze_window_ms'], len(res['created']), res['snapshot_ms']))

    def copy(self):
        self.step = 'mount'
        root = self.cfg['mount_root']
        if not os.path.isdir(root):
            os.makedirs(root, 0o700)
        lvs = dict(((lv.vg, lv.name), lv) for lv in self.lvm.lvs())
        volumes = []
        for plan in self.snapset.plans:
            req = plan.request
            lv = lvs.get((req.vg, req.name))
            if lv is None:
                raise BackupError('snapshot %s is gone after the window' % req.full_name)
            mnt = os.path.join(root, req.vg, req.lv)
            fstype = self.lvm.detect_fstype(lv.path) or None
            try:
                self.lvm.mount(lv.path, mnt, fstype)
            except _lvm.LvmError as exc:
                raise BackupError('mounting snapshot %s read-only at %s failed: %s. Next: look at the file system of '
                                  '%s (dmesg); the snapshots are removed' % (req.full_name, mnt, exc.msg, req.origin))
            self.mounted.append(mnt)
            ent = self.snapset.origins[(req.vg, req.lv)]
            files, size = _walk_size(mnt)
            volumes.append({'vg': req.vg, 'lv': req.lv, 'snapshot': req.name, 'mountpoint': mnt, 'fstype': fstype,
                            'origin_mountpoint': self.origin_mountpoint(ent['directories']),
                            'instances': ent['instances'], 'directories': ent['directories'], 'files': files,
                            'bytes': size, 'snapshot_size': None if lv.is_thin else lv.size,
                            'thin_pool': '%s/%s' % (lv.vg, lv.pool) if lv.is_thin else None})
        self.report['volumes'] = volumes
        self.write_manifest(root)
        self.step = 'copy'
        self.progress.state['copy_started'] = _now()
        total = sum(v['bytes'] for v in volumes)
        self.say('copying %d volume(s), %s, into %s' % (len(volumes), _lvm.human_size(total), self.cfg['repository']))
        tags = _restic.run_tags(self.run_id, [i['name'] for i in self.instances])
        rc, summary, errors, err = self.repo.backup([root], self.host, tags, self.progress.copy, self.interrupted)
        if summary and summary.get('snapshot_id'):
            self.restic_snapshot = summary['snapshot_id']
        why = self.interrupted()
        if why:
            raise BackupError('%s during the copy' % why)
        if rc == _restic.RC_INCOMPLETE:
            raise BackupError('restic could not read %d file(s) of the snapshots (%s): the copy is incomplete and is '
                              'forgotten. Next: check the snapshot fill (a full snapshot returns I/O errors) and the '
                              'file systems' % (len(errors), '; '.join(
                                  '%s: %s' % (e.get('item'), (e.get('error') or {}).get('message'))
                                  for e in errors[:5])))
        if rc != 0 or not summary:
            raise BackupError('copy into the repository failed: restic backup exited %s: %s. Next: %s' % (
                rc, err.strip()[-600:], _restic.diagnose(rc, err)))
        self.report['restic'] = {
            'snapshot_id': summary.get('snapshot_id'), 'bytes_added': summary.get('data_added'),
            'bytes_processed': summary.get('total_bytes_processed'), 'files_new': summary.get('files_new'),
            'files_changed': summary.get('files_changed'), 'files_unmodified': summary.get('files_unmodified'),
            'seconds': summary.get('total_duration'),
        }
        self.report['bytes_added'] = summary.get('data_added')
        self.report['bytes_processed'] = summary.get('total_bytes_processed')
        self.say('copied into snapshot %s: %s read, %s added' % (
            summary.get('snapshot_id', '')[:8], _lvm.human_size(summary.get('total_bytes_processed') or 0),
            _lvm.human_size(summary.get('data_added') or 0)))
        # the COW stores must still be valid now: data read from an overflowed snapshot is garbage
        lvs = dict(((lv.vg, lv.name), lv) for lv in self.lvm.lvs())
        bad = []
        for v in volumes:
            lv = lvs.get((v['vg'], v['snapshot']))
            v['fill_percent'] = lv.data_percent if lv is not None else None
            if lv is not None and lv.is_thin:
                # a thin snapshot cannot overflow on its own: what fills is its pool (reported, not a torn copy)
                pool = lvs.get((lv.vg, lv.pool))
                v['fill_percent'] = pool.data_percent if pool is not None else None
                v['thin_pool'] = '%s/%s' % (lv.vg, lv.pool)
            if lv is None or lv.valid is False:
                bad.append('%s/%s' % (v['vg'], v['snapshot']))
        fills = ['%s/%s %s%%%s' % (v['vg'], v['snapshot'], v['fill_percent'],
                                   ' (thin pool %s)' % v['thin_pool'] if v.get('thin_pool') else '') for v in volumes]
        self.check('snapshots valid at the end of the copy', not bad,
                   ('overflowed or gone: %s - the copy read torn data; give the snapshots more space '
                    '(snapshot_size) or copy faster' % ', '.join(bad)) if bad else 'fill %s' % ', '.join(fills))

    def origin_mountpoint(self, directories):
        """Where the origin LV is mounted on this host (a restore puts the files back under it)."""
        for d in directories:
            try:
                return self.lvm.findmnt(d)[1] or None
            except _lvm.LvmError:
                continue
        return None

    def write_manifest(self, root):
        """The manifest travels inside the backup (<mount_root>/.irisops/manifest.json): what a restore and a
        drill need (instances, journal file and marker to restore from, which LV held which directory)."""
        d = os.path.join(root, MANIFEST_DIR)
        if not os.path.isdir(d):
            os.makedirs(d, 0o700)
        manifest = {
            'format': MANIFEST_FORMAT, 'run_id': self.run_id, 'host': self.host, 'created': iso(),
            'freeze': {'mode': self.cfg['freeze_mode'], 'window_ms': self.report.get('freeze_window_ms'),
                       'steps': self.report.get('steps')},
            'instances': self.report['instances'], 'volumes': self.report['volumes'],
            'mount_root': root, 'engine_version': VERSION,
        }
        _freeze.write_atomic(os.path.join(d, MANIFEST_NAME), json.dumps(manifest, indent=1, sort_keys=True), 0o600)
        self.manifest = manifest

    def remove_snapshots(self):
        self.step = 'cleanup'
        self.unmount_all()
        removed, errors = self.snapset.cleanup()
        self.report['cleanup']['snapshots_removed'] = removed
        if errors:
            self.report['cleanup']['snapshots_left'] = errors
            raise BackupError('could not remove the snapshots: %s' % '; '.join(errors))
        self.say('snapshots removed: %s' % ', '.join(removed))

    def unmount_all(self):
        for mnt in reversed(self.mounted):
            try:
                self.lvm.umount(mnt)
            except _lvm.LvmError as exc:
                self.report['warnings'].append(exc.msg)
            _lvm.Lvm.remove_mountpoint(mnt, self.cfg['mount_root'])
        self.mounted = []

    def verify(self):
        self.step = 'verify'
        # restic 0.14 reports the short id in the backup summary: find the snapshot by it and the run's tag
        snaps = [s for s in self.repo.snapshots(host=self.host, tags=('run=%s' % self.run_id,))
                 if (s.get('id') or '').startswith(self.restic_snapshot or '-')]
        self.check('repository holds the snapshot of this run', len(snaps) == 1,
                   'snapshot %s of run %s' % (self.restic_snapshot, self.run_id))
        snap_id = self.restic_snapshot = snaps[0]['id']
        rc, out, err, argv = self.repo.check(self.cfg['verify_read_data_subset'] or None)
        subset = self.cfg['verify_read_data_subset']
        self.check('restic check%s' % ((' --read-data-subset=%s' % subset) if subset else ''), rc == 0,
                   'no errors' if rc == 0 else '%s (exit %s). Next: %s'
                   % (err.strip()[-400:], rc, _restic.diagnose(rc, err)))
        _snap, nodes = self.repo.ls(snap_id)
        by_vol = dict(((v['vg'], v['lv']), [0, 0]) for v in self.report['volumes'])
        root = self.cfg['mount_root'].rstrip('/')
        for node in nodes:
            if node.get('type') != 'file':
                continue
            rel = (node.get('path') or '')[len(root) + 1:].split('/')
            if len(rel) >= 3 and (rel[0], rel[1]) in by_vol:
                by_vol[(rel[0], rel[1])][0] += 1
                by_vol[(rel[0], rel[1])][1] += node.get('size') or 0
        mismatch = ['%s/%s: %d files %d bytes read, %d files %d bytes in the repository' % (
            v['vg'], v['lv'], v['files'], v['bytes'], by_vol[(v['vg'], v['lv'])][0], by_vol[(v['vg'], v['lv'])][1])
            for v in self.report['volumes'] if (v['files'], v['bytes']) != tuple(by_vol[(v['vg'], v['lv'])])]
        self.check('every file read is in the repository with its size', not mismatch,
                   '; '.join(mismatch) or '%d files in %d volume(s)'
                   % (sum(v['files'] for v in self.report['volumes']), len(self.report['volumes'])))
        if self.cfg['verify_restore_command']:
            self.verify_by_restore(snap_id)
        self.repo.tag_verified(snap_id)
        # the tag rewrote the snapshot: its id changed. The listing is this host's whole listing, which the retention
        # step uses too (the run lock keeps every other run of this host out until then): one restic call fewer
        self.host_listing = self.repo.snapshots(host=self.host)
        tagged = [s for s in self.host_listing if _restic.snapshot_tags(s).get(_restic.VERIFIED_TAG)
                  and self.run_id in (_restic.snapshot_tags(s).get('run') or [])]
        self.check('repository marks the snapshot verified', bool(tagged), 'run %s' % self.run_id)
        self.restic_snapshot = tagged[0]['id']
        self.report['restic']['snapshot_id'] = self.restic_snapshot
        self.verified = True
        self.say('verified in the repository: snapshot %s' % self.restic_snapshot[:8])

    def verify_by_restore(self, snap_id):
        """Restore the snapshot into a temporary directory and run the configured command on it (its exit status 0
        = good), for example a database consistency checker."""
        tmp = tempfile.mkdtemp(prefix='irisops-verify-')
        try:
            self.repo.restore(snap_id, tmp)
            argv = list(self.cfg['verify_restore_command']) if isinstance(self.cfg['verify_restore_command'], list) \
                else self.cfg['verify_restore_command'].split()
            argv.append(os.path.join(tmp, self.cfg['mount_root'].lstrip('/')))
            rc, out, err = _run.run(argv, timeout=3600)
            self.check('restored copy passes `%s`' % ' '.join(argv[:-1]), rc == 0, (out + err).strip()[-400:])
        finally:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)

    def record_history(self):
        self.step = 'history'
        if not self.cfg['set_history']:
            return
        valid, why = _freeze.run_validity(self.run_id)
        if valid is not True:
            raise BackupError('ExternalSetHistory not called: %s' % why)
        opts = self.engine_options()
        for inst in self.instances:
            h = _iris.set_history(None, inst, run_as=opts['run_as'], username=opts['username'],
                                  password=opts['password'], timeout=opts['timeout'],
                                  text='irisops-backup %s restic %s' % (self.run_id, self.restic_snapshot[:8]))
            entry = self.report['instances'][inst['name']]
            entry['history_recorded'] = not h['failed']
            if h['failed']:
                self.report['warnings'].append('backup NOT recorded for %s: %s' % (inst['name'], h['msg']))
        self.say('recorded in the backup history of %s' % ', '.join(
            n for n, e in self.report['instances'].items() if e.get('history_recorded')))

    def retention(self):
        self.step = 'retention'
        self.report['retention'] = apply_retention(self.repo, self.cfg, self.host, listing=self.host_listing)
        self.report['verified_kept'] = self.report['retention']['verified_kept']
        self.say('retention: %d verified backup(s) kept, %d forgotten' % (
            self.report['retention']['verified_kept'], len(self.report['retention']['forgotten'])))

    # -- failure and the end ----------------------------------------------------------------------------------
    def abort(self, error):
        """Undo what this run left: mounts, LVM snapshots, an unverified repository snapshot (the freeze engine
        already thawed and removed the window's snapshots)."""
        self.report['status'] = 'failed'
        self.report['failed_step'] = self.step
        self.report['error'] = error
        try:
            self.unmount_all()
        except Exception as exc:  # pylint: disable=broad-except
            self.report['warnings'].append('unmount: %s' % exc)
        if self.snapset is not None and self.engine is not None:   # snapshots exist only once the window ran
            removed, errors = self.snapset.cleanup()
            c = self.report['cleanup']
            c['snapshots_removed'] = sorted(set(c.get('snapshots_removed') or []) | set(removed))
            if errors:
                c['snapshots_left'] = errors
        if self.restic_snapshot and not self.verified and self.repo is not None:
            try:
                self.repo.forget([self.restic_snapshot])
                self.report['cleanup']['restic_snapshot'] = 'forgotten (%s)' % self.restic_snapshot[:8]
            except BackupError as exc:
                self.report['cleanup']['restic_snapshot'] = 'NOT forgotten: %s' % exc
        if self.engine is not None:
            self.engine.record('failed', valid=False, msg=error)

    def finish(self, error=None):
        if error:
            self.report.update(status='failed', error=error, failed_step=self.step)
        rep = self.report
        rep['finished_epoch'] = _now()
        rep['finished'] = iso(rep['finished_epoch'])
        rep['duration_s'] = round(rep['finished_epoch'] - self.started, 3)
        rep['commands'] = (self.repo.commands if self.repo else []) + self.lvm.commands
        rep['last_success'] = {}
        if rep['status'] == 'success':
            rep['last_success'] = dict((n, int(self.started)) for n, e in rep['instances'].items()
                                       if e.get('action') == 'frozen')
        self.save(rep)
        if self.progress is not None:
            self.progress.step('done', '%s%s' % (rep['status'], (': ' + rep['error']) if rep.get('error') else ''))
        return rep

    def save(self, rep):
        try:
            d = self.cfg['report_dir']
            if not os.path.isdir(d):
                os.makedirs(d, 0o750)
            stem = os.path.join(d, 'backup-%s' % self.run_id)
            _freeze.write_atomic(stem + '.json', json.dumps(rep, indent=1, sort_keys=True, default=str), 0o640)
            _freeze.write_atomic(stem + '.txt', report_text(rep), 0o640)
            _freeze.write_atomic(os.path.join(d, 'last.json'), json.dumps(rep, indent=1, sort_keys=True,
                                                                          default=str), 0o640)
            rep['report_files'] = [stem + '.json', stem + '.txt']
        except (IOError, OSError) as exc:
            rep['warnings'].append('report not saved: %s' % exc)
        if self.cfg.get('metrics_file'):
            try:
                previous = _freeze.read_json(os.path.join(self.cfg['report_dir'], 'last-success.json')) or {}
                merged = dict(previous)
                merged.update(rep['last_success'])
                if rep['last_success']:
                    _freeze.write_atomic(os.path.join(self.cfg['report_dir'], 'last-success.json'),
                                         json.dumps(merged), 0o640)
                write_metrics(self.cfg['metrics_file'], metrics_text(dict(rep, last_success=merged)))
            except (IOError, OSError) as exc:
                rep['warnings'].append('metrics not written to %s: %s' % (self.cfg['metrics_file'], exc))


def _walk_size(root):
    """Regular files and their bytes under ``root`` (what the repository must hold afterwards)."""
    files = size = 0
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            if os.path.isfile(p) and not os.path.islink(p):
                files += 1
                size += os.path.getsize(p)
    return files, size


def apply_retention(repo, cfg, host, listing=None):
    """restic's keep policy with a floor: never fewer than ``min_keep`` verified backups, never the newest verified
    one.  The policy is asked with --dry-run; what it would remove, minus the protected snapshots, is forgotten by
    id, then the repository is pruned.  A prune that fails removes nothing more than the forget did.  ``listing``:
    this host's snapshots as a run listed them right after its tag (else they are listed here)."""
    snaps = repo.snapshots(host=host) if listing is None else listing
    verified = sorted([s for s in snaps if _restic.snapshot_tags(s).get(_restic.VERIFIED_TAG)],
                      key=lambda s: s.get('time') or '', reverse=True)
    remove = set(i for i in repo.policy_would_remove(cfg['retention'], host)['remove'] if i)
    protected = []
    kept = [s for s in verified if s['id'] not in remove]
    for s in verified:
        newest = s is verified[0]
        if not newest and len(kept) >= cfg['min_keep']:
            break
        if s['id'] in remove:
            remove.discard(s['id'])
            kept.append(s)
            protected.append(s['id'][:8])
    forget = sorted(remove)
    repo.forget(forget)
    if forget and cfg['prune']:
        repo.prune()
    return {'verified_kept': len(kept), 'forgotten': [i[:8] for i in forget], 'protected': protected,
            'min_keep': cfg['min_keep'], 'policy': cfg['retention']}


# ---------------------------------------------------------------------------------------------------------------
# The catalogue (list) and the other subcommands
# ---------------------------------------------------------------------------------------------------------------

def catalogue(repo, host=None, with_manifest=True, mount_root=None):
    """Backups in the repository, newest first: ``{id, time, host, run_id, instances, verified, complete,
    manifest}``.  ``complete`` means verified: only a snapshot tagged verified is a backup."""
    out = []
    for s in sorted(repo.snapshots(host=host), key=lambda s: s.get('time') or '', reverse=True):
        tags = _restic.snapshot_tags(s)
        entry = {'id': s.get('id'), 'short_id': s.get('short_id') or (s.get('id') or '')[:8], 'time': s.get('time'),
                 'host': s.get('hostname'), 'run_id': (tags.get('run') or [None])[0],
                 'instances': tags.get('instance') or [], 'verified': bool(tags.get(_restic.VERIFIED_TAG)),
                 'paths': s.get('paths') or []}
        entry['complete'] = entry['verified']
        if with_manifest and entry['paths']:
            text = repo.dump(s['id'], os.path.join(entry['paths'][0], MANIFEST_DIR, MANIFEST_NAME))
            try:
                entry['manifest'] = json.loads(text) if text else None
            except ValueError:
                entry['manifest'] = None
        out.append(entry)
    return out


def print_list(entries, out=sys.stdout):
    if not entries:
        out.write('no backups in the repository\n')
        return
    row = '%-10s %-26s %-12s %-10s %-34s %s\n'
    out.write(row % ('id', 'time', 'host', 'state', 'run', 'instances (journal file to restore from)'))
    for e in entries:
        inst = []
        for name in e['instances']:
            jf = ((((e.get('manifest') or {}).get('instances') or {}).get(name) or {}).get('journal_file')) or '-'
            inst.append('%s (%s)' % (name, jf))
        out.write(row % (e['short_id'], (e['time'] or '')[:26], e['host'] or '-',
                         'verified' if e['verified'] else 'INCOMPLETE', e['run_id'] or '-', ', '.join(inst)))


def status(cfg, base=None):
    base = base or _freeze.state_dir(create=False)
    out = {'progress': _freeze.read_json(os.path.join(base, 'backup.progress.json')),
           'holder': _freeze.read_json(os.path.join(base, 'backup.owner.json')),
           'last': _freeze.read_json(os.path.join(cfg['report_dir'], 'last.json'))}
    return out


def wait_status(cfg, run_id=None, wait=0, sleep=time.sleep):
    """status() plus ``finished`` (the run ``run_id`` wrote its report, or no run holds the lock) and ``line`` (one
    line for a progress display), waiting up to ``wait`` seconds for the run to finish."""
    deadline = _now() + max(wait or 0, 0)
    while True:
        st = status(cfg)
        last = st['last'] or {}
        if run_id:
            st['finished'] = last.get('run_id') == run_id and last.get('status') in ('success', 'failed')
        else:
            st['finished'] = not st['holder']
        if st['finished'] or _now() >= deadline:
            break
        sleep(min(1.0, max(deadline - _now(), 0.05)))
    prog = st['progress'] or {}
    if st['finished']:
        st['line'] = 'run %s %s%s' % (last.get('run_id'), last.get('status'),
                                      (': ' + last['error']) if last.get('error') else '')
    else:
        st['line'] = '%s: %s' % (prog.get('phase') or 'starting', prog.get('text') or 'waiting for the run to start')
    return st


def _out(text):
    """A line on stdout (the command's output; modules return results instead)."""
    sys.stdout.write('%s\n' % text)


def _emit_stderr(line):
    sys.stderr.write('%s irisops-backup: %s\n' % (time.strftime('%H:%M:%S'), line))
    sys.stderr.flush()


def build_parser():
    p = argparse.ArgumentParser(prog='irisops-backup', description='Application-consistent backups of the IRIS/Cache '
                                'instances of this host into a restic repository (irisops.backup).')
    p.add_argument('--config', default=DEFAULT_CONFIG, help='configuration file (default %(default)s)')
    sub = p.add_subparsers(dest='command')
    r = sub.add_parser('run', help='take a backup now: freeze, snapshot, thaw, copy, verify, record, retention')
    r.add_argument('--run-id', help='identifier of the run (default: time and pid)')
    r.add_argument('--json', action='store_true', help='print the report as JSON instead of text')
    l_ = sub.add_parser('list', help='the backups in the repository (the catalogue), newest first')
    l_.add_argument('--json', action='store_true')
    l_.add_argument('--all-hosts', action='store_true', help='not only this host\'s backups')
    sub.add_parser('check', help='restic check of the repository (with verify_read_data_subset)')
    sub.add_parser('prune', help='apply the retention policy and its floor now')
    s = sub.add_parser('status', help='the running backup\'s progress and the last report')
    s.add_argument('--json', action='store_true')
    s.add_argument('--run-id', help='the run to wait for: finished once its report is written')
    s.add_argument('--wait', type=int, default=0, help='wait up to this many seconds for the run to finish')
    i = sub.add_parser('init', help='create the repository if it does not exist')
    i.add_argument('--check', action='store_true',
                   help='only check that the repository exists and the password opens it (exit 1 when not)')
    j = sub.add_parser('journals', help='ship the completed journal files of the instances into the repository')
    j.add_argument('--switch', action='store_true', help='switch to a new journal file first (closes the current one)')
    j.add_argument('--json', action='store_true')
    d = sub.add_parser('drill', help='restore a backup and its shipped journals under drill_root, roll forward, check')
    d.add_argument('--instance', required=True, help='the instance of the backup to drill')
    d.add_argument('--source-host', help='whose backups (default: this host)')
    d.add_argument('--backup', help='restic snapshot id or run id (default: the newest verified backup)')
    d.add_argument('--until', help='roll forward only to this time (YYYY-MM-DD HH:MM:SS, the instance\'s local time)')
    d.add_argument('--drill-instance', help='the dedicated instance the journal restore runs in (default: '
                   'drill_instance)')
    d.add_argument('--keep', action='store_true', help='keep the restored files (for a look after the drill)')
    d.add_argument('--json', action='store_true')
    rs = sub.add_parser('restore', help='REAL restore of an instance of this host from a verified backup (the instance '
                        'must be down; its current directories are kept aside)')
    rs.add_argument('--instance', required=True, help='the instance to restore')
    rs.add_argument('--backup', help='restic snapshot id or run id (default: the newest verified backup)')
    rs.add_argument('--until', help='roll forward only to this time (YYYY-MM-DD HH:MM:SS, the instance\'s local time)')
    rs.add_argument('--confirm', help='the instance name again: nothing is restored without it')
    rs.add_argument('--recover-only', action='store_true',
                    help='only roll back (or finish) an interrupted restore of the instance; restore nothing new')
    rs.add_argument('--dry-run', action='store_true', help='check everything and print the plan; change nothing')
    rs.add_argument('--json', action='store_true')
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not args.command:
        build_parser().print_usage(sys.stderr)
        return 2
    try:
        cfg = load_config(args.config)
    except BackupError as exc:
        sys.stderr.write('irisops-backup: %s\n' % exc)
        return 2
    if args.command == 'run':
        if args.run_id:
            err = _freeze.check_run_id(args.run_id)
            if err:
                sys.stderr.write('irisops-backup: nothing frozen: %s\n' % err)
                return 2
        rep = BackupRun(cfg, run_id=args.run_id, emit=_emit_stderr).run()
        sys.stdout.write(json.dumps(rep, indent=1, sort_keys=True, default=str) + '\n' if args.json
                         else report_text(rep))
        return 0 if rep['status'] == 'success' else 1
    try:
        repo = Repository(cfg)
        if args.command == 'init':
            ok, (rc, err) = repo.exists()
            if ok:
                _out('repository %s exists' % cfg['repository'])
            elif args.check:
                # restic 0.14 (Debian 12) says 'wrong password' and 'Is there a repository' with the same exit code:
                # its last line is the reason an operator can act on.
                lines = [ln for ln in (err or '').strip().splitlines() if ln.strip()]
                sys.stderr.write('irisops-backup: repository %s cannot be opened (restic exit %s: %s). Next: check the '
                                 'address, that this host reaches it, and the password; create a new repository with '
                                 '`irisops-backup init` (lvm_backup_init_repository: true)\n'
                                 % (cfg['repository'], rc, lines[-1] if lines else 'no message'))
                return 1
            else:
                repo.init()
                _out('repository %s created (format 2, compressed)' % cfg['repository'])
            return 0
        if args.command == 'list':
            entries = catalogue(repo, host=None if args.all_hosts else host_name(cfg))
            if args.json:
                _out(json.dumps(entries, indent=1, sort_keys=True))
            else:
                print_list(entries)
            return 0
        if args.command == 'journals':
            sel = _iris.prepare_selection(cfg['instances'], run_as=cfg['run_as'] or None)
            if sel['errors']:
                sys.stderr.write('irisops-backup: nothing shipped: %s\n' % '; '.join(sel['errors']))
                return 1
            res = _drill.ship_journals(repo, cfg, host_name(cfg), sel['selected'], switch=args.switch)
            if cfg.get('journal_metrics_file'):
                try:
                    write_metrics(cfg['journal_metrics_file'], _drill.journal_metrics_text(host_name(cfg), res))
                except (IOError, OSError) as exc:
                    sys.stderr.write('irisops-backup: metrics not written: %s\n' % exc)
            if args.json:
                _out(json.dumps(res, indent=1, sort_keys=True))
            else:
                for name, r in sorted(res.items()):
                    _out('%s: %s' % (name, r['error'] or 'shipped %d completed journal file(s), newest %s, lag %s s' % (
                        r['shipped'], r['newest'], r['lag_s'])))
            return 1 if any(r['error'] for r in res.values()) else 0
        if args.command == 'drill':
            drill = _drill.Drill(repo, cfg, args.source_host or host_name(cfg), args.instance.upper(),
                                 backup_id=args.backup, until=args.until, drill_instance=args.drill_instance,
                                 keep=args.keep, emit=_emit_stderr)
            rep = drill.run()
            rep['recorded'] = _drill.record_drill(repo, rep, host_name(cfg)) if rep.get('backup_id') else False
            if cfg.get('drill_metrics_file'):
                try:
                    write_metrics(cfg['drill_metrics_file'], _drill.drill_metrics_text(host_name(cfg), rep))
                except (IOError, OSError) as exc:
                    rep.setdefault('warnings', []).append('metrics not written: %s' % exc)
            _out(json.dumps(rep, indent=1, sort_keys=True, default=str) if args.json else _drill.drill_text(rep))
            return 0 if rep['status'] == 'success' else 1
        if args.command == 'restore':
            res = _restore.Restore(repo, cfg, args.instance, confirm=args.confirm, backup_id=args.backup,
                                   until=args.until, host=host_name(cfg), recover_only=args.recover_only,
                                   backup_lock=RunLock(_freeze.state_dir()), emit=_emit_stderr)
            rep = res.preview() if args.dry_run else res.run()
            _out(json.dumps(rep, indent=1, sort_keys=True, default=str) if args.json else _restore.restore_text(rep))
            return 0 if rep['status'] in ('success', 'planned') else 1
        if args.command == 'check':
            rc, out, err, _argv = repo.check(cfg['verify_read_data_subset'] or None)
            sys.stdout.write(out)
            sys.stderr.write(err)
            return 0 if rc == 0 else 1
        if args.command == 'prune':
            res = apply_retention(repo, cfg, host_name(cfg))
            _out(json.dumps(res, indent=1, sort_keys=True))
            return 0
        if args.command == 'status':
            st = wait_status(cfg, args.run_id, args.wait)
            if args.json:
                _out(json.dumps(st, indent=1, sort_keys=True, default=str))
            else:
                prog = st['progress'] or {}
                holder = st['holder'] or {}
                last = st['last'] or {}
                running = 'no'
                if holder:
                    running = 'run %s (pid %s), %s: %s' % (holder.get('run_id'), holder.get('pid'),
                                                           prog.get('phase'), prog.get('text'))
                _out('running: %s' % running)
                done = 'none'
                if last:
                    done = '%s %s at %s%s' % (last.get('run_id'), last.get('status'), last.get('finished'),
                                              (': ' + last['error']) if last.get('error') else '')
                _out('last run: %s' % done)
            return 0
    except BackupError as exc:
        sys.stderr.write('irisops-backup: %s\n' % exc)
        return 1
    return 2


if __name__ == '__main__':
    raise SystemExit(main())
