# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The real restore (_restore.py, ``irisops-backup restore``) against a fake IRIS host and a REAL restic repository.

The host (:class:`RestoreHost`, a FakeHost) keeps the instance's status in a file, so that a restore run in a
subprocess and killed there leaves it for the next run: ``iris qlist``, ``iris start`` (which, like IRIS, switches to
a new journal file in the restored journal directory: a file that must never be rolled forward), ``iris stop`` and
the two scripts the restore runs, Journal.Restore (follows the ``prev=`` links of the headers, applies ``SET <dir>
<value>`` records to ``<dir>/IRIS.DAT``) and the integrity check (a database reading ``CORRUPT`` has errors).

The world (:func:`build_world`): an instance IRIS with IRISSYS in ``irissys/mgr``, USER and APP on the ``data``
volume, journals on the ``jrn`` volume; a verified backup taken at a freeze (journal switched to .002), journals
.001-.003 shipped, production then wrote .004 and .005 (every journalled database at gen=4), and USER got damaged.
A restore brings back the backup and rolls forward to gen=4.

The kill test generates the list of steps from the engine (STEP_HOOK, in a run that is not killed), kills a
restore in a subprocess with SIGKILL at each of them, and checks what the next run finds and does.
"""

from __future__ import absolute_import, division, print_function

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from ansible_collections.irisops.backup.plugins.module_utils import _backup
from ansible_collections.irisops.backup.plugins.module_utils import _freeze
from ansible_collections.irisops.backup.plugins.module_utils import _iris
from ansible_collections.irisops.backup.plugins.module_utils import _restore
from ansible_collections.irisops.backup.plugins.module_utils import _run
from ansible_collections.irisops.backup.tests.unit.plugins.iris_fakes import FakeHost, FakeInstance

__metaclass__ = type

RESTIC = shutil.which('restic')
pytestmark = pytest.mark.skipif(RESTIC is None, reason='restic is not installed (tests/setup.sh installs it)')

HOST = 'iris01'
DAY = '20261207'
RUNNING = 'running, since Mon Dec  7 10:00:00 2026'
DOWN = 'down, last used Mon Dec  7 11:00:00 2026'
JOURNALLED = ('sys', 'user', 'app')
# ---------------------------------------------------------------------------------------------------------------
# The fake host
# ---------------------------------------------------------------------------------------------------------------


def _load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (IOError, OSError, ValueError):
        return {}


def _update(path, **kw):
    data = _load(path)
    data.update(kw)
    with open(path + '.tmp', 'w') as f:
        json.dump(data, f)
    os.rename(path + '.tmp', path)


def jname(n):
    return '%s.%03d' % (DAY, n)


class World(object):
    """Paths of one test world under ``base``."""

    def __init__(self, base):
        self.base = str(base)
        self.root = os.path.join(self.base, 'host')
        self.install = os.path.join(self.root, 'irissys')
        self.mgr = os.path.join(self.install, 'mgr')
        self.local = os.path.join(self.mgr, 'irislocaldata')
        self.jrn2 = os.path.join(self.mgr, 'journal2')
        self.data = os.path.join(self.root, 'data')
        self.jrn = os.path.join(self.root, 'jrn')
        self.db = {'sys': self.mgr, 'user': os.path.join(self.data, 'user'), 'app': os.path.join(self.data, 'app'),
                   'local': self.local}
        self.mnt = os.path.join(self.base, 'mnt')
        self.repo = os.path.join(self.base, 'repo')
        self.pw = os.path.join(self.base, 'pw')
        self.cache = os.path.join(self.base, 'cache')
        self.state_dir = os.path.join(self.base, 'restore-state')
        self.run_dir = os.path.join(self.base, 'run')
        self.fakehost = os.path.join(self.base, 'fakehost.json')
        self.calls = os.path.join(self.base, 'calls.jsonl')
        self.pristine = os.path.join(self.base, 'host.pristine')
        self.mounts = []           # directories the restore is told are mount points

    @property
    def units(self):
        return [self.data + '/app', self.data + '/user', self.mgr, self.jrn]

    def cfg(self):
        raw = {'repository': self.repo, 'repository_password_file': self.pw, 'restic_cache_dir': self.cache,
               'host': HOST, 'mount_root': self.mnt, 'drill_root': os.path.join(self.base, 'drill')}
        cfg, errors = _backup.validate_config(raw)
        assert not errors, errors
        return cfg

    def env(self):
        return dict(os.environ, RESTIC_PASSWORD_FILE=self.pw, RESTIC_CACHE_DIR=self.cache)

    def restic(self, *args):
        return subprocess.run([RESTIC, '--repo', self.repo] + list(args), env=self.env(), check=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True).stdout

    def calls_of(self, kind=None):
        out = []
        if os.path.exists(self.calls):
            with open(self.calls) as f:
                out = [json.loads(line) for line in f if line.strip()]
        return [c for c in out if kind is None or c['kind'] == kind]

    def reset(self):
        """Production as it was when the world was built (new inodes), the instance down, no restore state."""
        if os.path.exists(self.root):
            shutil.rmtree(self.root)
        shutil.copytree(self.pristine, self.root, symlinks=True)
        for d in (self.state_dir, self.run_dir):
            shutil.rmtree(d, ignore_errors=True)
        for f in (self.calls,):
            if os.path.exists(f):
                os.unlink(f)
        _update(self.fakehost, status=DOWN, start_fail=False, journal_fail=False, integrity_fail=False)


class RestoreInstance(FakeInstance):
    """The instance IRIS of a World, its status kept in a file (shared with a subprocess)."""

    def __init__(self, world):
        self.world = world
        super(RestoreInstance, self).__init__('IRIS', install_dir=world.install, status=None, manager_user='root',
                                              owner_user='irisusr-test-none')

    @property
    def status(self):
        return _load(self.world.fakehost).get('status') or DOWN

    @status.setter
    def status(self, value):
        if value is not None:
            _update(self.world.fakehost, status=value)

    def cpf(self):
        w = self.world
        return ('[ConfigFile]\nVersion=%s\n\n[Databases]\nIRISSYS=%s/\nUSER=%s/\nAPP=%s/\nIRISLOCALDATA=%s/\n\n'
                '[Journal]\nAlternateDirectory=%s/\nBackupsBeforePurge=2\nCurrentDirectory=%s/\nDaysBeforePurge=2\n'
                % (self.version, w.mgr, w.db['user'], w.db['app'], w.local, w.jrn2, w.jrn))


def _q(text):
    return text.replace('""', '"')


def _header_prev(path):
    with open(path) as f:
        first = f.readline()
    m = re.match(r'FAKEJRN prev=(\S*)', first)
    return m.group(1) if m else None


class RestoreHost(FakeHost):
    """FakeHost plus iris start/stop and the journal restore and integrity scripts (see the module docstring)."""

    def __init__(self, world):
        self.world = world
        self.inst = RestoreInstance(world)
        super(RestoreHost, self).__init__([self.inst], has_ccontrol=False)

    def flag(self, name):
        return bool(_load(self.world.fakehost).get(name))

    def log(self, **rec):
        with open(self.world.calls, 'a') as f:
            f.write(json.dumps(rec) + '\n')

    def __call__(self, argv, data=None, timeout=None):
        prog = argv[0].rsplit('/', 1)[-1]
        if prog == 'iris' and len(argv) > 2 and argv[1] in ('start', 'stop', 'force'):
            return self.control(argv[1])
        return super(RestoreHost, self).__call__(argv, data, timeout)

    def control(self, action):
        self.log(kind=action)
        if action == 'start':
            if self.flag('start_fail'):
                return 1, '', 'Instance IRIS: write daemon failed to start\n'
            if not self.inst.status.startswith('running'):
                self.inst.status = RUNNING
                # like IRIS: a new journal file in the journal directory the instance has now (the restored one)
                jrn = self.world.jrn
                names = sorted(n for n in os.listdir(jrn) if re.match(r'^\d{8}\.\d{3}$', n))
                new = jname(int(names[-1][-3:]) + 1 if names else 1)
                with open(os.path.join(jrn, new), 'w') as f:
                    f.write('FAKEJRN prev=%s\nSET %s/ WRONG-new-timeline\n' % (
                        names[-1] if names else '', self.world.db['user']))
            return 0, '', ''
        self.inst.status = DOWN
        return 0, '', ''

    def _session(self, name, rest, data, timeout, run_as, flavour):
        if len(rest) > 2:
            return super(RestoreHost, self)._session(name, rest, data, timeout, run_as, flavour)
        if not self.inst.status.startswith('running'):
            return 1, '<IRIS Startup Error>: instance %s is not running\n' % name, ''
        if '##Class(Journal.Restore).%New()' in data:
            return self.journal_restore(data)
        if 'CheckList^Integrity' in data:
            return self.integrity(data)
        return 1, '<SYNTAX>\n', ''

    def journal_restore(self, data):
        first = _q(re.search(r'Set r\.FirstFile="((?:[^"]|"")*)"', data).group(1))
        m = re.search(r'Set r\.LastFile="((?:[^"]|"")*)"', data)
        last = _q(m.group(1)) if m else None
        locations = [_q(x) for x in re.findall(r'Do r\.UseJournalLocation\("((?:[^"]|"")*)"\)', data)]
        select = [_q(x) for x in re.findall(r'r\.SelectUpdates\("((?:[^"]|"")*)"\)', data)]
        stop = re.search(r'restmode=\(\(\$Piece\(time,","\)\*86400\+\$Piece\(time,",",2\)\)\'>(\d+)\)', data)
        cands = {}
        for d in locations + [os.path.dirname(first)] + ([os.path.dirname(last)] if last else []):
            for n in sorted(os.listdir(d)) if os.path.isdir(d) else []:
                if re.match(r'^\d{8}\.\d{3}$', n) and n not in cands:
                    cands[n] = os.path.join(d, n)
        files = [first]
        out = ['Journal file being applied: %s' % first]
        gap = None
        while not (last and os.path.basename(files[-1]) == os.path.basename(last)):
            nxt = [p for n, p in sorted(cands.items()) if _header_prev(p) == os.path.basename(files[-1])]
            if not nxt:
                later = [n for n in cands if n > os.path.basename(files[-1])]
                if last or later:
                    gap = 'the journal file after %s is missing' % os.path.basename(files[-1])
                break
            files.append(nxt[0])
        applied = []
        for i, f in enumerate(files):
            if self.flag('journal_fail') and i == 1:
                gap = 'fake damage in %s' % f
                break
            with open(f) as fh:
                for line in fh.read().splitlines()[1:]:
                    parts = line.split()
                    if len(parts) != 3 or parts[0] != 'SET':
                        continue
                    if select and parts[1] not in select:
                        continue
                    with open(os.path.join(parts[1], 'IRIS.DAT'), 'w') as db:
                        db.write(parts[2] + '\n')
            applied.append(f)
            out += [f, '  50.00% 100.00%']
        self.log(kind='journal_restore', first=first, last=last, locations=locations, select=select,
                 applied=applied, stop=int(stop.group(1)) if stop else None)
        if gap:
            out += ['[Journal restore aborted at %s 10:00:00]' % DAY, 'IRISOPS|restore.run|0|ERROR #1105: %s' % gap,
                    'IRISOPS|end|1']
            return 3, '\n'.join(out) + '\n', ''
        out += ['[Journal restore completed at %s 10:00:00]' % DAY, '', 'The following databases have been updated:',
                ''] + ['%d. %s' % (i, d) for i, d in enumerate(select, 1)] + ['IRISOPS|restore.run|1|', 'IRISOPS|end|1']
        return 5, '\n'.join(out) + '\n', ''

    def integrity(self, data):
        dirs = [_q(x) for x in re.findall(r'"((?:[^"]|"")*)"', re.search(r'\$ListBuild\((.*?)\),0,', data).group(1))]
        out, bad = [], []
        for d in dirs:
            out.append('---Directory %s---' % d)
            try:
                with open(os.path.join(d, 'IRIS.DAT')) as f:
                    content = f.read()
            except (IOError, OSError):
                content = 'CORRUPT (missing)'
            if content.startswith('CORRUPT') or self.flag('integrity_fail'):
                out += ['Error: %sIRIS.DAT: block 3: checksum mismatch (torn block)' % d,
                        'Errors were found in this directory.']
                bad.append(d)
            else:
                out.append('No Errors were found in this directory.')
        self.log(kind='integrity', dirs=dirs)
        if bad:
            out += ['Errors were found.', 'IRISOPS|integrity.check|0|ERROR #1107: Integrity check found errors',
                    'IRISOPS|end|1']
            return 3, '\n'.join(out) + '\n', ''
        out += ['No Errors were found.', 'IRISOPS|integrity.check|1|', 'IRISOPS|end|1']
        return 5, '\n'.join(out) + '\n', ''


def install_fakes(world, patch):
    """Make ``world``'s host this process's command line (``patch(obj, name, value)``: monkeypatch.setattr or
    setattr)."""
    host = RestoreHost(world)
    patch(_iris, 'subprocess_runner', host)
    patch(_iris, 'find_executable', lambda name, which=None, extra_dirs=None: host.which(name))
    patch(_iris, '_read_text', host.read_file)
    patch(_restore, 'is_mount', lambda p: os.path.normpath(p) in world.mounts)
    return host


# ---------------------------------------------------------------------------------------------------------------
# The world: production, a verified backup with its manifest, shipped journals
# ---------------------------------------------------------------------------------------------------------------

def _write(path, text):
    d = os.path.dirname(path)
    if not os.path.isdir(d):
        os.makedirs(d)
    with open(path, 'w') as f:
        f.write(text)


def _journal(world, n, records, prev=True):
    path = os.path.join(world.jrn, jname(n))
    with open(path, 'a') as f:
        if f.tell() == 0:
            f.write('FAKEJRN prev=%s\n' % (jname(n - 1) if prev and n > 1 else ''))
        for line in records:
            f.write(line + '\n')
    return path


def _gen(world, g):
    """A write cycle: every journalled database at generation g, journalled."""
    recs = []
    for key in JOURNALLED:
        _write(os.path.join(world.db[key], 'IRIS.DAT'), 'gen=%d\n' % g)
        recs.append('SET %s/ gen=%d' % (world.db[key], g))
    _write(os.path.join(world.local, 'IRIS.DAT'), 'local-%d\n' % g)
    return recs


@pytest.fixture(scope='session')
def template_repo(tmp_path_factory):
    base = tmp_path_factory.mktemp('restore-restic-template')
    (base / 'pw').write_text('secret\n')
    subprocess.run([RESTIC, '--repo', str(base / 'repo'), 'init', '--repository-version', '2'],
                   env=dict(os.environ, RESTIC_PASSWORD_FILE=str(base / 'pw')), check=True, stdout=subprocess.DEVNULL)
    return str(base / 'repo')


def build_world(base, template_repo):
    w = World(base)
    os.makedirs(w.base, exist_ok=True)
    shutil.copytree(template_repo, w.repo)
    _write(w.pw, 'secret\n')
    for d in (w.jrn, w.jrn2, w.data):
        os.makedirs(d)
    _write(os.path.join(w.mgr, 'messages.log'), 'production log before the backup\n')
    _journal(w, 1, _gen(w, 0))
    # the freeze: the journal switched to .002, the marker is its first record; the snapshot is taken now
    _journal(w, 2, ['MARK ExternalFreeze text=irisops-backup r1'])
    vols = []
    for lv, origin in (('sys', w.install), ('data', w.data), ('jrn', w.jrn)):
        mnt = os.path.join(w.mnt, 'vg', lv)
        shutil.copytree(origin, mnt, symlinks=True)
        vols.append({'vg': 'vg', 'lv': lv, 'snapshot': lv + '_irisops_bkp', 'mountpoint': mnt,
                     'origin_mountpoint': origin})
    manifest = {'format': 1, 'run_id': 'r1', 'host': HOST, 'mount_root': w.mnt, 'volumes': vols, 'instances': {
        'IRIS': {'databases': {'IRISSYS': w.mgr, 'USER': w.db['user'], 'APP': w.db['app'], 'IRISLOCALDATA': w.local},
                 'journal_dirs': [w.jrn, w.jrn2], 'journal_file': os.path.join(w.jrn, jname(2)),
                 'marker_offset': 25, 'not_journalled': [w.local + '/'], 'install_dir': w.install,
                 'wij_dir': None}}}
    _write(os.path.join(w.mnt, '.irisops', 'manifest.json'), json.dumps(manifest))
    w.restic('backup', '-q', '--host', HOST, '--tag', 'irisops', '--tag', 'run=r1', '--tag', 'instance=IRIS', w.mnt)
    snap = json.loads(w.restic('snapshots', '--json'))[0]
    w.restic('tag', '-q', '--add', 'verified', snap['id'])
    shutil.rmtree(w.mnt)
    # production goes on: .002 fills up, .003; these three are shipped; then .004 and .005
    _journal(w, 2, _gen(w, 1))
    _journal(w, 3, _gen(w, 2))
    w.restic('backup', '-q', '--host', HOST, '--tag', 'irisops-journal', '--tag', 'instance=IRIS',
             *[os.path.join(w.jrn, jname(n)) for n in (1, 2, 3)])
    _journal(w, 4, _gen(w, 3))
    _journal(w, 5, _gen(w, 4))
    _write(os.path.join(w.mgr, 'messages.log'), 'production log before the restore\n')
    _write(os.path.join(w.db['user'], 'IRIS.DAT'), 'CORRUPT\n')     # why we restore
    shutil.copytree(w.root, w.pristine, symlinks=True)
    _update(w.fakehost, status=DOWN)
    return w


@pytest.fixture(scope='module')
def built(tmp_path_factory, template_repo):
    return build_world(tmp_path_factory.mktemp('restore-world'), template_repo)


@pytest.fixture
def world(built, monkeypatch):
    built.reset()
    built.mounts = []
    install_fakes(built, monkeypatch.setattr)
    return built


def restore(world, replay=None, **kw):
    """A Restore of ``world``'s instance; ``replay``: a directory where ReplayRestic keeps restic's results."""
    kw.setdefault('confirm', 'IRIS')
    kw.setdefault('state_dir', world.state_dir)
    kw.setdefault('host', HOST)
    kw.setdefault('backup_lock', _backup.RunLock(_freeze.secure_dir(world.run_dir)))
    cfg = world.cfg()
    repo = _backup.Repository(cfg)
    if replay:
        repo.runner = ReplayRestic(replay, repo.env)
    return _restore.Restore(repo, cfg, kw.pop('instance', 'IRIS'), **kw)


class ReplayRestic(object):
    """restic for the kill loop: the first time an argument list is seen, restic itself runs and its output (and,
    for ``restore``, the tree it wrote below --target, metadata included) is kept in ``cache``; the same call later
    gets the same output and tree.  The repository does not change between the runs of the loop (a restore only
    reads it), so the replay is what restic would do, in milliseconds instead of the key derivation of every call."""

    def __init__(self, cache, env):
        self.cache = cache
        self.env = env

    def __call__(self, argv, data=None, timeout=None):
        argv = list(argv)
        target = None
        key = list(argv)
        if 'restore' in argv and '--target' in argv:
            i = argv.index('--target')
            target = argv[i + 1]
            key[i + 1] = '<target>'
        name = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:24]
        meta, tree = os.path.join(self.cache, name + '.json'), os.path.join(self.cache, name + '.tree')
        if os.path.exists(meta):
            with open(meta) as f:
                rc, out, err = json.load(f)
            if target and os.path.isdir(tree):
                shutil.copytree(tree, target, symlinks=True, dirs_exist_ok=True)
            return rc, out, err
        rc, out, err = _run.run(argv, data=data, timeout=timeout, env=self.env)
        if not os.path.isdir(self.cache):
            os.makedirs(self.cache)
        if target and rc == 0:
            shutil.copytree(target, tree, symlinks=True)
        with open(meta + '.tmp', 'w') as f:
            json.dump([rc, out, err], f)
        os.rename(meta + '.tmp', meta)
        return rc, out, err


# ---------------------------------------------------------------------------------------------------------------
# Fingerprints: what "production byte-identical" means here
# ---------------------------------------------------------------------------------------------------------------

def fingerprint(top, skip_own=False):
    """Every entry below ``top``: relative path, type, mode, and for files size, mtime, inode and content hash (a
    rename keeps the inode: a file that was copied back would differ).  ``skip_own``: leave out the restore's own
    ``.irisops-*`` entries directly in ``top`` (a mount point holds them)."""
    out = {}
    for dirpath, dirnames, names in os.walk(top):
        if skip_own and dirpath == top:
            dirnames[:] = [d for d in dirnames if not d.startswith(_restore.OWN_PREFIX)]
            names = [n for n in names if not n.startswith(_restore.OWN_PREFIX)]
        for n in dirnames + names:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, top)
            if os.path.isdir(p) and not os.path.islink(p):
                out[rel] = ('dir', st.st_mode)
            else:
                with open(p, 'rb') as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                out[rel] = ('file', st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino, digest)
    return out


def production(world):
    return dict((u, fingerprint(u, skip_own=u in world.mounts)) for u in world.units)


def leftovers(world):
    """The restore's directories left anywhere in the world, except the aside copies."""
    found = []
    for dirpath, dirnames, _names in os.walk(world.root):
        for d in dirnames:
            if d.startswith(_restore.OWN_PREFIX) and not d.startswith(_restore.ASIDE_INFIX):
                found.append(os.path.join(dirpath, d))
            if _restore.STAGING_INFIX in d or _restore.CHAIN_INFIX in d:
                found.append(os.path.join(dirpath, d))
    return sorted(set(found))


