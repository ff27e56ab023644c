# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
#
# Standard library only, no ansible import (irisops-backup runs a verbatim copy next to the other engine files).
"""The real restore of one instance from a verified backup: ``irisops-backup restore`` and the module
``irisops.backup.iris_restore``.  The same code path as the drill (_drill.py: the backup picked from the catalogue,
restic restore, the journal chain from the manifest's restore journal file, Journal.Restore, the integrity check),
applied to the production directories of the instance itself, with these guard rails:

* refused before anything is written unless ``confirm`` equals the instance name, while the instance is not down
  (qlist), for a mirror member, when a directory of the backup overlaps another instance or the drill directory,
  when a directory of the instance is missing from the backup, or when a file system lacks the space;
* every directory is restored by restic into a staging directory **on the same file system** as the directory it
  replaces, so that putting it in place is a ``rename(2)``, never a copy over production files;
* the current directories are kept aside (renamed ``<dir>.irisops-before-<run>``; for a directory that is a mount
  point, its entries are moved into ``<dir>/.irisops-before-<run>``) until the restored instance is started,
  rolled forward and checked; they are left for the operator to delete, never deleted by the restore;
* every failure after the first rename stops the instance (when the restore started it) and renames everything
  back: production is exactly as before;
* a state file (``<state dir>/<INSTANCE>.json``, written atomically before each step) lets a later run with the
  same confirmation detect a restore that was killed (SIGKILL, power loss) and roll it back, or finish it when it
  had already been checked (see :meth:`Restore.recover`); TERM/INT/HUP/PIPE are recorded and roll back at the next
  step boundary.

The journal chain.  The restore journal file of the backup and every later file can exist in three copies: the
backup's own (taken at the snapshot, so its last file is cut at the freeze), the shipped copies in the repository
(complete files, as they were when shipped) and the files on this host (the current journal directories, which the
swap keeps aside).  IRIS only ever appends to a journal file, so of two copies of one file the longer one holds
every record of the shorter one and more: **the longest copy wins; between copies of equal length the host's
(then the shipped one, then the backup's)**.  A host copy shorter than another copy was truncated (for example by
the failure the restore repairs) and is not used.  The chosen files are gathered in one directory (hard links to the
host's files, no copy) so that Journal.Restore sees each name exactly once, whatever it does with several locations.
"""

from __future__ import absolute_import, division, print_function

import errno
import fcntl
import json
import os
import shutil
import socket
import sys
import time

try:
    from ansible_collections.irisops.backup.plugins.module_utils import _drill
    from ansible_collections.irisops.backup.plugins.module_utils import _freeze
    from ansible_collections.irisops.backup.plugins.module_utils import _iris
    from ansible_collections.irisops.backup.plugins.module_utils import _journal
    from ansible_collections.irisops.backup.plugins.module_utils import _restic
except ImportError:  # an on-host copy: the engine files side by side
    if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _drill  # pylint: disable=import-error
    import _freeze  # pylint: disable=import-error
    import _iris  # pylint: disable=import-error
    import _journal  # pylint: disable=import-error
    import _restic  # pylint: disable=import-error

__metaclass__ = type

#: Where the restore keeps its state file (``<INSTANCE>.json``), its lock and its reports.
STATE_DIR = '/var/lib/irisops/restore'
STATE_FORMAT = 1
#: Names the restore gives the directories it makes (all on the file system of the directory they belong to).
ASIDE_INFIX = '.irisops-before-'
STAGING_INFIX = '.irisops-restore-'
CHAIN_INFIX = '.irisops-chain-'
OWN_PREFIX = '.irisops-'
SHIPPED_SUBDIR = '.shipped'
#: Phases recorded in the state file, in order.  Up to 'staging' production is untouched; from 'swap' on, the
#: renames recorded in ``ops`` may have happened; 'committed' = started, rolled forward and checked.
PHASES = ('staging', 'swap', 'started', 'rollforward', 'integrity', 'committed')
COMMITTED = 'committed'
CONTROL_TIMEOUT = 900
SESSION_TIMEOUT = 6 * 3600
RESTIC_TIMEOUT = 6 * 3600
#: Test hook: called with the name of every step before it runs (the unit tests kill the process there).
STEP_HOOK = None


class RestoreError(Exception):
    """A failure that ends the restore; ``str()`` is the whole message (with its ``Next:``)."""


def _now():
    return time.time()


def _inside(path, parent):
    """Whether ``path`` is ``parent`` or below it (by path components)."""
    path, parent = os.path.normpath(path), os.path.normpath(parent)
    return path == parent or path.startswith(parent.rstrip('/') + '/')


def is_mount(path):
    """Whether ``path`` is a mount point (a function, so that tests can make one)."""
    return os.path.ismount(path)


def covering_dirs(dirs):
    """The directories of ``dirs`` that no other one contains, sorted: the units the restore moves as a whole."""
    out = []
    for d in sorted(set(os.path.normpath(x) for x in dirs if x)):
        if not any(_inside(d, o) for o in out):
            out.append(d)
    return out


def volume_of(path, manifest):
    """The volume of the manifest whose origin mount point holds ``path`` (the deepest one), or None."""
    best = None
    for vol in manifest.get('volumes') or []:
        origin = vol.get('origin_mountpoint')
        if origin and _inside(path, origin) and (best is None or len(origin) > len(best['origin_mountpoint'])):
            best = vol
    return best


def snapshot_path(path, manifest):
    """Where production directory ``path`` is inside the backup's restic snapshot (an absolute path), or None."""
    vol = volume_of(path, manifest)
    if vol is None:
        return None
    rel = os.path.relpath(os.path.normpath(path), vol['origin_mountpoint'])
    return os.path.normpath(os.path.join(vol['mountpoint'], rel))


def tree_bytes(root):
    """Bytes ``root`` takes on disk (allocated blocks), without following symbolic links."""
    total = 0
    for dirpath, dirnames, names in os.walk(root):
        for n in [dirpath] + [os.path.join(dirpath, x) for x in names]:
            try:
                total += os.lstat(n).st_blocks * 512
            except OSError:
                pass
    return total


