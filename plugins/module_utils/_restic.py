# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
#
# Standard library only, no ansible import (irisops-backup runs a verbatim copy next to the other engine files).
"""Everything the collection knows about restic, the backup repository (Debian/EPEL package, 0.14 or later):
command lines (pure builders), the environment that carries the repository and its password (never argv), its JSON
output (``backup --json`` progress and summary, ``snapshots``, ``forget``, ``ls``), and what its errors mean.

Facts used here (restic documentation; restic 0.14 as packaged by Debian 12):
* ``backup --json`` prints ``status`` lines (percent_done, bytes_done, total_bytes, ...) and one ``summary``
  (snapshot_id, data_added, files_new, ...); exit 0 = snapshot saved, 3 = snapshot saved but some files could not
  be read, 1 = fatal (no snapshot).  A snapshot exists only once its metadata is written: a killed backup leaves none.
* repository format 2 (``init --repository-version 2``) compresses (``--compression auto|max|off``).
* the password comes from RESTIC_PASSWORD_FILE; ``sftp:user@host:/path`` uses the system ssh, its options through
  ``-o sftp.command=...``.
* ``forget --dry-run --json`` tells what a keep policy would remove without removing anything; ``tag --add``
  rewrites a snapshot with an extra tag (its id changes).
"""

from __future__ import absolute_import, division, print_function

import json
import os
import re
import shlex
import shutil

__metaclass__ = type

#: Tags of every snapshot the collection writes.  ``run=<id>`` and ``instance=<NAME>`` are added per run.
TAG = 'irisops'
VERIFIED_TAG = 'verified'
#: restic exit status when the snapshot was saved but some source files could not be read (restic 0.14).
RC_INCOMPLETE = 3
#: Seconds between two progress lines restic prints with --json (RESTIC_PROGRESS_FPS is lines per second).
PROGRESS_SECONDS = 5
REPOSITORY_SCHEMES = ('local', 'sftp')
_SFTP_RE = re.compile(r'^sftp:(?:(?P<user>[^@/:]+)@)?(?P<host>[^:/]+):(?P<path>/.*)$')

RETENTION_KEYS = ('keep_last', 'keep_hourly', 'keep_daily', 'keep_weekly', 'keep_monthly', 'keep_yearly')


def find_binary(name='restic'):
    """The restic command: an absolute path as given (if executable), else looked up on PATH and the usual bin
    directories; None when there is none."""
    if os.path.isabs(name):
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    return shutil.which(name, path=os.pathsep.join([os.environ.get('PATH', ''), '/usr/bin', '/usr/local/bin']))


def parse_repository(url):
    """``(scheme, details)`` of a repository location, or raises ValueError with what is wrong.

    Supported: an absolute local path (``/srv/backup/restic``) and ``sftp:[user@]host:/absolute/path``.  Other
    restic backends (s3:, rest:, b2:, ...) are refused: the collection tests only these two."""
    url = (url or '').strip()
    if not url:
        raise ValueError('repository is empty: give an absolute path or sftp:user@host:/path')
    if url.startswith('/'):
        if '/../' in url + '/' or '/./' in url + '/':
            raise ValueError('repository %r: no "." or ".." path components' % url)
        return 'local', {'path': os.path.normpath(url)}
    m = _SFTP_RE.match(url)
    if m:
        if '/../' in m.group('path') + '/':
            raise ValueError('repository %r: no ".." path components' % url)
        return 'sftp', m.groupdict()
    scheme = url.split(':', 1)[0] if ':' in url else ''
    if scheme and scheme not in ('sftp',):
        raise ValueError('repository %r: unknown or unsupported scheme %r (supported: an absolute local path, '
                         'sftp:user@host:/path)' % (url, scheme))
    raise ValueError('repository %r: a local repository needs an absolute path; for a remote one use '
                     'sftp:user@host:/absolute/path' % url)


def sftp_command(details, ssh_key=None, known_hosts=None, port=None, extra=None):
    """The ``ssh ... -s sftp`` command restic starts for an sftp repository (``-o sftp.command``)."""
    argv = ['ssh', '-o', 'BatchMode=yes', '-o', 'ServerAliveInterval=15', '-o', 'ServerAliveCountMax=4']
    if ssh_key:
        argv += ['-i', ssh_key, '-o', 'IdentitiesOnly=yes']
    if known_hosts:
        argv += ['-o', 'UserKnownHostsFile=%s' % known_hosts, '-o', 'StrictHostKeyChecking=yes']
    if port:
        argv += ['-p', str(int(port))]
    argv += list(extra or [])
    target = details['host'] if not details.get('user') else '%s@%s' % (details['user'], details['host'])
    argv += [target, '-s', 'sftp']
    return ' '.join(shlex.quote(a) for a in argv)


def base_argv(repo, restic='restic', sftp_cmd=None):
    argv = [restic, '--repo', repo]
    if sftp_cmd:
        argv += ['-o', 'sftp.command=%s' % sftp_cmd]
    return argv


def env(password_file=None, cache_dir=None, extra=None, password_command=None):
    """The environment of every restic call: the password from a file or a command that prints it (never argv, never
    the environment itself), a cache directory, progress lines every PROGRESS_SECONDS."""
    out = {'RESTIC_PASSWORD_FILE': password_file, 'RESTIC_PROGRESS_FPS': '%.3f' % (1.0 / PROGRESS_SECONDS),
           'RESTIC_PASSWORD': None, 'RESTIC_PASSWORD_COMMAND': password_command, 'RESTIC_REPOSITORY': None}
    if cache_dir:
        out['RESTIC_CACHE_DIR'] = cache_dir
    out.update(extra or {})
    return out