def asides(world):
    """{unit: aside directory} of every aside copy in the world."""
    out = {}
    for u in world.units:
        parent, base = (u, '') if u in world.mounts else os.path.split(u)
        for n in os.listdir(parent):
            if n.startswith((base + _restore.ASIDE_INFIX) if base else _restore.ASIDE_INFIX):
                out.setdefault(u, []).append(os.path.join(parent, n))
    return out


def db(world, key):
    with open(os.path.join(world.db[key], 'IRIS.DAT')) as f:
        return f.read().strip()


def assert_restored(world, original):
    """The restore completed: the databases rolled forward to gen=4 from the host's journal files (never from the
    new file the started instance wrote), IRISLOCALDATA as in the backup, the backup's journal files and log in
    place, each unit's previous contents in exactly one aside copy that is the original production, byte for byte
    (same inodes), nothing else left over."""
    for key in JOURNALLED:
        assert db(world, key) == 'gen=4', (key, db(world, key))
    assert db(world, 'local') == 'local-0'
    with open(os.path.join(world.mgr, 'messages.log')) as f:
        assert f.read() == 'production log before the backup\n'
    with open(os.path.join(world.jrn, jname(2))) as f:
        assert f.read() == 'FAKEJRN prev=%s\nMARK ExternalFreeze text=irisops-backup r1\n' % jname(1)
    found = asides(world)
    assert sorted(found) == sorted(world.units), found
    for u, paths in found.items():
        assert len(paths) == 1, paths
        assert fingerprint(paths[0]) == original[u], u
    assert leftovers(world) == []
    assert not os.path.exists(os.path.join(world.state_dir, 'IRIS.json'))
    assert _load(world.fakehost)['status'] == RUNNING


