# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Parsing of vmware.log stun lines and the verdict against a mirror QoS timeout (plugins/module_utils/_vmware.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import gzip
import os
import shutil

import pytest

from ansible_collections.irisops.backup.plugins.module_utils import _vmware

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'vmware')

#: The line quoted in the seed article ("Reviewing VMware logs for stun times"), byte for byte.
SEED_LINE = '2017-01-04T22:15:58.846Z| vcpu-0| I125: Checkpoint_Unstun: vm stopped for 38123 us'
#: The seven stuns of the seed's `grep Unstun vmware.log` output, in log order.
SEED_US = [1091706, 38123, 298346, 301099, 341616, 264392, 221633]


def fixture(name):
    return os.path.join(FIXTURES, name)


def read(name):
    with open(fixture(name)) as fh:
        return fh.read()


def test_seed_line_exactly():
    stuns = _vmware.parse_stuns(SEED_LINE + '\n', source='vmware.log')
    assert stuns == [{
        'timestamp': '2017-01-04T22:15:58.846Z', 'thread': 'vcpu-0', 'level': 'I125', 'format': 'pipe',
        'us': 38123, 'seconds': 0.038123, 'file': 'vmware.log', 'line': 1,
    }]


def test_seed_log_all_stuns_in_order_and_other_lines_ignored():
    stuns = _vmware.parse_stuns(read('vmware-seed.log'), source='seed')
    assert [s['us'] for s in stuns] == SEED_US
    assert [s['line'] for s in stuns] == [4, 6, 7, 8, 9, 10, 11]
    assert {s['thread'] for s in stuns} == {'vcpu-0'}
    assert stuns[0]['seconds'] == 1.091706


def test_esxi7_level_format():
    stuns = _vmware.parse_stuns(read('vmware-esxi7.log'))
    assert [(s['format'], s['level'], s['thread'], s['us']) for s in stuns] == [
        ('level', 'In(05)', 'vcpu-0', 212345),
        ('level', 'In(05)', 'vcpu-1', 4500000),
        ('level', 'Wa(03)', 'vcpu-0', 901234),
    ]
    assert stuns[1]['timestamp'] == '2023-04-15T09:31:02.017Z'


def test_tolerated_variants():
    stuns = _vmware.parse_stuns(read('vmware-odd.log'))
    # grep output "file:" prefix and no level tag; a vmx thread with an offset timestamp; an unknown prefix
    assert [(s['format'], s['thread'], s['level'], s['us']) for s in stuns] == [
        ('pipe', 'vcpu-0', None, 3658889),
        ('pipe', 'vmx', 'I120', 120000),
        ('other', None, None, 9000001),
    ]
    assert stuns[0]['timestamp'] == '2012-03-23T16:22:51.876Z'
    assert stuns[2]['timestamp'] is None
    # "Checkpoint_Stun" and a non-numeric duration are not stuns


@pytest.mark.parametrize('line', [
    '2017-01-04T22:15:58.846Z| vcpu-0| I125: Checkpoint_Unstun: vm stopped for 38123 us',
    '2017-01-04T22:15:58.846Z| vmx| I120: Checkpoint_Unstun: vm stopped for 38123 us',
    '2017-01-04T22:15:58.846Z| vcpu-12| Checkpoint_Unstun: vm stopped for 38123 us',
    '2017-01-04T22:15:58.846Z| vcpu-0| A100: Checkpoint_Unstun: vm stopped for 38123 us',
    '2017-01-04T22:15:58.846Z In(05) vcpu-0 - Checkpoint_Unstun: vm stopped for 38123 us',
    '2017-01-04T22:15:58.846Z Wa(03) vmx - Checkpoint_Unstun: vm stopped for 38123 us',
    'vmware-1.log:2017-01-04T22:15:58.846Z| vcpu-0| I125: Checkpoint_Unstun: vm stopped for 38123 us',
    '2017-01-04T22:15:58.846Z| vcpu-0| I125: Checkpoint_Unstun: vm stopped for 38123 us\r',
])
def test_every_documented_form_gives_the_timestamp(line):
    stuns = _vmware.parse_stuns(line + '\n')
    assert len(stuns) == 1 and stuns[0]['us'] == 38123
    assert stuns[0]['timestamp'] == '2017-01-04T22:15:58.846Z'
    assert stuns[0]['format'] in ('pipe', 'level')


