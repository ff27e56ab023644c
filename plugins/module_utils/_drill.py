# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
#
# Standard library only, no ansible import (irisops-backup runs a verbatim copy next to the other engine files).
"""Journal shipping and restore drills: the part of the backup engine that proves a backup restorable.

* ``irisops-backup journals`` (:func:`ship_journals`): copies every *completed* journal file of each instance (not
  the one IRIS is writing; ``--switch`` closes it first) into the repository as a restic snapshot tagged
  ``irisops-journal`` and ``instance=<NAME>``, records the newest shipped file, and writes its lag as a metric.
  Nothing is ever deleted or purged on the IRIS host.
* ``irisops-backup drill`` (:class:`Drill`): picks a backup from the catalogue (default the newest verified one of
  the source host), restores it and the shipped journals under a drill directory that cannot touch production
  (refused before anything is written when it overlaps a directory of any instance of this host), rolls the
  journals forward from the manifest's restore journal file into the restored databases (Journal.Restore with
  RedirectDatabase, through a dedicated drill instance: never a production instance), to the newest shipped journal
  or a requested point, runs the integrity check on the restored databases, and reports the backup, the point
  reached (never more than certain), the integrity result and the measured RTO (start of the restore to checked).
  The result joins the backup's catalogue entry (a small restic snapshot tagged ``irisops-drill``) and the metrics.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import shutil
import tempfile
import time

try:
    from ansible_collections.irisops.backup.plugins.module_utils import _freeze
    from ansible_collections.irisops.backup.plugins.module_utils import _iris
    from ansible_collections.irisops.backup.plugins.module_utils import _journal
    from ansible_collections.irisops.backup.plugins.module_utils import _restic
    from ansible_collections.irisops.backup.plugins.module_utils import _run
except ImportError:  # an on-host copy: the engine files side by side
    import _freeze  # pylint: disable=import-error
    import _iris  # pylint: disable=import-error
    import _journal  # pylint: disable=import-error
    import _restic  # pylint: disable=import-error
    import _run  # pylint: disable=import-error

__metaclass__ = type

JOURNAL_TAG = 'irisops-journal'
DRILL_TAG = 'irisops-drill'
#: Where the shipping job keeps what it shipped last, per instance.
SHIP_STATE_DIR = '/var/lib/irisops/journals'


class DrillError(Exception):
    """A failure that ends the drill; ``str()`` is the whole message (with its ``Next:``)."""


def _now():
    return time.time()


# ---------------------------------------------------------------------------------------------------------------
# Journal shipping
# ---------------------------------------------------------------------------------------------------------------

def current_journal(inst, run_as=None, runner=None, timeout=60):
    """The journal file the instance is writing (GetCurrentFileName), or None with the reason."""
    res = _iris.run_script(inst, _journal.current_file_lines(), run_as or _iris.default_run_as(inst), timeout,
                           runner=runner)
    path = _journal.parse_current_file(res.get('values') or {})
    if path:
        return path, None
    return None, _journal.interpret_run(res)[1]


def switch_journal(inst, run_as=None, runner=None, timeout=60):
    res = _iris.run_script(inst, _journal.switch_lines(), run_as or _iris.default_run_as(inst), timeout,
                           runner=runner)
    return _journal.parse_switch(res.get('values') or {}, res.get('stdout') or '')


def ship_journals(repo, cfg, host, instances, switch=False, state_dir=SHIP_STATE_DIR, runner=None):
    """Ship the completed journal files of each instance; returns ``{name: dict(shipped, newest, lag_s, snapshot,
    error)}``.  Every completed file is part of each shipping snapshot (restic stores an unchanged file once): the
    newest journal snapshot of an instance always holds the whole chain still on the host."""
    out = {}
    if not os.path.isdir(state_dir):
        os.makedirs(state_dir, 0o700)
    for inst in instances:
        name = inst['name']
        entry = out[name] = {'shipped': 0, 'newest': None, 'lag_s': None, 'snapshot': None, 'error': None}
        run_as = cfg.get('run_as') or None
        if switch:
            sw = switch_journal(inst, run_as=run_as, runner=runner)
            if not sw.get('switched'):
                entry['error'] = 'journal switch failed: %s' % sw
                continue
        current, why = current_journal(inst, run_as=run_as, runner=runner)
        if current is None:
            entry['error'] = 'cannot ask the current journal file: %s' % why
            continue
        files = _journal.list_completed_journals(inst.get('journal_dirs') or [], current)
        if not files:
            entry['newest'] = None
            continue
        with tempfile.NamedTemporaryFile('w', prefix='irisops-ship-', suffix='.list', delete=False) as f:
            f.write('\n'.join(files) + '\n')
            listing = f.name
        try:
            argv = repo.base + ['backup', '--json', '--host', host, '--tag', JOURNAL_TAG, '--tag',
                                'instance=%s' % name, '--files-from-verbatim', listing]
            rc, stdout, err = repo.run(argv, timeout=6 * 3600)
        finally:
            os.unlink(listing)
        summary, errors, _status = _restic.parse_backup_output(stdout)
        if rc != 0 or not summary:
            entry['error'] = 'restic backup of the journal files exited %s: %s. Next: %s' % (
                rc, (err or '').strip()[-300:], _restic.diagnose(rc, err))
            continue
        newest = files[-1]
        entry.update(shipped=len(files), newest=newest, snapshot=summary.get('snapshot_id'),
                     bytes_added=summary.get('data_added'))
        try:
            closed = os.path.getmtime(newest)
        except OSError:
            closed = _now()
        entry['newest_closed_epoch'] = closed
        entry['shipped_epoch'] = _now()
        entry['lag_s'] = round(max(_now() - closed, 0), 1)
        _freeze.write_atomic(os.path.join(state_dir, '%s.json' % _freeze.deadman_safe_name(name)),
                             json.dumps(entry, sort_keys=True), 0o600)
    return out


def journal_metrics_text(host, results):
    lines = ['# HELP irisops_journal_shipped_timestamp_seconds When the newest completed journal file of the instance '
             'was shipped into the repository.',
             '# TYPE irisops_journal_shipped_timestamp_seconds gauge',
             '# HELP irisops_journal_lag_seconds Age of the newest shipped journal file when it was shipped.',
             '# TYPE irisops_journal_lag_seconds gauge',
             '# HELP irisops_journal_ship_success 1 when the last shipping of the instance succeeded.',
             '# TYPE irisops_journal_ship_success gauge']
    for name, r in sorted(results.items()):
        lab = 'host="%s",instance="%s"' % (host, name)
        lines.append('irisops_journal_ship_success{%s} %d' % (lab, 0 if r.get('error') else 1))
        if r.get('shipped_epoch'):
            lines.append('irisops_journal_shipped_timestamp_seconds{%s} %d' % (lab, int(r['shipped_epoch'])))
        if r.get('lag_s') is not None:
            lines.append('irisops_journal_lag_seconds{%s} %.1f' % (lab, r['lag_s']))
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------------------------------------------
# Restore drill
# ---------------------------------------------------------------------------------------------------------------

def _inside(path, parent):
    path, parent = os.path.normpath(path), os.path.normpath(parent)
    return path == parent or path.startswith(parent.rstrip('/') + '/')


def overlap_problems(root, instances):
    """Texts for every directory of an instance on this host that the drill root overlaps (either way)."""
    problems = []
    for inst in instances:
        for role, d in _iris.instance_dirs(inst):
            if d and (_inside(d, root) or _inside(root, d)):
                problems.append('drill directory %s overlaps the %s directory %s of instance %s (%s)' % (
                    root, role, d, inst['name'], inst.get('status') or '?'))
    return problems


def restored_path(prod_dir, manifest, restore_root):
    """Where production directory ``prod_dir`` of the backup is after ``restic restore --target restore_root``:
    the volume whose directories hold it, its mount point inside the backup, the path below the origin's mount."""
    prod_dir = os.path.normpath(prod_dir)
    for vol in manifest.get('volumes') or []:
        origin = vol.get('origin_mountpoint')
        if not origin:
            continue
        if _inside(prod_dir, origin):
            rel = os.path.relpath(prod_dir, origin)
            return os.path.normpath(os.path.join(restore_root, vol['mountpoint'].lstrip('/'), rel))
    return None