def init_argv(base, compression=True):
    return base + ['init'] + (['--repository-version', '2'] if compression else [])


def cat_config_argv(base):
    return base + ['cat', 'config']


def run_tags(run_id, instances):
    return [TAG, 'run=%s' % run_id] + ['instance=%s' % n for n in instances]


def backup_argv(base, paths, host, tags, compression='auto', parent=None, exclude_caches=False):
    argv = base + ['backup', '--json', '--host', host]
    for tag in tags:
        argv += ['--tag', tag]
    if compression:
        argv += ['--compression', compression]
    if parent:
        argv += ['--parent', parent]
    if exclude_caches:
        argv.append('--exclude-caches')
    return argv + list(paths)


def snapshots_argv(base, host=None, tags=None):
    argv = base + ['snapshots', '--json']
    if host:
        argv += ['--host', host]
    for tag in tags or ():
        argv += ['--tag', tag]
    return argv


def check_argv(base, read_data_subset=None):
    argv = base + ['check']
    if read_data_subset:
        argv.append('--read-data-subset=%s' % read_data_subset)
    return argv


def ls_argv(base, snapshot_id):
    return base + ['ls', '--json', snapshot_id]


def tag_add_argv(base, snapshot_id, tags):
    argv = base + ['tag', '--add', ','.join(tags)]
    return argv + [snapshot_id]


def forget_ids_argv(base, ids):
    return base + ['forget'] + list(ids)


def forget_policy_argv(base, policy, host=None, tags=(TAG,), dry_run=True):
    """``forget --json`` with a keep policy (``policy``: keep_last, keep_daily, ... -> N), grouped by host."""
    argv = base + ['forget', '--json', '--group-by', 'host']
    if dry_run:
        argv.append('--dry-run')
    if host:
        argv += ['--host', host]
    for tag in tags:
        argv += ['--tag', tag]
    for key in RETENTION_KEYS:
        value = policy.get(key)
        if value:
            argv += ['--' + key.replace('_', '-'), str(int(value))]
    return argv


def prune_argv(base):
    return base + ['prune']


def restore_argv(base, snapshot_id, target, includes=()):
    argv = base + ['restore', snapshot_id, '--target', target]
    for inc in includes:
        argv += ['--include', inc]
    return argv


def parse_json_lines(text):
    """restic --json output: one JSON object per line (non-JSON lines are kept under ``_text``)."""
    out = []
    for line in (text or '').splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({'_text': line})
    return out


def parse_backup_output(text):
    """``(summary, errors, last_status)`` of ``backup --json``: the summary object (or None), the error
    objects, the last status object."""
    summary, errors, status = None, [], None
    for obj in parse_json_lines(text):
        kind = obj.get('message_type')
        if kind == 'summary':
            summary = obj
        elif kind == 'status':
            status = obj
        elif kind == 'error':
            errors.append(obj)
    return summary, errors, status


def parse_snapshots(text):
    try:
        data = json.loads(text or '[]')
    except ValueError:
        return None
    return data if isinstance(data, list) else None


def snapshot_tags(snap):
    """``{key: value}`` of the ``key=value`` tags of a snapshot, plus ``'irisops'``/``'verified'`` as True."""
    out = {}
    for tag in snap.get('tags') or []:
        key, sep, value = tag.partition('=')
        if sep:
            out.setdefault(key, []).append(value)
        else:
            out[tag] = True
    return out


def parse_ls(text):
    """``restic ls --json``: the snapshot object and its nodes (``path``, ``type``, ``size``)."""
    snap, nodes = None, []
    for obj in parse_json_lines(text):
        if obj.get('struct_type') == 'snapshot' or (obj.get('tree') and 'paths' in obj and snap is None):
            snap = obj
        elif obj.get('struct_type') == 'node' or ('path' in obj and 'type' in obj):
            nodes.append(obj)
    return snap, nodes


def parse_forget(text):
    """``forget --json --dry-run``: the ids it would remove and keep (all groups)."""
    try:
        groups = json.loads(text or '[]')
    except ValueError:
        return None
    keep, remove = [], []
    for g in groups or []:
        keep += [s.get('id') for s in g.get('keep') or []]
        remove += [s.get('id') for s in g.get('remove') or []]
    return {'keep': keep, 'remove': remove}


def diagnose(rc, stderr):
    """A short explanation and next step for a failed restic command."""
    low = (stderr or '').lower()
    if rc is None:
        return 'restic did not finish within its timeout and was killed'
    if rc == 127 or 'no such file or directory' in low and 'restic' in low and 'exec' in low:
        return 'the restic command was not found: install the restic package (the role does) or set restic_binary'
    if 'wrong password' in low or 'no key found' in low:
        return 'wrong repository password (no key in the repository opens with it): check the password file/credential'
    if 'is there a repository at the following location' in low or 'unable to open config file' in low:
        return ('no repository at that location: initialise it (irisops-backup init, or the lvm_backup role with '
                'lvm_backup_init_repository: true)')
    if 'no space left on device' in low or 'disk quota exceeded' in low:
        return 'the repository is full: free space or prune older backups, then run again'
    if 'connection closed' in low or 'ssh' in low and ('refused' in low or 'timed out' in low or 'reset' in low) or \
            'unable to start the sftp session' in low or 'no route to host' in low:
        return 'the sftp repository host cannot be reached: check the host, its sshd, the key and known_hosts'
    if 'repository is already locked' in low:
        return 'another restic process holds a lock on the repository; if none runs, remove it with restic unlock'
    return 'see restic\'s message above'
