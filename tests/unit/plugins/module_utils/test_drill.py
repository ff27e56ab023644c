# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure parts of the drill engine (_drill.py): where a production directory is in a restored backup, and the
refusal of a drill directory that overlaps an instance.  The whole drill runs in the VM (tests/vm)."""

from __future__ import absolute_import, division, print_function

from ansible_collections.irisops.backup.plugins.module_utils import _drill

__metaclass__ = type

MANIFEST = {'volumes': [
    {'vg': 'vgbk', 'lv': 'dba', 'mountpoint': '/run/irisops/backup/mnt/vgbk/dba', 'origin_mountpoint': '/iris/dba'},
    {'vg': 'vgbk', 'lv': 'jrn', 'mountpoint': '/run/irisops/backup/mnt/vgbk/jrn', 'origin_mountpoint': '/iris/jrn'},
    {'vg': 'vgbk', 'lv': 'sys', 'mountpoint': '/run/irisops/backup/mnt/vgbk/sys', 'origin_mountpoint': None},
]}


def test_restored_path_follows_the_volume_of_the_directory():
    assert _drill.restored_path('/iris/dba/irisa/user/', MANIFEST, '/drill/x/backup') == \
        '/drill/x/backup/run/irisops/backup/mnt/vgbk/dba/irisa/user'
    assert _drill.restored_path('/iris/jrn/a', MANIFEST, '/r') == '/r/run/irisops/backup/mnt/vgbk/jrn/a'
    assert _drill.restored_path('/elsewhere/db', MANIFEST, '/r') is None
    # a prefix that is not a path component does not match
    assert _drill.restored_path('/iris/dbax/db', MANIFEST, '/r') is None


def test_a_drill_directory_overlapping_an_instance_is_refused():
    inst = {'name': 'IRISA', 'status': 'running', 'install_dir': '/usr/irissys', 'database_dirs': ['/iris/dba/irisa/'],
            'databases': {'USER': '/iris/dba/irisa/'}, 'journal_current_dir': '/iris/jrn/a'}
    assert _drill.overlap_problems('/var/lib/irisops/drill', [inst]) == []
    inside = _drill.overlap_problems('/iris/dba/irisa/drill', [inst])
    assert len(inside) == 1 and 'overlaps the database USER directory /iris/dba/irisa/ of instance IRISA' in inside[0]
    above = _drill.overlap_problems('/iris', [inst])
    assert len(above) == 2           # above both the database and the journal directory
    assert _drill.overlap_problems('/usr/irissys2', [inst]) == []


class _Repo(object):
    """A repository with one verified backup whose manifest is given."""
    base = ['restic', '--repo', '/srv/restic']

    def __init__(self, manifest):
        self.manifest = manifest
        self.calls = []

    def snapshots(self, host=None, tags=None):
        return [{'id': 'abcdef0123456789', 'time': '2026-12-07T02:30:12Z', 'paths': ['/run/irisops/backup/mnt'],
                 'tags': ['irisops', 'verified', 'run=r1', 'instance=IRISA']}]

    def dump(self, snapshot_id, path):
        import json
        return json.dumps(self.manifest)

    def run(self, argv, timeout=None, data=None):
        self.calls.append(argv)
        return 0, '[]', ''


def _drill_host(monkeypatch):
    drill = {'name': 'DRILL', 'status': 'running', 'ready': True, 'install_dir': '/usr/drill'}
    monkeypatch.setattr(_drill._iris, 'discover_instances', lambda *a, **k: ([drill], []))

    def no_session(*a, **k):
        raise AssertionError('no IRIS session may run')
    monkeypatch.setattr(_drill._iris, 'run_script', no_session)


def test_an_until_that_is_no_time_is_refused_before_anything_is_restored(monkeypatch, tmp_path):
    _drill_host(monkeypatch)
    repo = _Repo({})
    rep = _drill.Drill(repo, {}, 'iris01', 'IRISA', until='yesterday', drill_instance='DRILL',
                       root=str(tmp_path)).run()
    assert rep['status'] == 'failed' and rep['error'].startswith("nothing restored: until 'yesterday' is not a time")
    assert repo.calls == []


def test_a_backup_without_a_journalled_database_is_not_rolled_forward(monkeypatch, tmp_path):
    _drill_host(monkeypatch)
    manifest = {'instances': {'IRISA': {'databases': {'USER': '/iris/dba/user'}, 'not_journalled': ['/iris/dba/user'],
                                        'journal_file': '/iris/jrn/20261207.001'}}, 'volumes': MANIFEST['volumes']}
    rep = _drill.Drill(_Repo(manifest), {}, 'iris01', 'IRISA', until='2026-12-07 03:00:00', drill_instance='DRILL',
                       root=str(tmp_path)).run()
    assert rep['status'] == 'failed'
    assert rep['error'].startswith('nothing rolled forward: backup abcdef01 lists no journalled database of instance '
                                   'IRISA'), rep['error']


def test_the_drill_instance_owner_can_reach_the_restored_files(monkeypatch, tmp_path):
    """The VM rig found the drill instance (running as its owner, not root) unable to open the restored journal file
    and databases: the drill root was made 0700 and the work directory (mkdtemp, 0700) stayed root's."""
    import os
    import pwd
    _drill_host(monkeypatch)
    instances, _e = _drill._iris.discover_instances()
    instances[0]['owner_user'] = 'irisowner'
    owner = pwd.struct_passwd(('irisowner', 'x', 51773, 51773, '', '/home/irisowner', '/bin/sh'))
    monkeypatch.setattr(pwd, 'getpwnam', lambda name: owner)
    chowned = []
    monkeypatch.setattr(os, 'lchown', lambda path, uid, gid: chowned.append((path, uid, gid)))
    manifest = {'instances': {'IRISA': {'databases': {'USER': '/iris/dba/user'},
                                        'journal_file': '/iris/jrn/20261207.001'}}, 'volumes': MANIFEST['volumes']}
    root = tmp_path / 'drill'
    rep = _drill.Drill(_Repo(manifest), {}, 'iris01', 'IRISA', drill_instance='DRILL', root=str(root)).run()
    assert rep['status'] == 'failed'   # _Repo restores nothing: the database is not in the backup
    assert (root.stat().st_mode & 0o777) == 0o711
    workdirs = [p for p, uid, gid in chowned if os.path.dirname(p) == str(root)]
    assert len(workdirs) == 1 and os.path.basename(workdirs[0]).startswith('drill-IRISA-'), chowned
    assert all((uid, gid) == (51773, 51773) for _p, uid, gid in chowned)