# ---------------------------------------------------------------------------------------------------------------
# Pure parts
# ---------------------------------------------------------------------------------------------------------------

def test_covering_dirs_and_snapshot_path():
    assert _restore.covering_dirs(['/a/b', '/a', '/a-b', '/c/d/', '/c/d/e', None]) == ['/a', '/a-b', '/c/d']
    manifest = {'volumes': [{'mountpoint': '/m/vg/root', 'origin_mountpoint': '/'},
                            {'mountpoint': '/m/vg/db', 'origin_mountpoint': '/iris/db'}]}
    assert _restore.snapshot_path('/iris/db/user', manifest) == '/m/vg/db/user'      # the deepest origin wins
    assert _restore.snapshot_path('/iris/db', manifest) == '/m/vg/db'
    assert _restore.snapshot_path('/usr/irissys/mgr', manifest) == '/m/vg/root/usr/irissys/mgr'
    assert _restore.snapshot_path('/x', {'volumes': []}) is None


def test_the_longest_copy_of_a_journal_file_wins(tmp_path):
    def f(name, size, where):
        p = tmp_path / where / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b'x' * size)
        return str(p)
    copies = [(f('a.001', 10, 'host'), 'host'), (f('a.001', 10, 'ship'), 'shipped'), (f('a.001', 4, 'bk'), 'backup'),
              (f('a.002', 5, 'host'), 'host'), (f('a.002', 9, 'ship'), 'shipped'),
              (f('a.003', 7, 'bk'), 'backup')]
    chosen, warnings = _restore.choose_journals(copies)
    assert chosen['a.001'] == (str(tmp_path / 'host' / 'a.001'), 'host')        # equal length: the host's
    assert chosen['a.002'] == (str(tmp_path / 'ship' / 'a.002'), 'shipped')     # the host's copy is truncated
    assert chosen['a.003'] == (str(tmp_path / 'bk' / 'a.003'), 'backup')        # the only copy
    assert len(warnings) == 1 and 'a.002 on this host (5 bytes) is shorter than the shipped copy (9' in warnings[0]