class Drill(object):
    """One restore drill of one instance of a backup (see the module docstring)."""

    def __init__(self, repo, cfg, source_host, instance, backup_id=None, until=None, drill_instance=None,
                 root=None, keep=False, runner=None, emit=None):
        self.repo = repo
        self.cfg = cfg
        self.source_host = source_host
        self.instance = instance
        self.backup_id = backup_id
        self.until = until
        self.drill_instance_name = drill_instance or cfg.get('drill_instance')
        self.root = root or cfg.get('drill_root') or '/var/lib/irisops/drill'
        self.keep = keep
        self.runner = runner
        self.emit = emit or (lambda line: None)
        self.report = {'source_host': source_host, 'instance': instance, 'status': 'running',
                       'started': _freeze.now_iso(), 'checks': [], 'warnings': []}
        self.workdir = None
        self.we_started = False

    def say(self, text):
        self.emit('drill: %s' % text)

    def run(self):
        started = _now()
        try:
            self._run()
            self.report['status'] = 'success'
        except DrillError as exc:
            self.report.update(status='failed', error=str(exc))
        except Exception as exc:  # pylint: disable=broad-except  # report, clean up
            self.report.update(status='failed', error='unexpected %s: %s' % (type(exc).__name__, exc))
        finally:
            self.cleanup()
        self.report['finished'] = _freeze.now_iso()
        self.report['duration_s'] = round(_now() - started, 3)
        return self.report

    def _run(self):
        rep = self.report
        instances, errors = _iris.discover_instances()
        drill = _iris.find_instance(instances, self.drill_instance_name or '')
        if drill is None:
            raise DrillError('nothing restored: the drill instance %r is not installed on this host (known: %s). Next: '
                             'install a dedicated IRIS instance for drills on this host (no role installs one) and set '
                             'drill_instance (restore_drill_instance)'
                             % (self.drill_instance_name, ', '.join(i['name'] for i in instances) or 'none'))
        if self.until:
            try:
                _journal.horolog(self.until)
            except ValueError:
                raise DrillError('nothing restored: until %r is not a time. Next: give YYYY-MM-DD HH:MM:SS, the local '
                                 'time of the instance as its journal records it' % (self.until,))
        problems = overlap_problems(self.root, [i for i in instances if i is not drill])
        problems += overlap_problems(self.root, [drill]) if drill else []
        if problems:
            raise DrillError('nothing restored: %s. Next: choose a drill_root outside every instance\'s directories'
                             % '; '.join(problems))
        backup = self.pick_backup()
        manifest = backup['manifest']
        entry = (manifest.get('instances') or {}).get(self.instance)
        if not entry:
            raise DrillError('nothing restored: backup %s holds no instance %s (it holds %s)' % (
                backup['short_id'], self.instance, ', '.join(sorted(manifest.get('instances') or {})) or 'none'))
        rep.update(backup_id=backup['id'], backup_run_id=backup.get('run_id'), backup_time=backup.get('time'),
                   restore_journal_file=entry.get('journal_file'), marker_offset=entry.get('marker_offset'))
        if not os.path.isdir(self.root):
            # traversable (not listable) by the drill instance's owner, who reads the restored files below it
            os.makedirs(self.root, 0o711)
        self.workdir = tempfile.mkdtemp(prefix='drill-%s-' % self.instance, dir=self.root)
        # the work directory (mkdtemp: 0700, root's) belongs to the drill instance's owner, like the files in it
        self.chown_for(drill, [self.workdir])
        t0 = _now()
        # where the RTO goes, phase by phase (the benchmark tests/benchmarks/drill_rto.py prints it)
        phases = rep['rto_phases_s'] = {}
        mark = [t0]

        def phase_done(name):
            now = _now()
            phases[name] = round(now - mark[0], 3)
            mark[0] = now
        # 1. the backup
        restore_root = os.path.join(self.workdir, 'backup')
        self.say('restoring backup %s (run %s) into %s' % (backup['short_id'], backup.get('run_id'), restore_root))
        self.restic_restore(backup['id'], restore_root)
        phase_done('restore_backup')
        # 2. the shipped journals
        ship_root = os.path.join(self.workdir, 'journals')
        shipped = self.newest_journal_snapshot()
        if shipped is not None:
            self.restic_restore(shipped['id'], ship_root)
            rep['journal_snapshot'] = shipped['id'][:8]
        else:
            rep['warnings'].append('no shipped journals of %s in the repository: rolls forward only what the backup '
                                   'itself holds' % self.instance)
        # 3. the restored databases, owned by the drill instance's owner
        redirects = []
        skipped = set(os.path.normpath(d) for d in entry.get('not_journalled') or [])
        for dbname, prod in sorted((entry.get('databases') or {}).items()):
            if os.path.normpath(prod) in skipped:
                continue
            target = restored_path(prod, manifest, restore_root)
            if target is None or not os.path.isdir(target):
                raise DrillError('database %s (%s) is not in backup %s (restored to %s). Next: check that every '
                                 'database directory of %s is on a snapshotted LV' % (
                                     dbname, prod, backup['short_id'], target, self.instance))
            redirects.append((prod, target))
        if not redirects:   # a journal restore without a redirect would apply the journal to the production paths
            raise DrillError('nothing rolled forward: backup %s lists no journalled database of instance %s. Next: '
                             'check the manifest (irisops-backup list --json) and that the databases are journalled, '
                             'then take a new backup' % (backup['short_id'], self.instance))
        self.chown_for(drill, [restore_root, ship_root])
        phase_done('restore_journals')
        # 4. the journal chain from the manifest's restore file on
        first = entry.get('journal_file')
        # a file both shipped and in the backup: the shipped copy, which is complete (only completed files are
        # shipped); the backup's copy is the file as it was at the freeze - the file being written then, or the one a
        # switch at the freeze had just created, possibly still without its header
        # only this instance's journal directories: the backup holds every instance's (the same names, another
        # instance's files, which a journal restore refuses as not following this instance's chain); shipped files are
        # restored under their absolute path
        own = [os.path.normpath(d) for d in entry.get('journal_dirs') or [] if d] or \
            [os.path.dirname(os.path.normpath(first or ''))]
        dirs = []
        candidates = [os.path.join(ship_root, j.lstrip('/')) for j in own]
        candidates += [restored_path(j, manifest, restore_root) for j in own]
        for d in candidates:
            if d and os.path.isdir(d) and d not in dirs:
                dirs.append(d)
        shipped_prefix = os.path.join(ship_root, '')
        by_name = {}
        for f in _journal.list_completed_journals(dirs, None):
            name = os.path.basename(f)
            if name not in by_name or (f.startswith(shipped_prefix) and not by_name[name].startswith(shipped_prefix)):
                by_name[name] = f
        chain = [by_name[n] for n in sorted(by_name, key=lambda n: _journal.journal_key(n)[:3])]
        chain = _journal.journals_from(chain, os.path.basename(first or ''))
        if not chain:
            raise DrillError('the restore journal file %s of the backup is neither in the backup nor among the '
                             'shipped journals. Next: check the journal directories are on a snapshotted LV' % first)
        # the shipped directories first: a journal restore looking a file up by name takes the first directory's
        rep['journal_sources'] = dict((os.path.basename(f), 'shipped' if f.startswith(shipped_prefix) else 'backup')
                                      for f in chain)
        locations = sorted(set(os.path.dirname(f) for f in chain), key=lambda d: (not d.startswith(shipped_prefix), d))
        rep['journal_chain'] = [os.path.basename(f) for f in chain]
        stop = {'time': self.until} if self.until else None
        self.ensure_running(drill)
        phase_done('start_drill_instance')
        self.say('rolling %d journal file(s) forward from %s into %d database(s)' % (
            len(chain), os.path.basename(chain[0]), len(redirects)))
        lines = _journal.restore_lines(chain[0], chain[-1] if not stop else None, redirects=redirects,
                                       locations=locations, stop=stop, files=chain)
        res = _iris.run_script(drill, lines, _iris.default_run_as(drill), 3600, runner=self.runner)
        jr = _journal.restore_result(res, stop)
        rep['point_reached'] = jr['point_reached']
        rep['journal_restore'] = {'outcome': jr['outcome'], 'ok': jr['ok'], 'message': jr['message'],
                                  'files_applied': jr['output']['complete_files']}
        rep['checks'].append({'check': 'journal restore', 'ok': jr['ok'], 'detail': jr['message']})
        phase_done('journal_restore')
        # 5. integrity of the restored databases
        ires = _iris.run_script(drill, _journal.integrity_lines([t for _s, t in redirects], drill.get('flavour')),
                                _iris.default_run_as(drill), 3600, runner=self.runner)
        ir = _journal.integrity_result(ires)
        rep['integrity'] = {'ok': ir['ok'], 'message': ir['message'], 'errors': ir['output']['errors'][:20]}
        rep['checks'].append({'check': 'integrity check', 'ok': ir['ok'], 'detail': ir['message']})
        phase_done('integrity_check')
        rep['rto_s'] = round(_now() - t0, 3)
        rep['restored_databases'] = dict((s, t) for s, t in redirects)
        if not jr['ok']:
            raise DrillError('the journal restore stopped: %s; point reached %s. Next: look for the missing or '
                             'damaged journal file in the repository (irisops-backup journals ships them)' % (
                                 jr['message'], jr['point_reached']))
        if not ir['ok']:
            raise DrillError('the integrity check of the restored databases failed: %s. Next: the backup or a '
                             'journal file is damaged; run irisops-backup check and take a new backup' % ir['message'])

    def pick_backup(self):
        snaps = [s for s in self.repo.snapshots(host=self.source_host)
                 if _restic.snapshot_tags(s).get(_restic.VERIFIED_TAG)]
        if self.backup_id:
            snaps = [s for s in snaps if (s.get('id') or '').startswith(self.backup_id)
                     or self.backup_id in (_restic.snapshot_tags(s).get('run') or [])]
        if not snaps:
            raise DrillError('nothing restored: no verified backup of host %s%s in the repository. Next: '
                             'irisops-backup list --all-hosts' % (self.source_host, (' matching %s' % self.backup_id)
                                                                  if self.backup_id else ''))
        snap = sorted(snaps, key=lambda s: s.get('time') or '')[-1]
        text = self.repo.dump(snap['id'], os.path.join(snap['paths'][0], '.irisops', 'manifest.json'))
        try:
            manifest = json.loads(text) if text else None
        except ValueError:
            manifest = None
        if not manifest:
            raise DrillError('nothing restored: backup %s has no readable manifest (.irisops/manifest.json). Next: '
                             'drill another backup (backup=, irisops-backup list shows them) and take a new one'
                             % snap['id'][:8])
        return {'id': snap['id'], 'short_id': snap['id'][:8], 'time': snap.get('time'),
                'run_id': (_restic.snapshot_tags(snap).get('run') or [None])[0], 'manifest': manifest}

    def newest_journal_snapshot(self):
        argv = _restic.snapshots_argv(self.repo.base, host=self.source_host,
                                      tags=['%s,instance=%s' % (JOURNAL_TAG, self.instance)])
        rc, out, err = self.repo.run(argv, timeout=600)
        snaps = _restic.parse_snapshots(out) if rc == 0 else None
        if not snaps:
            return None
        return sorted(snaps, key=lambda s: s.get('time') or '')[-1]

    def restic_restore(self, snap_id, target):
        argv = _restic.restore_argv(self.repo.base, snap_id, target)
        rc, out, err = self.repo.run(argv, timeout=6 * 3600)
        if rc != 0:
            raise DrillError('restic restore of %s failed (exit %s): %s. Next: %s; restic check --read-data shows '
                             'which pack is damaged' % (snap_id[:8], rc, (err or '').strip()[-500:],
                                                        _restic.diagnose(rc, err)))

    def chown_for(self, drill, roots):
        import pwd
        owner = drill.get('owner_user') or drill.get('manager_user')
        try:
            pw = pwd.getpwnam(owner)
        except (KeyError, TypeError):
            return
        for root in roots:
            for dirpath, dirnames, names in os.walk(root):
                for n in [dirpath] + [os.path.join(dirpath, x) for x in dirnames + names]:
                    try:
                        os.lchown(n, pw.pw_uid, pw.pw_gid)
                    except OSError:
                        pass

    def ensure_running(self, drill):
        if drill.get('ready'):
            return
        control = drill.get('control_cmd') or 'iris'
        rc, out, err = _run.run([control, 'start', drill['name'], 'quietly'], timeout=600)
        if rc != 0:
            raise DrillError('cannot start the drill instance %s: %s. Next: start it by hand (iris start %s) and read '
                             'its messages.log' % (drill['name'], (err or out).strip(), drill['name']))
        self.we_started = True
        self.report['drill_instance_started'] = True

    def cleanup(self):
        if self.we_started:
            _run.run([self._control(), 'stop', self.drill_instance_name, 'quietly'], timeout=600)
        if self.workdir and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.report['removed'] = self.workdir

    def _control(self):
        instances, _e = _iris.discover_instances()
        inst = _iris.find_instance(instances, self.drill_instance_name or '')
        return (inst or {}).get('control_cmd') or 'iris'