def choose_journals(copies):
    """``{name: (path, source)}`` from ``copies`` = ``[(path, source)]`` (source 'host', 'shipped' or 'backup'): per
    file name the longest copy, the host's (then the shipped, then the backup's) among equally long ones (see the
    module docstring); and the warnings about host copies that are shorter than another copy."""
    rank = {'host': 0, 'shipped': 1, 'backup': 2}
    by_name = {}
    for path, source in copies:
        try:
            size = os.path.getsize(path)
        except OSError:
            continue
        by_name.setdefault(os.path.basename(path), []).append((-size, rank[source], path, source))
    chosen, warnings = {}, []
    for name, cands in by_name.items():
        cands.sort()
        chosen[name] = (cands[0][2], cands[0][3])
        host = [c for c in cands if c[3] == 'host']
        if host and cands[0][3] != 'host':
            best = cands[0]
            warnings.append('the copy of journal file %s on this host (%d bytes) is shorter than the %s copy (%d '
                            'bytes): the %s copy is used' % (name, -host[0][0], best[3], -best[0], best[3]))
    return chosen, warnings


def journal_files_under(root):
    """Every journal file below ``root`` (any depth)."""
    dirs = set()
    for dirpath, _dirs, names in os.walk(root):
        if any(_iris.JOURNAL_FILE_RE.match(n) for n in names):
            dirs.add(dirpath)
    return _journal.list_completed_journals(sorted(dirs), None)


def undo_op(op):
    """Undo one recorded operation if it happened; returns a text of what was done, or None.  A rename happened
    when its destination exists and its source does not (each rename is atomic, sources and destinations are new
    names), so this is right whatever point a killed run reached, and running it twice does nothing more."""
    if op[0] == 'rename':
        src, dst = op[1], op[2]
        if os.path.lexists(dst) and not os.path.lexists(src):
            os.rename(dst, src)
            return 'moved %s back to %s' % (dst, src)
        return None
    if op[0] == 'mkdir':
        try:
            os.rmdir(op[1])
            return 'removed the empty directory %s' % op[1]
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
    raise ValueError('unknown operation %r' % (op,))