def test_undo_is_right_whatever_a_kill_left(tmp_path):
    a, b, r = str(tmp_path / 'd'), str(tmp_path / 'd.aside'), str(tmp_path / 'restored')
    ops = [('rename', a, b), ('rename', r, a)]
    for done in range(3):
        for p in (a, b, r):
            shutil.rmtree(p, ignore_errors=True)
        os.makedirs(a + '/prod')
        os.makedirs(r + '/new')
        for op in ops[:done]:
            os.rename(op[1], op[2])
        for op in reversed(ops):
            _restore.undo_op(op)
        assert os.listdir(a) == ['prod'] and os.listdir(r) == ['new'] and not os.path.exists(b), done
        for op in reversed(ops):          # a second rollback does nothing
            assert _restore.undo_op(op) is None


# ---------------------------------------------------------------------------------------------------------------
# Refusals: nothing written
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('confirm', [None, '', 'IRIS2', 'yes'])
def test_refused_without_the_confirmation(world, confirm):
    before = production(world)
    rep = restore(world, confirm=confirm).run()
    assert rep['status'] == 'failed'
    assert rep['error'].startswith('nothing restored: a restore replaces the databases and journals of instance IRIS '
                                   'and needs the confirmation IRIS'), rep['error']
    assert 'Next: run it again with --confirm IRIS' in rep['error']
    assert rep['actions'] == [] and production(world) == before
    assert world.calls_of() == [] and not os.path.exists(world.state_dir)