def record_drill(repo, report, host):
    """Join the drill's result to the backup's catalogue entry: a tiny restic snapshot tagged irisops-drill."""
    payload = json.dumps(report, sort_keys=True, default=str)
    argv = repo.base + ['backup', '--host', host, '--tag', DRILL_TAG, '--tag', 'run=%s' % report.get('backup_run_id'),
                        '--tag', 'instance=%s' % report['instance'], '--tag', 'result=%s' % report['status'],
                        '--stdin', '--stdin-filename', 'drill-%s.json' % report['instance']]
    rc, out, err = repo.run(argv, data=payload, timeout=600)
    return rc == 0


def drill_metrics_text(host, report):
    lab = 'host="%s",instance="%s"' % (host, report['instance'])
    lines = ['# HELP irisops_drill_last_run_timestamp_seconds When the last restore drill of the instance ended.',
             '# TYPE irisops_drill_last_run_timestamp_seconds gauge',
             'irisops_drill_last_run_timestamp_seconds{%s} %d' % (lab, int(_now())),
             '# HELP irisops_drill_last_success 1 when the last restore drill of the instance succeeded.',
             '# TYPE irisops_drill_last_success gauge',
             'irisops_drill_last_success{%s} %d' % (lab, 1 if report['status'] == 'success' else 0)]
    if report.get('rto_s') is not None:
        lines += ['# HELP irisops_drill_rto_seconds Measured restore time of the last drill (restore to checked).',
                  '# TYPE irisops_drill_rto_seconds gauge',
                  'irisops_drill_rto_seconds{%s} %.3f' % (lab, report['rto_s'])]
    if report['status'] == 'success':
        lines += ['# HELP irisops_drill_last_success_timestamp_seconds When the instance was last proved restorable.',
                  '# TYPE irisops_drill_last_success_timestamp_seconds gauge',
                  'irisops_drill_last_success_timestamp_seconds{%s} %d' % (lab, int(_now()))]
    return '\n'.join(lines) + '\n'


