# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Unit tests of tests/faults/summary.py: the table, the verdict of each record and the exit status."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import io
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.irisops.backup.tests.unit.repo_scripts import load_script

summary = load_script('irisops_fault_summary', 'tests/faults/summary.py')
SUMMARY = summary.__file__


def record(case, **over):
    rec = {'suite': 'bad_inputs', 'case': case, 'fault': 'iris_freeze: unknown instance name', 'expect': 'fail',
           'rc_failed': True, 'message': "nothing frozen: unknown instance 'NOSUCH' (known: IRIS, CACHE)",
           'message_expected': "unknown instance 'NOSUCH'", 'frozen_after': [], 'snapshots_after': [],
           'data_lost': 0, 'report_status': None}
    rec.update(over)
    return rec


def write(directory, *records):
    for rec in records:
        with open(os.path.join(str(directory), '%s-%s.json' % (rec.get('suite', 'x'), rec.get('case', 'x'))), 'w') as f:
            json.dump(rec, f)


def run(directory):
    out = io.StringIO()
    rc = summary.main(['--dir', str(directory)], out=out)
    return rc, out.getvalue().splitlines()


def row_of(lines, case):
    found = [line for line in lines if ' | %s ' % case in line]
    assert len(found) == 1, lines
    return [cell.strip() for cell in found[0].split('|')]


def test_all_survived(tmp_path):
    write(tmp_path, record('freeze-unknown'),
          record('vg-full', suite='lvm_backup_faults', fault='vg full after freeze', report_status='failed'),
          record('good-run', suite='soak', expect='ok', rc_failed=False, message='', message_expected=''))
    rc, lines = run(tmp_path)
    assert rc == 0
    header = ['suite', 'case', 'fault', 'expected', 'result', 'frozen left', 'snapshots left', 'data lost', 'survived']
    assert [c.strip() for c in lines[0].split('|')] == header
    assert row_of(lines, 'freeze-unknown') == ['bad_inputs', 'freeze-unknown', 'iris_freeze: unknown instance name',
                                               'fail', 'failed', '-', '-', '0', 'yes']
    assert row_of(lines, 'vg-full')[4] == 'failed (report: failed)'
    assert row_of(lines, 'good-run')[3:5] == ['ok', 'ok']
    assert 'did not survive:' not in lines
    assert lines[-1] == 'faults tried 3, survived 3, data lost 0'


@pytest.mark.parametrize('over, reason', [
    ({'rc_failed': False, 'message': ''}, 'the run succeeded, expected it to fail'),
    ({'message': 'nothing frozen: instance IRIS is down'}, "does not contain \"unknown instance 'NOSUCH'\""),
    ({'frozen_after': ['IRIS']}, 'left frozen: IRIS'),
    ({'snapshots_after': ['vgbk/dba_irisops_bkp']}, 'snapshots left: vgbk/dba_irisops_bkp'),
    ({'data_lost': 2}, 'data lost: 2 failed check(s)'),
    ({'expect': 'ok', 'rc_failed': True}, 'the run failed, expected it to succeed'),
])
def test_a_case_that_did_not_survive_fails_the_summary(tmp_path, over, reason):
    write(tmp_path, record('fine'), record('broken', **over))
    rc, lines = run(tmp_path)
    assert rc == 1
    assert row_of(lines, 'broken')[-1] == 'NO'
    assert row_of(lines, 'fine')[-1] == 'yes'
    notes = lines[lines.index('did not survive:') + 1:-1]
    assert len(notes) == 1 and notes[0].strip().startswith('bad_inputs/broken: ') and reason in notes[0]
    lost = 1 if over.get('data_lost') else 0
    assert lines[-1] == 'faults tried 2, survived 1, data lost %d' % lost


def test_several_failures_are_all_named(tmp_path):
    write(tmp_path, record('a', frozen_after=['IRIS', 'CACHE'], data_lost=1), record('b', rc_failed=False),
          record('c', data_lost=3))
    rc, lines = run(tmp_path)
    assert rc == 1
    assert row_of(lines, 'a')[5] == 'IRIS, CACHE'
    notes = '\n'.join(lines[lines.index('did not survive:') + 1:])
    assert 'bad_inputs/a: left frozen: IRIS, CACHE; data lost: 1 failed check(s)' in notes
    assert 'bad_inputs/b: the run succeeded' in notes
    assert lines[-1] == 'faults tried 3, survived 0, data lost 2'


def test_message_only_matters_when_a_failure_is_expected(tmp_path):
    write(tmp_path, record('ok-run', expect='ok', rc_failed=False, message='all good', message_expected='not there'))
    rc, lines = run(tmp_path)
    assert rc == 0 and lines[-1] == 'faults tried 1, survived 1, data lost 0'


def test_no_record_is_a_failure(tmp_path):
    rc, lines = run(tmp_path)
    assert rc == 1
    assert lines[0].startswith('no fault record in %s' % tmp_path)
    assert lines[-1] == 'faults tried 0, survived 0, data lost 0'


def test_missing_directory_is_a_failure(tmp_path):
    rc, lines = run(tmp_path / 'nothing-here')
    assert rc == 1 and lines[-1] == 'faults tried 0, survived 0, data lost 0'


def test_unreadable_and_malformed_records_count_as_not_survived(tmp_path):
    write(tmp_path, record('fine'))
    (tmp_path / 'bad_inputs-garbage.json').write_text('{"suite": ')
    bad = record('no-flags')
    del bad['frozen_after']
    write(tmp_path, bad, record('wrong-types', rc_failed='yes', data_lost='0', frozen_after='IRIS'))
    rc, lines = run(tmp_path)
    assert rc == 1
    notes = '\n'.join(lines[lines.index('did not survive:') + 1:])
    assert 'cannot read' in notes
    assert 'bad_inputs/no-flags: missing field frozen_after' in notes
    assert "rc_failed is 'yes', not true/false" in notes and 'frozen_after is' in notes and 'data_lost is' in notes
    assert lines[-1] == 'faults tried 4, survived 1, data lost 0'


def test_long_faults_are_shortened_in_the_table(tmp_path):
    write(tmp_path, record('long', fault='x' * 200))
    rc, lines = run(tmp_path)
    assert rc == 0
    assert row_of(lines, 'long')[2] == 'x' * (summary.FAULT_WIDTH - 3) + '...'


def test_command_line(tmp_path):
    write(tmp_path, record('fine'), record('frozen', frozen_after=['CACHE']))
    proc = subprocess.run([sys.executable, SUMMARY, '--dir', str(tmp_path)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, check=False)
    out = proc.stdout.decode()
    assert proc.returncode == 1, out + proc.stderr.decode()
    assert out.splitlines()[-1] == 'faults tried 2, survived 1, data lost 0'
    write(tmp_path, record('frozen'))
    proc = subprocess.run([sys.executable, SUMMARY, '--dir', str(tmp_path)], stdout=subprocess.PIPE, check=False)
    assert proc.returncode == 0 and proc.stdout.decode().splitlines()[-1] == 'faults tried 2, survived 2, data lost 0'