def test_refused_while_the_instance_runs(world):
    _update(world.fakehost, status=RUNNING)
    before = production(world)
    rep = restore(world).run()
    assert rep['status'] == 'failed', rep
    assert rep['error'].startswith("nothing restored: instance IRIS is running (qlist: 'running, since"), rep['error']
    assert 'Next: stop it (`iris stop IRIS quietly`' in rep['error']
    assert rep['actions'] == [] and production(world) == before and world.calls_of() == []
    assert not os.path.exists(os.path.join(world.state_dir, 'IRIS.json'))


def test_refused_when_the_drill_root_overlaps(world):
    cfg = dict(world.cfg(), drill_root=world.data)
    before = production(world)
    rep = _restore.Restore(_backup.Repository(cfg), cfg, 'IRIS', confirm='IRIS', host=HOST,
                           state_dir=world.state_dir).run()
    assert rep['status'] == 'failed'
    assert rep['error'].startswith('nothing restored: %s/app overlaps the drill directory %s (drill_root)' % (
        world.data, world.data)), rep['error']
    assert rep['actions'] == [] and production(world) == before and world.calls_of() == []


def test_refused_when_another_instance_lives_inside(world, monkeypatch):
    host = install_fakes(world, monkeypatch.setattr)
    other = FakeInstance('OTHER', install_dir=os.path.join(world.data, 'user', 'other'))
    host.instances['OTHER'] = other
    rep = restore(world).run()
    assert rep['status'] == 'failed'
    assert 'overlaps the install directory %s of instance OTHER' % other.install_dir in rep['error'], rep['error']
    assert rep['actions'] == []