def drill_text(rep):
    out = ['irisops-backup drill of %s from host %s: %s' % (rep['instance'], rep['source_host'], rep['status'].upper())]
    if rep.get('error'):
        out.append('FAILED: %s' % rep['error'])
    out.append('backup %s (run %s, taken %s), restore journal file %s (marker offset %s)' % (
        (rep.get('backup_id') or '-')[:8], rep.get('backup_run_id') or '-', rep.get('backup_time') or '-',
        rep.get('restore_journal_file') or '-', rep.get('marker_offset') if rep.get('marker_offset') is not None
        else '-'))
    out.append('journal chain: %s' % (', '.join(rep.get('journal_chain') or []) or '-'))
    out.append('point reached: %s' % (rep.get('point_reached') or 'none'))
    for c in rep.get('checks') or []:
        out.append('  %s: %s %s' % (c['check'], 'ok' if c['ok'] else 'FAILED', c.get('detail') or ''))
    rto = rep.get('rto_s') if rep.get('rto_s') is not None else '-'
    out.append('RTO %s s (restore start to databases checked)%s' % (rto, (': %s' % ', '.join(
        '%s %.1f s' % (k.replace('_', ' '), v) for k, v in rep['rto_phases_s'].items()))
        if rep.get('rto_s') is not None and rep.get('rto_phases_s') else ''))
    for w in rep.get('warnings') or []:
        out.append('warning: %s' % w)
    return '\n'.join(out) + '\n'
