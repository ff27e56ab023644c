# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The backup engine (_backup.py) through the module iris_backup: the fake IRIS host and fake LVM of the
iris_lvm_snapshot tests (a "mount" copies the origin's files to the mount point), and a REAL restic with a local
repository in tmp_path.  Real LVM and an sftp repository are covered in the VM (tests/vm)."""

from __future__ import absolute_import, division, print_function

import json
import os
import shutil
import subprocess

import pytest

from ansible_collections.irisops.backup.plugins.module_utils import _backup
from ansible_collections.irisops.backup.plugins.module_utils import _freeze
from ansible_collections.irisops.backup.plugins.module_utils import _lvm
from ansible_collections.irisops.backup.plugins.modules import iris_backup
from ansible_collections.irisops.backup.tests.unit.plugins.iris_fakes import FakeInstance
from ansible_collections.irisops.backup.tests.unit.plugins.modules.test_iris_lvm_snapshot import FakeLvm, _tree

__metaclass__ = type

RESTIC = shutil.which('restic')
pytestmark = pytest.mark.skipif(RESTIC is None, reason='restic is not installed (tests/setup.sh installs it)')


class MountingLvm(FakeLvm):
    """FakeLvm plus mount/umount/blkid: mounting a snapshot copies the files of its origin's directories (as they were
    when the snapshot was taken) to the mount point."""

    def __init__(self, *args, **kwargs):
        super(MountingLvm, self).__init__(*args, **kwargs)
        self.frozen_copies = {}
        self.copies = 0
        self.mounted = {}
        self.on_mount = None

    def __call__(self, argv, data=None, timeout=None):
        cmd = argv[0].rsplit('/', 1)[-1]
        args = argv[1:]
        if cmd == 'lvcreate' and '--test' not in args:
            rc = super(MountingLvm, self).__call__(argv, data, timeout)
            if rc[0] == 0:
                name = args[args.index('--name') + 1]
                origin = args[-1].split('/')[1]
                self.frozen_copies[name] = [(p, self._copy(p)) for p, lv in self.routes if lv == origin]
            return rc
        if cmd == 'blkid':
            self.calls.append({'argv': list(argv), 'data': data, 'timeout': timeout})
            return 0, 'xfs\n', ''
        if cmd == 'mount':
            self.calls.append({'argv': list(argv), 'data': data, 'timeout': timeout})
            device, mnt = args[-2], args[-1]
            name = device.rsplit('/', 1)[-1]
            os.makedirs(mnt, exist_ok=True)
            for prefix, copy in self.frozen_copies.get(name, []):
                shutil.copytree(copy, os.path.join(mnt, os.path.basename(prefix)), dirs_exist_ok=True)
            self.mounted[mnt] = name
            if self.on_mount:
                self.on_mount(mnt)
            return 0, '', ''
        if cmd == 'umount':
            self.calls.append({'argv': list(argv), 'data': data, 'timeout': timeout})
            mnt = args[-1]
            if mnt in self.mounted:
                shutil.rmtree(mnt)
                os.makedirs(mnt)
                del self.mounted[mnt]
            return 0, '', ''
        return super(MountingLvm, self).__call__(argv, data, timeout)

    def _copy(self, path):
        self.copies += 1
        dst = path + '.snapshot-%d' % self.copies
        shutil.copytree(path, dst, ignore=shutil.ignore_patterns('*.snapshot-*'))
        return dst


@pytest.fixture(scope='session')
def template_repo(tmp_path_factory):
    base = tmp_path_factory.mktemp('restic-template')
    (base / 'pw').write_text('secret\n')
    subprocess.run([RESTIC, '--repo', str(base / 'repo'), 'init', '--repository-version', '2'],
                   env=dict(os.environ, RESTIC_PASSWORD_FILE=str(base / 'pw')), check=True, stdout=subprocess.DEVNULL)
    return str(base / 'repo')


@pytest.fixture
def rig(fake_host, monkeypatch, tmp_path, template_repo):
    iris_dir = _tree(tmp_path, 'irissys')
    with open(os.path.join(iris_dir, 'mgr', 'user', 'IRIS.DAT'), 'wb') as f:
        f.write(os.urandom(64 * 1024))
    with open(os.path.join(iris_dir, 'mgr', 'journal', '20261207.001'), 'w') as f:
        f.write('journal\n')
    iris = FakeInstance('IRIS', install_dir=iris_dir)
    host = fake_host(iris)
    lvm = MountingLvm(host.calls, str(tmp_path / 'mountinfo'),
                      routes=[(iris_dir, 'irisdb'), (iris_dir + '/mgr/journal', 'irisjrn'),
                              (iris_dir + '/mgr/journal2', 'irisjrn')],
                      lvs=[('irisdb', 100), ('irisjrn', 50)])
    monkeypatch.setattr(_lvm, 'subprocess_runner', lvm)
    monkeypatch.setattr(_lvm, 'MOUNTINFO_PATH', lvm.mountinfo_path)
    monkeypatch.setattr(_lvm, 'find_binary', lambda name, path=None: '/usr/sbin/' + name)
    monkeypatch.setattr(_lvm.time, 'sleep', lambda s: None)
    repo = str(tmp_path / 'repo')
    pw = tmp_path / 'pw'
    pw.write_text('secret\n')
    env = dict(os.environ, RESTIC_PASSWORD_FILE=str(pw))
    shutil.copytree(template_repo, repo)     # restic init costs a key derivation: once per session
    args = dict(repository=repo, repository_password_file=str(pw), mount_root=str(tmp_path / 'mnt'),
                report_dir=str(tmp_path / 'reports'), metrics_file=str(tmp_path / 'prom' / 'irisops_backup.prom'),
                restic_cache_dir=str(tmp_path / 'cache'), instances=['IRIS'], deadman_timeout=60,
                verify_read_data_subset='100%', retention={'keep_last': 2}, min_keep=1)
    return host, lvm, iris, args, env, repo


def _snapshots(env, repo):
    out = subprocess.run([RESTIC, '--repo', repo, 'snapshots', '--json'], env=env, check=True,
                         stdout=subprocess.PIPE).stdout
    return json.loads(out)


def test_a_backup_is_frozen_copied_verified_then_recorded(rig, run_module):
    host, lvm, iris, args, env, repo = rig
    failed, r = run_module(iris_backup, dict(args, run_id='r1'))
    assert 'report' in r, r['msg']
    rep = r['report']
    assert not failed and rep['status'] == 'success', r['msg'] + '\n' + r['report_text']
    snaps = _snapshots(env, repo)
    assert len(snaps) == 1 and 'verified' in snaps[0]['tags'] and 'run=r1' in snaps[0]['tags']
    assert 'instance=IRIS' in snaps[0]['tags']
    assert [c['check'] for c in rep['checks']] == [
        'snapshots valid at the end of the copy', 'repository holds the snapshot of this run',
        'restic check --read-data-subset=100%', 'every file read is in the repository with its size',
        'repository marks the snapshot verified']
    assert rep['instances']['IRIS']['history_recorded'] is True and iris.history == ['irisops-backup r1 restic %s'
                                                                                     % snaps[0]['id'][:8]]
    assert rep['instances']['IRIS']['journal_file'].endswith('.002') and not iris.frozen
    assert lvm.snapshots() == [] and rep['cleanup']['snapshots_removed']
    # ExternalSetHistory came after the tag 'verified' (the restic tag command ran before it)
    text = r['report_text']
    assert 'SUCCESS' in text and 'restore journal from' in text and 'verified' not in rep.get('error', '')
    # the manifest travels inside the backup
    repo_obj = _backup.Repository(dict(_backup.CONFIG_DEFAULTS, **args), args['repository_password_file'])
    entries = _backup.catalogue(repo_obj)
    assert entries[0]['verified'] and entries[0]['manifest']['instances']['IRIS']['journal_file'] == \
        rep['instances']['IRIS']['journal_file']
    prom = open(args['metrics_file']).read()
    assert 'irisops_backup_last_run_success{host="' in prom and '} 1\n' in prom
    assert 'irisops_backup_last_success_timestamp_seconds{host=' in prom and 'instance="IRIS"' in prom
    assert os.path.exists(os.path.join(args['report_dir'], 'backup-r1.txt'))


def test_a_write_daemon_resumed_inside_the_window_records_nothing(rig, run_module, monkeypatch):
    host, lvm, iris, args, env, repo = rig

    def resume(n):
        iris.frozen = False     # WDSuspendLimit / a foreign thaw while the snapshots are taken
    lvm.on_lvcreate = resume
    failed, r = run_module(iris_backup, dict(args, run_id='r2'))
    assert 'report' in r, r['msg']
    rep = r['report']
    assert failed and rep['status'] == 'failed' and rep['failed_step'] == 'freeze'
    assert 'BACKUP INVALID' in rep['error'] and iris.history == []
    assert _snapshots(env, repo) == [] and lvm.snapshots() == []
    assert _freeze.run_validity('r2')[0] is False


def test_a_torn_copy_is_forgotten_and_not_recorded(rig, run_module):
    """The snapshot overflowed during the copy: the restic snapshot of the run is forgotten, nothing recorded."""
    host, lvm, iris, args, env, repo = rig

    def overflow(mnt):
        for name, lv in lvm.lvs.items():
            if lv['origin']:
                lv['invalid'] = True
    lvm.on_mount = overflow
    real = lvm.report_lvs

    def report():
        data = json.loads(real())
        for row in data['report'][0]['lv']:
            if lvm.lvs.get(row['lv_name'], {}).get('invalid'):
                row['lv_attr'] = 'swi-I-s---'
                row['lv_snapshot_invalid'] = 'snapshot invalid'
        return json.dumps(data)
    lvm.report_lvs = report
    failed, r = run_module(iris_backup, dict(args, run_id='r3'))
    assert 'report' in r, r['msg']
    rep = r['report']
    assert failed and rep['failed_step'] == 'copy' and 'overflowed' in rep['error'], rep['error']
    assert _snapshots(env, repo) == [] and iris.history == [] and lvm.snapshots() == []
    assert rep['cleanup']['restic_snapshot'].startswith('forgotten')


def test_wrong_repository_password_freezes_nothing(rig, run_module, tmp_path):
    host, lvm, iris, args, env, repo = rig
    bad = tmp_path / 'bad'
    bad.write_text('wrong\n')
    failed, r = run_module(iris_backup, dict(args, repository_password_file=str(bad)))
    assert failed and r['report']['error'].startswith('nothing frozen: the repository')
    assert 'wrong repository password' in r['report']['error']
    assert host.session_calls('IRIS', 'ExternalFreeze') == []


@pytest.mark.parametrize('extra,needle', [
    (dict(repository='s3:bucket/x'), "unknown or unsupported scheme 's3'"),
    (dict(repository='relative/repo'), 'needs an absolute path'),
    (dict(mount_root='tmp/mnt'), 'mount_root'),
    (dict(retention={'keep_last': 1}, min_keep=3), 'below the floor'),
    (dict(run_id='../x'), 'run_id'),
    (dict(run_id='a/b'), 'run_id'),
])
def test_bad_input_is_refused_before_anything_is_frozen(rig, run_module, extra, needle):
    host, lvm, iris, args, env, repo = rig
    failed, r = run_module(iris_backup, dict(args, **extra))
    assert failed and r['msg'].startswith('nothing frozen') and needle in r['msg'], r['msg']
    assert host.session_calls('IRIS', 'ExternalFreeze') == []


def test_missing_restic_binary_is_refused_before_the_freeze(rig, run_module):
    host, lvm, iris, args, env, repo = rig
    failed, r = run_module(iris_backup, dict(args, restic_binary='/nonexistent/restic'))
    assert failed and 'restic' in r['report']['error'] and host.session_calls('IRIS', 'ExternalFreeze') == []


def test_retention_keeps_the_floor_and_the_newest(rig, run_module):
    host, lvm, iris, args, env, repo = rig
    for i in range(3):
        failed, r = run_module(iris_backup, dict(args, run_id='k%d' % i, retention={'keep_last': 1}, min_keep=1))
        assert not failed, r['msg']
    snaps = _snapshots(env, repo)
    assert len(snaps) == 1 and 'run=k2' in snaps[0]['tags']          # the newest
    ret = r['report']['retention']
    assert ret['verified_kept'] == 1 and len(ret['forgotten']) == 1
    # a policy that would remove everything but the floor says 2: two stay
    failed, r = run_module(iris_backup, dict(args, run_id='k3', retention={'keep_last': 2}, min_keep=2))
    assert not failed and len(_snapshots(env, repo)) == 2


@pytest.mark.parametrize('case', ['exists', 'missing', 'wrong-password'])
def test_init_check_opens_the_repository_and_creates_nothing(rig, tmp_path, capsys, case):
    """`irisops-backup init --check` (the lvm_backup role's check when it may not create the repository)."""
    host, lvm, iris, args, env, repo = rig
    cfg = dict(args)
    if case == 'missing':
        cfg['repository'] = str(tmp_path / 'no-repo')
    if case == 'wrong-password':
        (tmp_path / 'bad').write_text('wrong\n')
        cfg['repository_password_file'] = str(tmp_path / 'bad')
    (tmp_path / 'backup.json').write_text(json.dumps(cfg))
    rc = _backup.main(['--config', str(tmp_path / 'backup.json'), 'init', '--check'])
    out, err = capsys.readouterr()
    if case == 'exists':
        assert rc == 0 and 'exists' in out and err == ''
    else:
        assert rc == 1 and 'cannot be opened' in err and 'Next:' in err and cfg['repository'] in err, err
        assert not os.path.exists(str(tmp_path / 'no-repo'))
    assert host.session_calls('IRIS', 'ExternalFreeze') == []