def test_refused_when_the_space_is_short(world, monkeypatch):
    class Vfs(object):
        f_bavail, f_frsize = 0, 4096
    monkeypatch.setattr(_restore.os, 'statvfs', lambda p: Vfs())
    before = production(world)
    rep = restore(world).run()
    assert rep['status'] == 'failed' and 'needs' in rep['error'] and 'which has 0 B free' in rep['error'], rep
    assert rep['actions'] == [] and production(world) == before


def test_an_unknown_backup_and_an_until_that_is_no_time_are_refused(world):
    rep = restore(world, backup_id='nosuchrun').run()
    assert rep['error'].startswith('nothing restored: no verified backup of host iris01 matching nosuchrun')
    rep = restore(world, until='yesterday').run()
    assert rep['error'].startswith("nothing restored: until 'yesterday' is not a time")
    assert world.calls_of() == []


# ---------------------------------------------------------------------------------------------------------------
# A restore, and a failure after the swap
# ---------------------------------------------------------------------------------------------------------------

def test_a_restore_puts_the_backup_in_place_rolls_forward_checks_and_keeps_the_old_files(world):
    original = production(world)
    rep = restore(world, backup_id='r1').run()
    assert rep['status'] == 'success', rep.get('error')
    assert_restored(world, original)
    jr = world.calls_of('journal_restore')
    assert len(jr) == 1 and jr[0]['first'].endswith(jname(2)) and jr[0]['last'].endswith(jname(5))
    assert [os.path.basename(f) for f in jr[0]['applied']] == [jname(n) for n in (2, 3, 4, 5)]
    assert sorted(jr[0]['select']) == sorted(world.db[k] + '/' for k in JOURNALLED)
    assert [c['source'] for c in rep['journal_chain']] == ['host'] * 4
    assert [c['kind'] for c in world.calls_of()] == ['start', 'journal_restore', 'integrity']
    assert sorted(world.calls_of('integrity')[0]['dirs']) == sorted(world.db[k] + '/' for k in JOURNALLED)
    assert [c['check'] for c in rep['checks']] == ['journal restore', 'integrity check']
    assert rep['point_reached'] == {'file': jr[0]['last'], 'offset': None}
    assert rep['backup_run_id'] == 'r1' and rep['rto_s'] > 0
    assert sorted(a['dir'] for a in rep['aside']) == sorted(world.units)
    assert all(a['bytes'] > 0 for a in rep['aside'])
    text = _restore.restore_text(rep)
    assert 'SUCCESS' in text and 'kept aside: %s%s' % (world.mgr, _restore.ASIDE_INFIX) in text
    assert 'renamed %s to %s%s' % (world.mgr, world.mgr, _restore.ASIDE_INFIX) in text
    assert os.path.exists(rep['report_file'])