class Restore(object):
    """One real restore of one instance (see the module docstring).  ``run()`` returns the report."""

    def __init__(self, repo, cfg, instance, confirm=None, backup_id=None, until=None, host=None, state_dir=None,
                 backup_lock=None, runner=None, emit=None, recover_only=False, run_id=None):
        self.repo = repo
        self.cfg = cfg
        self.instance = (instance or '').upper()
        self.confirm = confirm
        self.backup_id = backup_id
        self.until = until
        self.host = host or cfg.get('host') or socket.gethostname()
        self.state_dir = state_dir or STATE_DIR
        self.backup_lock = backup_lock
        self.runner = runner
        self.emit = emit or (lambda line: None)
        self.recover_only = recover_only
        self.run_id = run_id or _freeze.default_run_id('restore')
        self.report = {'instance': self.instance, 'host': self.host, 'run_id': self.run_id, 'status': 'running',
                       'started': _freeze.now_iso(), 'actions': [], 'checks': [], 'warnings': [], 'steps': [],
                       'aside': []}
        self.state = None
        self.inst = None
        self.lock_fd = None
        self.guard = None
        self.locked_backup = False
        self.rollback_failed = False
        self.others = []

    # -- small helpers --------------------------------------------------------------------------------------------
    @property
    def state_path(self):
        return os.path.join(self.state_dir, '%s.json' % _freeze.deadman_safe_name(self.instance))

    def say(self, text):
        self.emit('restore: %s' % text)

    def did(self, text):
        """Something the restore changed on this host: reported in order, and said at once."""
        self.report['actions'].append(text)
        self.say(text)

    def step(self, name, interruptible=True):
        """A step boundary: recorded, the test hook called, and, before the check passed, a recorded signal turned
        into a failure (which rolls back).  The steps of a rollback and of the clean-up after the check are not
        interruptible: a signal there lets them finish."""
        self.report['steps'].append(name)
        if STEP_HOOK is not None:
            STEP_HOOK(name)
        why = self.guard.interrupted() if (self.guard is not None and interruptible) else None
        if why:
            raise RestoreError('%s. Next: the restore is rolled back; run it again when ready' % why)

    def save_state(self, **changes):
        self.state.update(changes, updated=_freeze.now_iso(), pid=os.getpid())
        _freeze.write_atomic(self.state_path, json.dumps(self.state, indent=1, sort_keys=True), 0o600)

    def control(self, action):
        """``iris start|stop <INSTANCE> quietly``: (rc, output)."""
        argv = [self.inst.get('control_cmd') or 'iris', action, self.inst['name'], 'quietly']
        rc, out, err = (self.runner or _iris.subprocess_runner)(argv, None, CONTROL_TIMEOUT)
        return rc, ((out or '') + (err or '')).strip()

    def status(self):
        """The instance's qlist status word now ('running', 'down', ...; 'unknown' when qlist cannot tell)."""
        st = _iris.qlist_status(self.runner, self.inst)
        return (st or {}).get('status') or _iris.STATUS_UNKNOWN, (st or {}).get('status_raw')

    def stop_command(self):
        return '%s stop %s quietly' % (os.path.basename(self.inst.get('control_cmd') or 'iris'), self.inst['name'])

    # -- the run --------------------------------------------------------------------------------------------------
    def run(self):
        started = _now()
        try:
            with _freeze.SignalGuard() as guard:
                self.guard = guard
                try:
                    self._run()
                    if self.report['status'] == 'running':
                        self.report['status'] = 'success'
                except RestoreError as exc:
                    self.fail(str(exc))
                except Exception as exc:  # pylint: disable=broad-except  # roll back whatever a bug interrupted
                    self.fail('unexpected %s: %s' % (type(exc).__name__, exc))
        finally:
            self.unlock()
        self.report['finished'] = _freeze.now_iso()
        self.report['duration_s'] = round(_now() - started, 3)
        return self.report

    def fail(self, error):
        """The restore failed: roll back what the state file records (unless the rollback itself is what failed,
        or the restore had already been checked: then only its clean-up is missing, which a rerun finishes)."""
        self.report.update(status='failed', error=error)
        state = self.state
        if state is None or self.rollback_failed:
            return
        if state.get('phase') == COMMITTED:
            self.report['error'] = ('%s; the restore itself had passed its checks: run irisops-backup restore '
                                    '--instance %s --confirm %s --recover-only to finish its clean-up' % (
                                        error, self.instance, self.instance))
            return
        try:
            self.rollback(state)
        except RestoreError as exc:
            self.report['error'] = '%s; ROLLBACK INCOMPLETE: %s' % (error, exc)
        except Exception as exc:  # pylint: disable=broad-except
            self.report['error'] = ('%s; ROLLBACK INCOMPLETE: unexpected %s: %s. Next: run irisops-backup restore '
                                    '--instance %s --confirm %s --recover-only' % (
                                        error, type(exc).__name__, exc, self.instance, self.instance))

    def confirmation_error(self):
        """The refusal when ``confirm`` is not the instance name (compared without regard to case, as IRIS treats
        instance names), else None."""
        if not self.instance:
            return ('nothing restored: no instance given. Next: give the instance to restore (--instance, '
                    'instance=)')
        if (self.confirm or '').strip().upper() != self.instance:
            return ('nothing restored: a restore replaces the databases and journals of instance %s and needs the '
                    'confirmation %s (given: %s). Next: run it again with --confirm %s (iris_restore: confirm: %s)' % (
                        self.instance, self.instance, repr(self.confirm) if self.confirm else 'none',
                        self.instance, self.instance))
        return None

    def preview(self):
        """What a run would do, without writing anything (check mode, ``--dry-run``): the report with ``plan``, or
        with ``unfinished`` when a restore of the instance was interrupted (a run first recovers it).  A missing
        confirmation is reported as the failure it would be, after the plan."""
        try:
            self._discover()
            old = _freeze.read_json(self.state_path)
            if old:
                self.report['unfinished'] = {'run_id': old.get('run_id'), 'phase': old.get('phase'),
                                             'state_file': self.state_path,
                                             'action': 'finish' if old.get('phase') == COMMITTED else 'roll back'}
            else:
                self.plan()
            self.report['status'] = 'planned'
        except RestoreError as exc:
            self.report.update(status='failed', error=str(exc))
        why = self.confirmation_error()
        if why and self.report['status'] != 'failed':
            self.report.update(status='failed', error=why)
        self.report['finished'] = _freeze.now_iso()
        return self.report

    def _run(self):
        why = self.confirmation_error()
        if why:
            raise RestoreError(why)
        self._discover()
        self.lock()
        old = _freeze.read_json(self.state_path)
        if old:
            self.report['recovered'] = self.recover(old)
            if self.report['recovered'].get('finished') or self.recover_only:
                return
        elif self.recover_only:
            self.report['recovered'] = {'action': 'none', 'text': 'no unfinished restore of %s' % self.instance}
            return
        plan = self.plan()
        self.execute(plan)

    def _discover(self):
        if self.until:
            try:
                _journal.horolog(self.until)
            except ValueError:
                raise RestoreError('nothing restored: until %r is not a time. Next: give YYYY-MM-DD HH:MM:SS, the '
                                   'local time of the instance as its journal records it' % (self.until,))
        instances, errors = _iris.discover_instances(runner=self.runner)
        self.inst = _iris.find_instance(instances, self.instance)
        if self.inst is None:
            raise RestoreError('nothing restored: instance %s is not installed on this host (known: %s%s). Next: '
                               'check the name with iris qlist' % (
                                   self.instance, ', '.join(i['name'] for i in instances) or 'none',
                                   ('; ' + '; '.join(errors)) if errors else ''))
        self.others = [i for i in instances if i is not self.inst]

    # -- locks ----------------------------------------------------------------------------------------------------
    def lock(self):
        """The instance's restore lock (flock, released by the kernel when the process dies) and the host's backup
        run lock (no backup run may freeze and copy a half-restored instance)."""
        if not os.path.isdir(self.state_dir):
            os.makedirs(self.state_dir, 0o700)
        path = os.path.join(self.state_dir, '%s.lock' % _freeze.deadman_safe_name(self.instance))
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, 'O_NOFOLLOW', 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (IOError, OSError):
            os.close(fd)
            raise RestoreError('nothing restored: another restore of instance %s is running (it holds %s). Next: '
                               'wait for it to end; a restore that was killed released the lock by itself'
                               % (self.instance, path))
        self.lock_fd = fd
        if self.backup_lock is not None:
            try:
                self.backup_lock.acquire(self.run_id)
            except Exception as exc:  # pylint: disable=broad-except  # the lock's own error names the holder
                raise RestoreError('nothing restored: a backup run is in progress on this host: %s' % (
                    str(exc).split('. Next:', 1)[0]) + '. Next: wait for it to end (irisops-backup status), then run '
                    'the restore again')
            self.locked_backup = True

    def unlock(self):
        if self.locked_backup:
            try:
                self.backup_lock.release()
            except Exception:  # pylint: disable=broad-except
                pass
            self.locked_backup = False
        if self.lock_fd is not None:
            fcntl.flock(self.lock_fd, fcntl.LOCK_UN)
            os.close(self.lock_fd)
            self.lock_fd = None

    # -- plan: every check, nothing written -----------------------------------------------------------------------
    def require_down(self, why):
        status, raw = self.status()
        if status != _iris.STATUS_DOWN:
            raise RestoreError('nothing restored: instance %s is %s (qlist: %r); %s. Next: stop it (`%s`; `%s force '
                               '%s` if it does not stop), then run the restore again' % (
                                   self.instance, status, raw, why, self.stop_command(),
                                   os.path.basename(self.inst.get('control_cmd') or 'iris'), self.inst['name']))

    def plan(self):
        """Every check of the restore and what it would do: dict(backup, units, chain sources, ...).  Reads the
        repository and this host, writes nothing (check mode reports it)."""
        rep = self.report
        if self.inst.get('mirror_member'):
            raise RestoreError('nothing restored: instance %s is a mirror member (%s). Next: restoring a mirror member '
                               'is a mirror rebuild: follow the InterSystems procedure for its member type '
                               '(docs/restore-runbook.md, Mirror members)' % (
                                   self.instance, self.inst.get('mirror_member_type')))
        self.require_down('a restore replaces its files')
        backup = self.pick_backup()
        manifest = backup['manifest']
        entry = (manifest.get('instances') or {}).get(self.instance)
        if not entry:
            raise RestoreError('nothing restored: backup %s holds no instance %s (it holds %s). Next: choose a backup '
                               'of %s (irisops-backup list)' % (
                                   backup['short_id'], self.instance,
                                   ', '.join(sorted(manifest.get('instances') or {})) or 'none', self.instance))
        rep.update(backup_id=backup['id'], backup_run_id=backup.get('run_id'), backup_time=backup.get('time'),
                   restore_journal_file=entry.get('journal_file'), marker_offset=entry.get('marker_offset'))
        if not entry.get('journal_file'):
            raise RestoreError('nothing restored: backup %s records no restore journal file for %s (the freeze did '
                               'not switch the journal). Next: take a new backup with irisops-backup run, or restore '
                               'by hand (docs/restore-runbook.md)' % (backup['short_id'], self.instance))
        _snap, nodes = self.repo.ls(backup['id'])
        in_backup = {}
        for node in nodes:
            if node.get('path'):
                in_backup[os.path.normpath(node['path'])] = node
        local_dbs = set(os.path.normpath(d) for d in self.inst.get('database_dirs') or [])
        dirs = []
        for role, d in self._entry_dirs(entry):
            spath = snapshot_path(d, manifest)
            if spath is None or (in_backup.get(spath) or {}).get('type') != 'dir':
                if role.startswith('database') and os.path.normpath(d) not in local_dbs \
                        and not os.path.isdir(d):
                    rep['warnings'].append('the %s directory %s is not in the backup and not a local directory of '
                                           '%s now: left alone' % (role, d, self.instance))
                    continue
                raise RestoreError('nothing restored: the %s directory %s of instance %s is not in backup %s. Next: '
                                   'every directory of the instance must be restored together (databases, journals, '
                                   'WIJ); choose a backup that holds it, or restore by hand '
                                   '(docs/restore-runbook.md)' % (role, d, self.instance, backup['short_id']))
            dirs.append((role, os.path.normpath(d), spath))
        units = []
        for u in covering_dirs(d for _r, d, _s in dirs):
            uvol = volume_of(u, manifest)
            for role, d, _s in dirs:
                if d != u and _inside(d, u) and (volume_of(d, manifest) is not uvol or is_mount(d)):
                    raise RestoreError('nothing restored: the %s directory %s is on a file system of its own inside '
                                       '%s, which the restore would move as a whole. Next: restore this instance by '
                                       'hand (docs/restore-runbook.md)' % (role, d, u))
            if not os.path.isdir(u):
                raise RestoreError('nothing restored: %s does not exist on this host. Next: create the directory (its '
                                   'mount point, owned like the instance\'s other directories) and run the restore '
                                   'again' % u)
            units.append({'dir': u, 'snapshot_path': snapshot_path(u, manifest), 'mount': bool(is_mount(u)),
                          'roles': [r for r, d, _s in dirs if _inside(d, u)]})
        problems = []
        for u in units:
            for other in self.others:
                for role, d in _iris.instance_dirs(other):
                    if d and (_inside(d, u['dir']) or _inside(u['dir'], d)):
                        problems.append('%s overlaps the %s directory %s of instance %s (%s)' % (
                            u['dir'], role, d, other['name'], other.get('status') or '?'))
            drill_root = self.cfg.get('drill_root')
            if drill_root and (_inside(drill_root, u['dir']) or _inside(u['dir'], drill_root)):
                problems.append('%s overlaps the drill directory %s (drill_root)' % (u['dir'], drill_root))
        if problems:
            raise RestoreError('nothing restored: %s. Next: the restore moves each of these directories as a whole; '
                               'restore by hand (docs/restore-runbook.md) or separate the directories' %
                               '; '.join(problems))
        groups = self._groups(units)
        for g in groups:
            g['bytes'] = sum(n.get('size') or 0 for p, n in in_backup.items() if n.get('type') == 'file'
                             and any(_inside(p, u['snapshot_path']) for u in g['units']))
            try:
                vfs = os.statvfs(g['location'])
                g['free'] = vfs.f_bavail * vfs.f_frsize
            except OSError:
                g['free'] = None
            if g['free'] is not None and g['bytes'] > g['free']:
                raise RestoreError('nothing restored: restoring %s needs %s on the file system of %s, which has %s '
                                   'free. Next: free space there (the current files stay until you delete them), '
                                   'or restore by hand (docs/restore-runbook.md)' % (
                                       ', '.join(u['dir'] for u in g['units']), _human(g['bytes']), g['location'],
                                       _human(g['free'])))
        skipped = set(os.path.normpath(d) for d in entry.get('not_journalled') or [])
        databases = sorted(set(os.path.normpath(d) for d in (entry.get('databases') or {}).values()
                               if os.path.normpath(d) not in skipped and any(_inside(d, u['dir']) for u in units)))
        if not databases:
            raise RestoreError('nothing restored: backup %s lists no journalled database of instance %s. Next: check '
                               'the manifest (irisops-backup list --json) and that the databases are journalled, then '
                               'take a new backup' % (backup['short_id'], self.instance))
        journal_dirs = sorted(set(os.path.normpath(d) for d in list(entry.get('journal_dirs') or [])
                                  + list(self.inst.get('journal_dirs') or []) if d))
        shipped = backup['shipped']
        # the chain directory: on the file system of the current journal files (the restore journal file's
        # directory, else any journal directory), so that the host's files are hard links, not copies
        wanted = [os.path.dirname(os.path.normpath(entry['journal_file']))] + journal_dirs
        jgroup = groups[0]
        for j in wanted:
            found = [g for g in groups if any(_inside(j, u['dir']) for u in g['units'])]
            if found:
                jgroup = found[0]
                break
        tag = self.run_id
        chain_dir = os.path.join(jgroup['location'], CHAIN_INFIX + tag)
        plan = {'backup': dict((k, v) for k, v in backup.items() if k != 'manifest'), 'manifest': manifest,
                'entry': entry, 'units': units, 'groups': groups, 'databases': databases,
                'journal_dirs': journal_dirs, 'shipped': shipped,
                'chain_dir': chain_dir, 'tag': tag}
        for g in groups:
            g['staging'] = os.path.join(g['location'], STAGING_INFIX + tag)
            for u in g['units']:
                u['staging'] = g['staging']
        for u in units:
            u['aside'] = os.path.join(u['dir'], ASIDE_INFIX + tag) if u['mount'] else u['dir'] + ASIDE_INFIX + tag
        for path in [chain_dir] + [g['staging'] for g in groups] + [u['aside'] for u in units]:
            if os.path.lexists(path):
                raise RestoreError('nothing restored: %s already exists. Next: remove it or run the restore again (a '
                                   'new run uses a new name)' % path)
        if shipped is None:
            rep['warnings'].append('no shipped journals of %s in the repository: the journals come from this host and '
                                   'the backup only' % self.instance)
        rep['plan'] = self.plan_text(plan)
        rep['units'] = [{'dir': u['dir'], 'aside': u['aside'], 'mount': u['mount'], 'roles': u['roles']}
                        for u in units]
        return plan

    def _entry_dirs(self, entry):
        out = [('database %s' % n, d) for n, d in sorted((entry.get('databases') or {}).items()) if d]
        out += [('journal', d) for d in entry.get('journal_dirs') or [] if d]
        if entry.get('wij_dir'):
            out.append(('wij', entry['wij_dir']))
        return out

    def _groups(self, units):
        """Units sharing a file system share one staging directory: a mount point's own (inside it), else the
        parent of the group's first directory (on the same file system: not a mount point)."""
        groups = {}
        order = []
        for u in units:
            key = ('mount', u['dir']) if u['mount'] else ('dev', os.stat(u['dir']).st_dev)
            if key not in groups:
                groups[key] = {'units': [], 'location': u['dir'] if u['mount'] else os.path.dirname(u['dir'])}
                order.append(key)
            groups[key]['units'].append(u)
        return [groups[k] for k in order]

    def plan_text(self, plan):
        b = plan['backup']
        lines = ['restore backup %s (run %s, taken %s) of instance %s, journals from %s on%s' % (
            b['short_id'], b.get('run_id'), b.get('time'), self.instance, plan['entry'].get('journal_file'),
            (' until %s' % self.until) if self.until else ' to the newest available')]
        for u in plan['units']:
            lines.append('%s (%s): current files kept aside in %s' % (u['dir'], ', '.join(u['roles']), u['aside']))
        for g in plan['groups']:
            lines.append('staging on the file system of %s: %s needed, %s free' % (
                g['location'], _human(g['bytes']), _human(g['free'])))
        return lines

    def pick_backup(self):
        """The backup to restore and the newest shipped journals, from one listing of this host's snapshots: the
        newest verified backup (or the one asked for, by snapshot id prefix or run id), like the drill."""
        snaps = self.repo.snapshots(host=self.host, tags=())
        backups = [s for s in snaps if _restic.snapshot_tags(s).get(_restic.TAG)
                   and _restic.snapshot_tags(s).get(_restic.VERIFIED_TAG)]
        if self.backup_id:
            backups = [s for s in backups if (s.get('id') or '').startswith(self.backup_id)
                       or self.backup_id in (_restic.snapshot_tags(s).get('run') or [])]
        if not backups:
            raise RestoreError('nothing restored: no verified backup of host %s%s in the repository. Next: '
                               'irisops-backup list shows the backups' % (
                                   self.host, (' matching %s' % self.backup_id) if self.backup_id else ''))
        snap = sorted(backups, key=lambda s: s.get('time') or '')[-1]
        text = self.repo.dump(snap['id'], os.path.join(snap['paths'][0], '.irisops', 'manifest.json'))
        try:
            manifest = json.loads(text) if text else None
        except ValueError:
            manifest = None
        if not isinstance(manifest, dict):
            raise RestoreError('nothing restored: backup %s has no readable manifest (.irisops/manifest.json). Next: '
                               'restore another backup (--backup; irisops-backup list shows them)' % snap['id'][:8])
        journals = [s for s in snaps if _restic.snapshot_tags(s).get(_drill.JOURNAL_TAG)
                    and self.instance in (_restic.snapshot_tags(s).get('instance') or [])]
        shipped = sorted(journals, key=lambda s: s.get('time') or '')[-1] if journals else None
        return {'id': snap['id'], 'short_id': snap['id'][:8], 'time': snap.get('time'),
                'run_id': (_restic.snapshot_tags(snap).get('run') or [None])[0], 'manifest': manifest,
                'shipped': shipped['id'] if shipped else None}

    # -- execute --------------------------------------------------------------------------------------------------
    def execute(self, plan):
        rep = self.report
        t0 = _now()
        self.state = {'format': STATE_FORMAT, 'instance': self.instance, 'run_id': self.run_id,
                      'backup_id': plan['backup']['id'], 'phase': 'staging',
                      'staging': [g['staging'] for g in plan['groups']], 'chain_dir': plan['chain_dir'],
                      'units': [{'dir': u['dir'], 'aside': u['aside'], 'mount': u['mount'], 'staging': u['staging']}
                                for u in plan['units']],
                      'ops': [], 'started_instance': False, 'created': _freeze.now_iso()}
        self.save_state()
        self.step('state')
        # 1. the backup's directories, into staging on their own file systems
        for i, g in enumerate(plan['groups']):
            self.step('stage:%d' % i)
            os.mkdir(g['staging'], 0o700)
            self.did('created the staging directory %s' % g['staging'])
            if os.stat(g['staging']).st_dev != os.stat(g['units'][0]['dir']).st_dev:
                raise RestoreError('the staging directory %s is not on the file system of %s. Next: report a bug; '
                                   'restore by hand meanwhile (docs/restore-runbook.md)' % (
                                       g['staging'], g['units'][0]['dir']))
            self.restic_restore(plan['backup']['id'], g['staging'], [u['snapshot_path'] for u in g['units']])
            self.did('restored %s of backup %s into %s' % (
                ', '.join(u['dir'] for u in g['units']), plan['backup']['short_id'], g['staging']))
            for u in g['units']:
                u['restored'] = os.path.join(g['staging'], u['snapshot_path'].lstrip('/'))
                if not os.path.isdir(u['restored']):
                    raise RestoreError('restic restored nothing at %s for %s. Next: check backup %s (restic ls %s)' % (
                        u['restored'], u['dir'], plan['backup']['short_id'], plan['backup']['short_id']))
        # 2. the journal chain, before anything of production moves
        self.step('shipped')
        os.mkdir(plan['chain_dir'], 0o700)
        self.did('created the journal chain directory %s' % plan['chain_dir'])
        shipped_root = os.path.join(plan['chain_dir'], SHIPPED_SUBDIR)
        if plan['shipped']:
            self.restic_restore(plan['shipped'], shipped_root)
            rep['journal_snapshot'] = plan['shipped'][:8]
        self.step('chain')
        chain = self.build_chain(plan, shipped_root)
        # 3. the swap: the current directories aside, the restored ones in place (renames only)
        ops = []
        for u in plan['units']:
            if u['mount']:
                ops.append(('mkdir', u['aside']))
                for name in sorted(os.listdir(u['dir'])):
                    if not name.startswith(OWN_PREFIX):
                        ops.append(('rename', os.path.join(u['dir'], name), os.path.join(u['aside'], name)))
                for name in sorted(os.listdir(u['restored'])):
                    if not name.startswith(OWN_PREFIX):
                        ops.append(('rename', os.path.join(u['restored'], name), os.path.join(u['dir'], name)))
            else:
                ops.append(('rename', u['dir'], u['aside']))
                ops.append(('rename', u['restored'], u['dir']))
        self.save_state(phase='swap', ops=ops)
        for i, op in enumerate(ops):
            self.step('swap:%d' % i)
            if op[0] == 'mkdir':
                os.mkdir(op[1], 0o700)
                self.did('created %s' % op[1])
            else:
                os.rename(op[1], op[2])
                self.did('renamed %s to %s' % (op[1], op[2]))
        # 4. start, roll forward, check
        self.save_state(phase='started', started_instance=True)
        self.step('start')
        rc, out = self.control('start')
        status, raw = self.status()
        if rc != 0 or status != _iris.STATUS_RUNNING:
            raise RestoreError('instance %s did not start on the restored files (exit %s: %s; qlist: %r). Next: read '
                               'its messages.log (%s); the restore is rolled back' % (
                                   self.instance, rc, out[-300:], raw, self.inst.get('messages_log') or '-'))
        self.did('started instance %s on the restored files' % self.instance)
        self.save_state(phase='rollforward')
        self.step('rollforward')
        self.roll_forward(plan, chain)
        self.save_state(phase='integrity')
        self.step('integrity')
        self.integrity(plan)
        rep['rto_s'] = round(_now() - t0, 3)
        self.save_state(phase=COMMITTED, rto_s=rep['rto_s'], point_reached=rep.get('point_reached'))
        self.step('committed', False)
        self.finish(self.state)

    def restic_restore(self, snap_id, target, includes=()):
        argv = _restic.restore_argv(self.repo.base, snap_id, target, includes)
        rc, _out, err = self.repo.run(argv, timeout=RESTIC_TIMEOUT)
        if rc != 0:
            raise RestoreError('restic restore of %s failed (exit %s): %s. Next: %s; restic check --read-data shows '
                               'which pack is damaged' % (snap_id[:8], rc, (err or '').strip()[-500:],
                                                          _restic.diagnose(rc, err)))

    def build_chain(self, plan, shipped_root):
        """The journal files from the manifest's restore journal file on, one copy per name (choose_journals), in
        the chain directory: hard links to the host's files (same file system; a copy where a link is refused), the
        shipped files moved there, the backup's copied."""
        rep = self.report
        copies = [(f, 'host') for f in _journal.list_completed_journals(plan['journal_dirs'], None)]
        if os.path.isdir(shipped_root):
            copies += [(f, 'shipped') for f in journal_files_under(shipped_root)]
        for u in plan['units']:
            for j in plan['entry'].get('journal_dirs') or []:
                if _inside(j, u['dir']):
                    restored = os.path.join(u['restored'], os.path.relpath(os.path.normpath(j), u['dir']))
                    copies += [(f, 'backup') for f in _journal.list_completed_journals([restored], None)]
        chosen, warnings = choose_journals(copies)
        rep['warnings'] += warnings
        names = sorted(chosen, key=lambda n: _journal.journal_key(n)[:3])
        first = os.path.basename(plan['entry']['journal_file'])
        names = [os.path.basename(f) for f in _journal.journals_from(names, first)]
        if not names:
            raise RestoreError('nothing restored: the restore journal file %s of backup %s is neither on this host, '
                               'nor among the shipped journals, nor in the backup. Next: find the journal file '
                               '(irisops-backup journals ships them) or restore by hand without a roll-forward '
                               '(docs/restore-runbook.md)' % (first, plan['backup']['short_id']))
        chain = []
        for n in names:
            src, source = chosen[n]
            dst = os.path.join(plan['chain_dir'], n)
            if source == 'shipped':
                os.rename(src, dst)
            elif source == 'host':
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copy2(src, dst)
            else:
                shutil.copy2(src, dst)
            chain.append({'file': n, 'source': source, 'bytes': os.path.getsize(dst)})
        shutil.rmtree(shipped_root, ignore_errors=True)
        self.chown_chain(plan['chain_dir'])
        rep['journal_chain'] = chain
        self.did('gathered %d journal file(s) from %s on in %s (%s)' % (
            len(chain), first, plan['chain_dir'], ', '.join('%s from %s' % (c['file'], c['source']) for c in chain)))
        return [os.path.join(plan['chain_dir'], c['file']) for c in chain]

    def chown_chain(self, chain_dir):
        """The instance's processes read the chain: the directory belongs to the instance owner (the files keep
        their owners: the host's are the same inodes as the journal files)."""
        import grp
        import pwd
        try:
            pw = pwd.getpwnam(self.inst.get('owner_user') or '')
        except KeyError:
            return
        gid = pw.pw_gid
        try:
            gid = grp.getgrnam(self.inst.get('owner_group') or '').gr_gid
        except KeyError:
            pass
        os.chown(chain_dir, pw.pw_uid, gid)
        os.chmod(chain_dir, 0o750)

    def roll_forward(self, plan, chain):
        rep = self.report
        stop = {'time': self.until} if self.until else None
        self.say('rolling %d journal file(s) forward from %s into %d database(s)' % (
            len(chain), os.path.basename(chain[0]), len(plan['databases'])))
        lines = _journal.restore_lines(chain[0], chain[-1] if not stop else None, redirects=(),
                                       locations=[plan['chain_dir']], stop=stop, files=chain,
                                       select=plan['databases'])
        res = _iris.run_script(self.inst, lines, _iris.default_run_as(self.inst), SESSION_TIMEOUT, runner=self.runner)
        jr = _journal.restore_result(res, stop)
        rep['point_reached'] = jr['point_reached']
        rep['journal_restore'] = {'outcome': jr['outcome'], 'ok': jr['ok'], 'message': jr['message'],
                                  'files_applied': jr['output']['complete_files']}
        rep['checks'].append({'check': 'journal restore', 'ok': jr['ok'], 'detail': jr['message']})
        if not jr['ok']:
            raise RestoreError('the journal restore stopped: %s; point reached %s. Next: the restore is rolled back; '
                               'find the missing or damaged journal file (journal_chain in the report), or restore '
                               'up to the point reached with --until' % (jr['message'], jr['point_reached']))
        self.did('rolled the journals forward to %s' % (jr['point_reached'],))

    def integrity(self, plan):
        rep = self.report
        res = _iris.run_script(self.inst, _journal.integrity_lines(plan['databases'], self.inst.get('flavour')),
                               _iris.default_run_as(self.inst), SESSION_TIMEOUT, runner=self.runner)
        ir = _journal.integrity_result(res)
        rep['integrity'] = {'ok': ir['ok'], 'message': ir['message'], 'errors': ir['output']['errors'][:20]}
        rep['checks'].append({'check': 'integrity check', 'ok': ir['ok'], 'detail': ir['message']})
        if not ir['ok']:
            raise RestoreError('the integrity check of the restored databases failed: %s. Next: the restore is '
                               'rolled back; the backup or a journal file is damaged: run irisops-backup check, '
                               'restore an older backup (--backup)' % ir['message'])
        self.did('integrity check of %d database(s) passed' % len(plan['databases']))

    # -- the end: success, rollback, recovery ---------------------------------------------------------------------
    def finish(self, state):
        """After the check: remove the staging and chain directories, report where the current (old) files are,
        remove the state file.  Runs again safely when a kill interrupted it."""
        rep = self.report
        self.step('cleanup', False)
        for d in list(state.get('staging') or []) + [state.get('chain_dir')]:
            if d and os.path.lexists(d):
                shutil.rmtree(d)
                self.did('removed %s' % d)
        rep['aside'] = [{'dir': u['dir'], 'aside': u['aside'], 'bytes': tree_bytes(u['aside'])}
                        for u in state.get('units') or [] if os.path.isdir(u['aside'])]
        for a in rep['aside']:
            rep['warnings'].append('the files %s had before the restore are in %s (%s): delete them (rm -rf %s) once '
                                   'the restored instance is checked' % (
                                       a['dir'], a['aside'], _human(a['bytes']), a['aside']))
        rep['status'] = 'success'
        self.save_report()
        self.step('done', False)
        os.unlink(self.state_path)
        self.state = None

    def save_report(self):
        path = os.path.join(self.state_dir, 'restore-%s.json' % self.run_id)
        try:
            _freeze.write_atomic(path, json.dumps(self.report, indent=1, sort_keys=True, default=str), 0o600)
            self.report['report_file'] = path
        except (IOError, OSError) as exc:
            self.report['warnings'].append('report not saved: %s' % exc)

    def rollback(self, state):
        """Put production back as it was: stop the instance when this restore started it (never rename under a
        running instance), undo the recorded renames in reverse order, remove the staging and chain directories,
        remove the state file.  Raises RestoreError, keeping the state file, when any of it is not possible."""
        self.rollback_failed = True      # until it completes: a failure here is not rolled back again
        ops = state.get('ops') or []
        if ops or state.get('started_instance'):
            status, raw = self.status()
            if status != _iris.STATUS_DOWN:
                if not state.get('started_instance'):
                    raise RestoreError('instance %s is %s (qlist: %r) although the interrupted restore %s had not '
                                       'started it: someone started it on partly moved directories. Next: stop it '
                                       '(`%s`) and run irisops-backup restore --instance %s --confirm %s '
                                       '--recover-only' % (self.instance, status, raw, state.get('run_id'),
                                                           self.stop_command(), self.instance, self.instance))
                self.step('rollback:stop', False)
                rc, out = self.control('stop')
                status, raw = self.status()
                if status != _iris.STATUS_DOWN:
                    raise RestoreError('instance %s did not stop (exit %s: %s; qlist: %r), so the current files '
                                       'were NOT put back (never under a running instance). Next: stop it with `%s '
                                       'force %s`, then run irisops-backup restore --instance %s --confirm %s '
                                       '--recover-only' % (self.instance, rc, out[-300:], raw,
                                                           os.path.basename(self.inst.get('control_cmd') or 'iris'),
                                                           self.instance, self.instance, self.instance))
                self.did('stopped instance %s (the restore had started it)' % self.instance)
        problems = []
        mounts = dict((u['aside'], u) for u in state.get('units') or [] if u.get('mount'))
        for i in range(len(ops) - 1, -1, -1):
            self.step('rollback:undo:%d' % i, False)
            op = ops[i]
            try:
                unit = mounts.get(op[1] if op[0] == 'mkdir' else os.path.dirname(op[2]))
                if unit is not None and state.get('started_instance'):
                    self.sweep(op, unit, ops)
                text = undo_op(op)
            except OSError as exc:
                problems.append('%s: %s' % (' -> '.join(op[1:]), exc))
                continue
            if text:
                self.did(text)
        if problems:
            raise RestoreError('could not put everything back: %s. Next: fix the cause, then run irisops-backup '
                               'restore --instance %s --confirm %s --recover-only (the state file %s lists every '
                               'rename)' % ('; '.join(problems), self.instance, self.instance, self.state_path))
        self.step('rollback:cleanup', False)
        for d in list(state.get('staging') or []) + [state.get('chain_dir')]:
            if d and os.path.lexists(d):
                shutil.rmtree(d)
                self.did('removed %s' % d)
        self.step('rollback:done', False)
        os.unlink(self.state_path)
        self.state = None
        self.rollback_failed = False
        if ops:
            self.did('production directories of %s are as they were before restore %s' % (
                self.instance, state.get('run_id')))

    def sweep(self, op, unit, ops):
        """Before an aside copy of a mount point is put back: what the restored instance wrote into the mount point
        itself after the swap (a new journal file, say) is moved into the staging directory, which is removed with
        it.  For a rename into the aside copy: the entry of that name in the mount point when the aside one exists
        too (the production one is the aside one).  For the creation of the aside copy (undone last): every entry
        that is neither production's (a name the swap moved aside) nor the restore's own."""
        grave = os.path.join(unit['staging'], 'written-after-swap')
        if op[0] == 'rename':
            victims = [op[1]] if os.path.lexists(op[1]) and os.path.lexists(op[2]) else []
        else:
            names = set(os.path.basename(o[1]) for o in ops if o[0] == 'rename' and os.path.dirname(o[2]) == op[1])
            victims = [os.path.join(unit['dir'], n) for n in sorted(os.listdir(unit['dir']))
                       if n not in names and not n.startswith(OWN_PREFIX)]
        for v in victims:
            if not os.path.isdir(grave):
                os.makedirs(grave, 0o700)
            dst = os.path.join(grave, os.path.basename(v))
            n = 0
            while os.path.lexists(dst):
                n += 1
                dst = os.path.join(grave, '%s.%d' % (os.path.basename(v), n))
            os.rename(v, dst)
            self.did('moved %s, written by the restored instance after the swap, to %s (removed with it)' % (v, dst))

    def recover(self, old):
        """An unfinished restore of this instance (its state file): finish it when it had been checked (the
        restored instance runs, rolled forward, its integrity checked: only the clean-up was missing), else roll it
        back.  Returns what was done."""
        if old.get('instance') != self.instance or old.get('format') != STATE_FORMAT:
            raise RestoreError('nothing restored: %s is not a restore state file of instance %s this engine can read. '
                               'Next: look at it, put back any directory it names by hand, then remove it' % (
                                   self.state_path, self.instance))
        self.say('found the unfinished restore %s (phase %s)' % (old.get('run_id'), old.get('phase')))
        self.state = old
        if old.get('phase') == COMMITTED:
            saved = (self.report['run_id'], self.report['started'])
            self.report.update(run_id=old.get('run_id'), backup_id=old.get('backup_id'),
                               point_reached=old.get('point_reached'), rto_s=old.get('rto_s'))
            self.finish(old)
            self.report['run_id'], self.report['started'] = saved
            text = 'restore %s had been checked when it was interrupted: finished it' % old.get('run_id')
            self.did(text)
            return {'action': 'finished', 'finished': True, 'run_id': old.get('run_id'), 'text': text}
        self.rollback(old)
        text = 'rolled back the interrupted restore %s (it had reached phase %s)' % (
            old.get('run_id'), old.get('phase'))
        self.did(text)
        return {'action': 'rolled back', 'finished': False, 'run_id': old.get('run_id'), 'phase': old.get('phase'),
                'text': text}