def test_percentile_nearest_rank():
    assert _vmware.percentile([]) is None
    assert _vmware.percentile([5]) == 5
    values = list(range(1, 101))          # 1..100
    assert _vmware.percentile(values) == 95
    assert _vmware.percentile(list(range(1, 21))) == 19     # ceil(0.95*20) = 19th
    assert _vmware.percentile(SEED_US) == max(SEED_US)      # ceil(0.95*7) = 7th of 7
    assert _vmware.percentile(SEED_US, 50) == 298346


def test_judge_seed_against_default_qos_is_ok():
    stuns = _vmware.parse_stuns(read('vmware-seed.log'), source='seed')
    res = _vmware.judge(stuns, _vmware.DEFAULT_QOS_TIMEOUT_MS)
    assert res['verdict'] == 'ok' and not res['risk'] and res['at_risk'] == []
    assert res['count'] == 7 and res['max_us'] == 1091706 and res['max_seconds'] == 1.091706
    assert res['p95_us'] == 1091706
    assert res['qos_timeout_ms'] == 8000 and res['risk_threshold_ms'] == 4000
    assert res['worst']['timestamp'] == '2017-01-04T21:30:19.662Z'


def test_judge_seed_against_old_2000ms_qos_is_a_risk():
    # The pre-2015 default of 2000 ms: the 1.09 s stun at snapshot creation is above half of it.
    stuns = _vmware.parse_stuns(read('vmware-seed.log'), source='seed')
    res = _vmware.judge(stuns, 2000)
    assert res['verdict'] == 'risk' and res['risk'] and res['at_risk_count'] == 1
    assert res['at_risk'][0]['us'] == 1091706
    assert '1 of 7 stun(s) at or above half the mirror QoS timeout (1000 ms of 2000 ms)' in _vmware.describe(res)
    assert 'longest 1.092 s at 2017-01-04T21:30:19.662Z (seed line 4)' in _vmware.describe(res)


def test_judge_boundaries():
    def stun(us):
        return {'us': us, 'seconds': us / 1e6, 'timestamp': None, 'file': 'f', 'line': 1}
    # exactly half the QoS is a risk (">= half"), one microsecond less is not
    assert _vmware.judge([stun(3999999)], 8000)['verdict'] == 'ok'
    assert _vmware.judge([stun(4000000)], 8000)['verdict'] == 'risk'
    assert _vmware.judge([stun(7999999)], 8000)['verdict'] == 'risk'
    assert _vmware.judge([stun(8000000)], 8000)['verdict'] == 'exceeds_qos'
    res = _vmware.judge([], 8000)
    assert res['verdict'] == 'no_stuns' and res['count'] == 0 and res['max_us'] is None and res['p95_us'] is None
    assert _vmware.describe(res) == 'no Checkpoint_Unstun line found'
    with pytest.raises(ValueError):
        _vmware.judge([], 0)


def test_judge_orders_by_time_across_files_and_offsets():
    a = _vmware.parse_stuns('2023-01-01T10:00:00.000Z In(05) vcpu-0 - Checkpoint_Unstun: vm stopped for 3 us\n',
                            source='vmware.log')
    b = _vmware.parse_stuns('2023-01-01T10:30:00.000+01:00| vcpu-0| I125: Checkpoint_Unstun: vm stopped for 2 us\n'
                            'no time Checkpoint_Unstun: vm stopped for 9 us\n', source='vmware-1.log')
    res = _vmware.judge(a + b, 8000)
    # 10:30+01:00 is 09:30Z, before 10:00Z; the undated stun comes last
    assert [s['us'] for s in res['stuns']] == [2, 3, 9]


