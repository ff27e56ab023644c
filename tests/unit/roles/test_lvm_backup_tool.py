# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests of roles/lvm_backup/files/lvm_backup_tool.py (the helper the lvm_backup role installs on the host)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import io
import json
import os
import shutil
import tarfile
from contextlib import redirect_stdout

import pytest

from ansible_collections.irisops.backup.tests.unit.repo_scripts import load_script

tool = load_script('irisops_lvm_backup_tool', 'roles/lvm_backup/files/lvm_backup_tool.py')


def run(argv):
    out = io.StringIO()
    with redirect_stdout(out):
        rc = tool.main(argv)
    return rc, json.loads(out.getvalue())


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / 'snap'
    (src / 'sub').mkdir(parents=True)
    (src / 'a.dat').write_bytes(b'a' * 5000)
    (src / 'sub' / 'b.dat').write_bytes(b'b' * 10)
    os.symlink('a.dat', str(src / 'link'))
    return tmp_path, src


def test_compare_equal_and_manifest(tree):
    tmp, src = tree
    dst = tmp / 'copy'
    shutil.copytree(str(src), str(dst), symlinks=True)
    rc, res = run(['compare', '--manifest', str(tmp / 'SUMS'), str(src), str(dst), 'vg/lv'])
    assert rc == 0
    assert res[0]['equal'] and res[0]['files'] == 3 and res[0]['read_errors'] == []
    assert 'vg/lv/sub/b.dat' in (tmp / 'SUMS').read_text()


def test_compare_mismatch_missing_extra(tree):
    tmp, src = tree
    dst = tmp / 'copy'
    shutil.copytree(str(src), str(dst), symlinks=True)
    (dst / 'a.dat').write_bytes(b'x')
    (dst / 'sub' / 'b.dat').unlink()
    (dst / 'new').write_bytes(b'n')
    rc, res = run(['compare', str(src), str(dst), 'p'])
    assert rc == 1
    assert res[0]['mismatches'] == ['a.dat'] and res[0]['missing'] == ['sub/b.dat'] and res[0]['extra'] == ['new']
    assert not res[0]['equal']


def test_compare_unreadable_file_is_a_difference_not_a_crash(tree, monkeypatch):
    tmp, src = tree
    dst = tmp / 'copy'
    shutil.copytree(str(src), str(dst), symlinks=True)
    real_open = open
    bad = str(src / 'a.dat')

    def failing_open(path, *args, **kwargs):
        if str(path) == bad:
            raise OSError(5, 'Input/output error', bad)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(tool, 'open', failing_open, raising=False)
    rc, res = run(['compare', str(src), str(dst), 'p'])
    assert rc == 1
    assert not res[0]['equal']
    assert res[0]['read_error_count'] == 1 and 'Input/output error' in res[0]['read_errors'][0]


@pytest.mark.skipif(shutil.which('rsync') is None, reason='rsync not installed')
def test_copy_rsync(tree):
    tmp, src = tree
    run_dir = tmp / 'run'
    run_dir.mkdir()
    rc, res = run(['copy', '--method', 'rsync', str(run_dir), str(src), 'vg', 'lv'])
    assert rc == 0
    assert res[0]['lv'] == 'vg/lv' and res[0]['rc'] == 0 and res[0]['copy'] == str(run_dir / 'vg' / 'lv') + '/'
    assert res[0]['files'] == 2 and res[0]['bytes'] == 5010
    assert (run_dir / 'vg' / 'lv' / 'sub' / 'b.dat').read_bytes() == b'b' * 10


def test_copy_tar_and_stop_at_first_failure(tree):
    tmp, src = tree
    run_dir = tmp / 'run'
    run_dir.mkdir()
    rc, res = run(['copy', '--method', 'tar', '--compression', 'gzip', str(run_dir),
                   str(src), 'vg', 'one', str(tmp / 'missing'), 'vg', 'two', str(src), 'vg', 'three'])
    assert rc == 1
    assert [r['rc'] for r in res][0] == 0 and res[1]['rc'] != 0 and res[2]['rc'] is None
    assert res[1]['error'] and res[2]['error'].startswith('not copied')
    with tarfile.open(str(run_dir / 'vg-one.tar.gz')) as archive:
        assert './sub/b.dat' in archive.getnames()
    assert not (run_dir / 'vg-three.tar.gz').exists()


def test_copy_usage_error():
    rc, res = run(['copy', '--method', 'tar', '/tmp', 'only-two', 'args'])
    assert rc == 2 and 'error' in res