def test_a_mount_point_is_restored_by_moving_its_entries(world):
    world.mounts = [world.jrn]
    original = production(world)
    rep = restore(world).run()
    assert rep['status'] == 'success', rep.get('error')
    assert_restored(world, original)
    assert any(a['aside'] == os.path.join(world.jrn, _restore.ASIDE_INFIX + rep['run_id']) for a in rep['aside'])


def test_a_truncated_host_journal_is_replaced_by_the_shipped_copy(world):
    with open(os.path.join(world.jrn, jname(3)), 'r+') as f:
        f.truncate(20)
    rep = restore(world).run()
    assert rep['status'] == 'success', rep.get('error')
    assert [c['source'] for c in rep['journal_chain']] == ['host', 'shipped', 'host', 'host']
    assert any('%s on this host (20 bytes) is shorter than the shipped copy' % jname(3) in w for w in rep['warnings'])
    assert db(world, 'user') == 'gen=4'


@pytest.mark.parametrize('flag,needle,mount', [
    ('start_fail', 'instance IRIS did not start on the restored files', False),
    ('journal_fail', 'the journal restore stopped', False),
    ('integrity_fail', 'the integrity check of the restored databases failed', False),
    ('integrity_fail', 'the integrity check of the restored databases failed', True),
])
def test_a_failure_after_the_swap_puts_production_back(world, flag, needle, mount):
    if mount:
        world.mounts = [world.jrn]     # the started instance wrote a new journal file into it: swept away
    before = production(world)
    _update(world.fakehost, **{flag: True})
    rep = restore(world).run()
    assert rep['status'] == 'failed' and rep['error'].startswith(needle), rep['error']
    assert 'ROLLBACK INCOMPLETE' not in rep['error']
    assert production(world) == before                       # byte for byte, the same inodes
    assert leftovers(world) == [] and asides(world) == {}
    assert _load(world.fakehost)['status'] == DOWN           # stopped again: the restore had started it
    assert not os.path.exists(os.path.join(world.state_dir, 'IRIS.json'))
    kinds = [c['kind'] for c in world.calls_of()]
    assert kinds[0] == 'start' and (kinds[-1] == 'stop' or flag == 'start_fail')
    text = _restore.restore_text(rep)
    assert 'moved %s%s' % (world.mgr, _restore.ASIDE_INFIX) in text and 'back to %s' % world.mgr in text
    assert 'production directories of IRIS are as they were before restore' in text


def test_a_signal_rolls_back_at_the_next_step(world, monkeypatch):
    before = production(world)

    def hook(step):
        if step == 'rollforward':
            os.kill(os.getpid(), signal.SIGTERM)
    monkeypatch.setattr(_restore, 'STEP_HOOK', hook)
    rep = restore(world).run()
    assert rep['status'] == 'failed' and rep['error'].startswith('interrupted by SIGTERM'), rep['error']
    assert production(world) == before and leftovers(world) == [] and _load(world.fakehost)['status'] == DOWN
    assert world.calls_of('journal_restore') == []


def test_the_command_line(world, monkeypatch, capsys, tmp_path):
    cfgfile = tmp_path / 'backup.json'
    cfgfile.write_text(json.dumps({'repository': world.repo, 'repository_password_file': world.pw, 'host': HOST,
                                   'restic_cache_dir': world.cache}))
    monkeypatch.setattr(_restore, 'STATE_DIR', world.state_dir)
    monkeypatch.setattr(_freeze, 'state_dir', lambda create=True: _freeze.secure_dir(world.run_dir))
    before = production(world)
    assert _backup.main(['--config', str(cfgfile), 'restore', '--instance', 'iris']) == 1
    assert 'FAILED: nothing restored: a restore replaces' in capsys.readouterr().out
    assert _backup.main(['--config', str(cfgfile), 'restore', '--instance', 'iris', '--confirm', 'IRIS',
                         '--dry-run', '--json']) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan['status'] == 'planned' and sorted(u['dir'] for u in plan['units']) == sorted(world.units)
    assert production(world) == before and world.calls_of() == []
    # the same plan as text: the lines a person reads before a real restore
    assert _backup.main(['--config', str(cfgfile), 'restore', '--instance', 'iris', '--confirm', 'IRIS',
                         '--dry-run']) == 0
    text = capsys.readouterr().out
    assert 'PLANNED' in text and 'plan (--dry-run: nothing written):' in text
    # (each preview names its own run: the aside names differ, the backup line does not)
    assert '  %s' % plan['plan'][0] in text and text.count('current files kept aside in') == len(world.units), text
    assert production(world) == before and world.calls_of() == []
    assert _backup.main(['--config', str(cfgfile), 'restore', '--instance', 'iris', '--confirm', 'iris']) == 0
    assert 'irisops-backup restore of IRIS on iris01: SUCCESS' in capsys.readouterr().out
    assert_restored(world, before)