def _logdir(tmp_path):
    """A VM log folder as downloaded: vmware.log, a rotated plain log, a rotated gzip log, unrelated files."""
    d = tmp_path / 'vm'
    d.mkdir()
    shutil.copy(fixture('vmware-esxi7.log'), str(d / 'vmware.log'))
    shutil.copy(fixture('vmware-odd.log'), str(d / 'vmware-2.log'))
    with gzip.open(str(d / 'vmware-1.log.gz'), 'wb') as gz:
        gz.write(read('vmware-seed.log').encode('utf-8'))
    (d / 'vmx-zdump.000').write_text(u'Checkpoint_Unstun: vm stopped for 999999999 us\n')
    (d / 'db1.vmx').write_text(u'displayName = "db1"\n')
    return d


def test_expand_directory_takes_only_vm_logs_in_rotation_order(tmp_path):
    d = _logdir(tmp_path)
    files = _vmware.expand_paths([str(d)])
    assert [os.path.basename(f) for f in files] == ['vmware.log', 'vmware-1.log.gz', 'vmware-2.log']


def test_expand_glob_file_and_duplicates(tmp_path):
    d = _logdir(tmp_path)
    files = _vmware.expand_paths([str(d / 'vmware.log'), str(d / 'vmware*.log*'), str(d)])
    assert [os.path.basename(f) for f in files] == ['vmware.log', 'vmware-1.log.gz', 'vmware-2.log']


@pytest.mark.parametrize('entry, words', [
    ('missing.log', 'does not exist'),
    ('nomatch-*.log', 'matches no file'),
    ('emptydir', 'holds no vmware.log'),
])
def test_expand_errors_name_the_path(tmp_path, entry, words):
    (tmp_path / 'emptydir').mkdir()
    (tmp_path / 'emptydir' / 'other.txt').write_text(u'x')
    path = str(tmp_path / entry)
    with pytest.raises(_vmware.StunLogError) as exc:
        _vmware.expand_paths([path])
    assert words in str(exc.value) and path in str(exc.value)
    with pytest.raises(_vmware.StunLogError):
        _vmware.expand_paths([])


def test_read_log_gzip_by_content_not_name(tmp_path):
    plain = tmp_path / 'a.log'
    plain.write_text(SEED_LINE + '\n')
    disguised = tmp_path / 'b.log'              # gzip data without .gz
    with gzip.open(str(disguised), 'wb') as gz:
        gz.write((SEED_LINE + '\n').encode('utf-8'))
    assert _vmware.read_log(str(plain)) == _vmware.read_log(str(disguised)) == SEED_LINE + '\n'
    broken = tmp_path / 'c.log.gz'
    broken.write_bytes(open(str(disguised), 'rb').read()[:12])   # truncated gzip
    with pytest.raises(_vmware.StunLogError) as exc:
        _vmware.read_log(str(broken))
    assert 'cannot read %s' % broken in str(exc.value)


def test_read_log_survives_binary_garbage(tmp_path):
    f = tmp_path / 'vmware.log'
    f.write_bytes(b'\xff\xfe garbage \x00\n' + SEED_LINE.encode('ascii') + b'\n')
    assert [s['us'] for s in _vmware.parse_stuns(_vmware.read_log(str(f)))] == [38123]


def test_analyse_folder_with_rotated_and_gzip_logs(tmp_path):
    d = _logdir(tmp_path)
    res = _vmware.analyse([str(d)], 8000)
    assert [(os.path.basename(f['path']), f['count']) for f in res['files']] == [
        ('vmware.log', 3), ('vmware-1.log.gz', 7), ('vmware-2.log', 3)]
    assert res['count'] == 13
    # 9.0 s (undated, from the odd log) >= 8 s QoS
    assert res['verdict'] == 'exceeds_qos' and res['max_us'] == 9000001
    assert sorted(s['us'] for s in res['at_risk']) == [4500000, 9000001]
    # oldest first: 16:22:52+01:00 (15:22:52Z) from vmware-2.log comes before its 16:22:51Z line
    assert [s['timestamp'] for s in res['stuns'][:2]] == ['2012-03-23T16:22:52.100+01:00', '2012-03-23T16:22:51.876Z']
    assert res['stuns'][-1]['timestamp'] is None