def _human(nbytes):
    if nbytes is None:
        return '?'
    value = float(nbytes)
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if value < 1024 or unit == 'TiB':
            return ('%d %s' % (value, unit)) if unit == 'B' else ('%.1f %s' % (value, unit))
        value /= 1024.0
    return '%d B' % nbytes


def restore_text(rep):
    out = ['irisops-backup restore of %s on %s: %s' % (rep['instance'], rep['host'], rep['status'].upper())]
    if rep.get('error'):
        out.append('FAILED: %s' % rep['error'])
    rec = rep.get('recovered')
    if rec:
        out.append('unfinished restore: %s' % rec.get('text'))
    unfinished = rep.get('unfinished')
    if unfinished:
        out.append('unfinished restore %s (phase %s, %s): a run will %s it first' % (
            unfinished.get('run_id'), unfinished.get('phase'), unfinished.get('state_file'), unfinished.get('action')))
    if rep.get('plan'):
        out.append('plan (--dry-run: nothing written):' if rep.get('status') == 'planned' else 'plan:')
        out += ['  %s' % line for line in rep['plan']]
    if rep.get('backup_id'):
        out.append('backup %s (run %s, taken %s), restore journal file %s' % (
            rep['backup_id'][:8], rep.get('backup_run_id') or '-', rep.get('backup_time') or '-',
            rep.get('restore_journal_file') or '-'))
    if rep.get('journal_chain'):
        out.append('journal chain: %s' % ', '.join('%s (%s)' % (c['file'], c['source'])
                                                   for c in rep['journal_chain']))
    if rep.get('point_reached') is not None or rep.get('journal_restore'):
        out.append('point reached: %s' % (rep.get('point_reached') or 'none'))
    for c in rep.get('checks') or []:
        out.append('  %s: %s %s' % (c['check'], 'ok' if c['ok'] else 'FAILED', c.get('detail') or ''))
    if rep.get('actions'):
        out.append('what was done, in order:')
        out += ['  %s' % a for a in rep['actions']]
    else:
        out.append('nothing was changed on this host')
    for a in rep.get('aside') or []:
        out.append('kept aside: %s (%s) - the files %s had before the restore' % (a['aside'], _human(a['bytes']),
                                                                                  a['dir']))
    if rep.get('rto_s') is not None:
        out.append('RTO %s s (restore start to instance up and checked)' % rep['rto_s'])
    for w in rep.get('warnings') or []:
        out.append('warning: %s' % w)
    return '\n'.join(out) + '\n'