# ---------------------------------------------------------------------------------------------------------------
# Killed at every step
# ---------------------------------------------------------------------------------------------------------------

def drive(base, kill_at=None, record=None, **kw):
    """Run a restore of the world at ``base`` in a subprocess (this file as a script); SIGKILL it at the step
    ``kill_at``; ``record``: a file the subprocess writes the steps into.  Returns (returncode, report or None)."""
    spec = dict(base=str(base), kill_at=kill_at, record=record, kwargs=kw)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), json.dumps(spec)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=300, check=False)
    rep = None
    if proc.returncode == 0:
        rep = json.loads(proc.stdout)
    else:
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stdout, proc.stderr)
    return proc.returncode, rep


def _driver(spec):
    """The subprocess of drive()."""
    w = World(spec['base'])
    w.mounts = spec['kwargs'].pop('mounts', [])
    if spec['kwargs'].pop('replay', False):
        spec['kwargs']['replay'] = os.path.join(w.base, 'restic-replay')
    install_fakes(w, setattr)

    def hook(step):
        if spec['record']:
            with open(spec['record'], 'a') as f:
                f.write(step + '\n')
        if step == spec['kill_at']:
            os.kill(os.getpid(), signal.SIGKILL)
    _restore.STEP_HOOK = hook
    rep = restore(w, **spec['kwargs']).run()
    sys.stdout.write(json.dumps(rep, default=str))


def test_killed_at_every_step_the_next_run_rolls_back_or_finishes(built):
    """The steps come from the engine: a first run records them.  For each one: a run SIGKILLed there; for a step
    before the first rename, production is untouched at once; then ``--recover-only`` finds the state file and puts
    production back byte for byte (same inodes), or, once the restore had been checked, finishes it.  The journal
    directory is a mount point here (its entries move, not the directory), the harder case.  restic's results are
    replayed after the first run (ReplayRestic); test_a_rerun_after_a_kill_recovers_then_restores runs restic."""
    w = built
    w.mounts = [w.jrn]
    w.reset()
    record = os.path.join(w.base, 'steps.txt')
    rc, rep = drive(w.base, record=record, mounts=w.mounts, replay=True)
    assert rc == 0 and rep['status'] == 'success', rep
    with open(record) as f:
        steps = f.read().split()
    assert steps == rep['steps']
    swaps = [s for s in steps if s.startswith('swap:')]
    # the generated list covers every phase: staging, at least two renames per directory, start, roll-forward,
    # check, commit, clean-up
    assert len(swaps) >= 2 * len(w.units) and steps[0] == 'state' and steps[-1] == 'done'
    for name in ('stage:0', 'shipped', 'chain', 'start', 'rollforward', 'integrity', 'committed', 'cleanup'):
        assert name in steps, name
    first_swap = steps.index(swaps[0])
    committed = steps.index('committed')
    results = []
    for i, step in enumerate(steps):
        w.reset()
        original = production(w)
        rc, _rep = drive(w.base, kill_at=step, mounts=w.mounts, replay=True)
        assert rc == -signal.SIGKILL, step
        assert os.path.exists(os.path.join(w.state_dir, 'IRIS.json')), step
        if i < first_swap:
            assert production(w) == original, step                # a kill before the swap touches nothing
        rc, rec = drive(w.base, mounts=w.mounts, recover_only=True)
        assert rc == 0 and rec['status'] == 'success', (step, rec)
        if i < committed:
            assert rec['recovered']['action'] == 'rolled back', (step, rec['recovered'])
            assert production(w) == original, step                # byte for byte, the same inodes
            assert leftovers(w) == [] and asides(w) == {}, step
            assert _load(w.fakehost)['status'] == DOWN, step
        else:
            assert rec['recovered']['action'] == 'finished', (step, rec['recovered'])
            assert_restored(w, original)
        assert not os.path.exists(os.path.join(w.state_dir, 'IRIS.json')), step
        results.append((step, rec['recovered']['action']))
    assert len(results) == len(steps)


@pytest.mark.parametrize('where', ['swap', 'rollforward', 'committed'])
def test_a_rerun_after_a_kill_recovers_then_restores(built, where):
    """The same command run again: it recovers first (rolls back, or finishes a checked restore), then restores."""
    w = built
    w.mounts = []
    w.reset()
    original = production(w)
    rc, _rep = drive(w.base, kill_at='swap:3' if where == 'swap' else where)
    assert rc == -signal.SIGKILL
    rc, rep = drive(w.base)
    assert rc == 0 and rep['status'] == 'success', rep
    assert rep['recovered']['action'] == ('finished' if where == 'committed' else 'rolled back')
    assert_restored(w, original)      # the aside copy of the new run is the original production: the rollback was
    starts = [c for c in w.calls_of() if c['kind'] in ('start', 'stop')]
    assert [c['kind'] for c in starts] == {'swap': ['start'], 'rollforward': ['start', 'stop', 'start'],
                                           'committed': ['start']}[where]


if __name__ == '__main__':
    _driver(json.loads(sys.argv[1]))