class _RestoringRepo(_Repo):
    """restic restore writes files: the backup holds journal 20261207.001 as it was at the freeze and .002 just
    created by the freeze's switch, without its header yet; the newest journal snapshot holds both, completed."""

    JOURNAL_SNAP = {'id': 'fedcba9876543210', 'time': '2026-12-07T03:00:00Z', 'paths': ['/iris/jrn'],
                    'tags': ['irisops-journal', 'instance=IRISA']}

    def run(self, argv, timeout=None, data=None):
        import json
        import os
        self.calls.append(argv)
        if 'snapshots' in argv:
            return 0, json.dumps([self.JOURNAL_SNAP]), ''
        if 'restore' in argv:
            snap, target = argv[argv.index('restore') + 1], argv[argv.index('--target') + 1]
            if snap == self.JOURNAL_SNAP['id']:
                files = {'iris/jrn/irisa/20261207.001': 'header\nrecords up to the switch\n',
                         'iris/jrn/irisa/20261207.002': 'header\nrecords after the backup\n'}
            else:
                # IRISB's journal files are in the backup too (same LV), one of them with a later name
                files = {'run/irisops/backup/mnt/vgbk/dba/user/IRIS.DAT': 'db',
                         'run/irisops/backup/mnt/vgbk/jrn/irisa/20261207.001': 'header\nrecords up to the freeze\n',
                         'run/irisops/backup/mnt/vgbk/jrn/irisa/20261207.002': '',
                         'run/irisops/backup/mnt/vgbk/jrn/irisb/20261207.003': 'header of IRISB\n'}
            for rel, text in files.items():
                path = os.path.join(target, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, 'w') as f:
                    f.write(text)
        return 0, '[]', ''


def test_the_chain_takes_the_shipped_copy_of_a_file_the_backup_also_holds(monkeypatch, tmp_path):
    """The VM rig's drill stopped after the backup's restore journal file: 'the journal file after 20261207.017 is
    missing (20261207.018 was not found)': the backup's own (empty) copy of the next file shadowed the shipped one,
    and the journal files of another instance in the backup (same LV) joined the chain."""
    _drill_host(monkeypatch)
    scripts = []

    def journal_restore(inst, lines, *a, **k):
        scripts.append(lines)
        raise _drill.DrillError('stopped by the test after the journal restore script was built')
    monkeypatch.setattr(_drill._iris, 'run_script', journal_restore)
    manifest = {'instances': {'IRISA': {'databases': {'USER': '/iris/dba/user'}, 'journal_dirs': ['/iris/jrn/irisa/'],
                                        'journal_file': '/iris/jrn/irisa/20261207.001'}},
                'volumes': MANIFEST['volumes']}
    rep = _drill.Drill(_RestoringRepo(manifest), {}, 'iris01', 'IRISA', drill_instance='DRILL',
                       root=str(tmp_path / 'drill'), keep=True).run()
    assert rep['journal_chain'] == ['20261207.001', '20261207.002'], rep
    assert rep['journal_sources'] == {'20261207.001': 'shipped', '20261207.002': 'shipped'}, rep
    script = '\n'.join(scripts[0])
    first = [ln for ln in scripts[0] if '.FirstFile=' in ln]
    assert first and '/journals/iris/jrn/irisa/20261207.001' in first[0], script
    assert 'mnt/vgbk/jrn' not in script, script      # the backup's copies are not even a location
    assert 'irisb' not in script, script
    # where the RTO went: the phases the drill ended before the journal restore failed, in order
    phases = rep['rto_phases_s']
    assert list(phases) == ['restore_backup', 'restore_journals', 'start_drill_instance'], phases
    assert all(v >= 0 for v in phases.values()), phases
