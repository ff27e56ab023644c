# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Control flow of iris_lvm_snapshot (freeze all -> snapshot all -> thaw all) against a fake host.

Two fakes share one call log, so the tests can check the order of everything the module ran: the IRIS/Cache command
line (tests/unit/plugins/iris_fakes.FakeHost: qlist, sessions, stat -W, and the systemd-run/systemctl of the
dead-man switch, through the conftest fixtures) and a small LVM (FakeLvm below: lvs/vgs in the JSON report format,
findmnt, lvcreate, lvremove). The instance trees are real directories under tmp_path, because the module checks
that every directory exists before it maps it to a logical volume. Real LVM is covered by the VM rig (tests/vm,
its lvm-module case); the dead-man switch firing after a SIGKILLed module by extensions/molecule/deadman.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import signal
import time

import pytest

from ansible_collections.irisops.backup.plugins.module_utils import _freeze
from ansible_collections.irisops.backup.plugins.module_utils import _snapset
from ansible_collections.irisops.backup.plugins.module_utils import _lvm
from ansible_collections.irisops.backup.plugins.modules import iris_lvm_snapshot
from ansible_collections.irisops.backup.tests.unit.plugins.iris_fakes import FakeInstance

__metaclass__ = type

EXT = 4 * 1024 ** 2
VG = 'vgdata'
#: the rig patches time.sleep away (LVM retry delays); a slow lvcreate needs the real one
REAL_SLEEP = time.sleep


class FakeLvm(object):
    """lvs/vgs/findmnt/lvcreate/lvremove of one volume group.  Directories map to LVs by path prefix (``routes``);
    every call is appended to ``calls`` (the IRIS fake host's log, so that the order across both is kept)."""

    def __init__(self, calls, mountinfo_path, routes, lvs, free=1000):
        self.calls = calls
        self.mountinfo_path = mountinfo_path
        self.routes = routes                  # [(path prefix, lv name)], longest prefix wins
        self.lvs = {}
        self.free = free
        self.minor = 0
        self.fail_lvcreate_at = None          # n-th real lvcreate fails
        self.lvcreate_delay = 0.0
        self.on_lvcreate = None               # callable(n) run before the n-th real lvcreate
        self.creates = 0
        self.dmsetup = []
        # lvmconfig --typeconfig full of the settings the preflight reports (Debian 12's defaults)
        self.lvmconfig = ('snapshot_autoextend_threshold=100\nsnapshot_autoextend_percent=20\n'
                          'thin_pool_autoextend_threshold=100\nthin_pool_autoextend_percent=20\nmonitoring=1\n')
        for name, extents in lvs:
            self.add(name, extents)
        with open(mountinfo_path, 'w') as f:
            f.write('22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n')

    def add(self, name, extents, origin=None, tags=()):
        self.lvs[name] = dict(name=name, extents=extents, origin=origin, tags=list(tags), minor=self.minor)
        self.minor += 1
        self.free -= extents

    def snapshots(self):
        return sorted(n for n, lv in self.lvs.items() if lv['origin'])

    def report_lvs(self):
        rows = []
        for lv in self.lvs.values():
            has_snap = any(o['origin'] == lv['name'] for o in self.lvs.values())
            attr = 'swi-a-s---' if lv['origin'] else ('owi-aos---' if has_snap else '-wi-ao----')
            rows.append({'lv_name': lv['name'], 'vg_name': VG, 'lv_attr': attr, 'lv_size': str(lv['extents'] * EXT),
                         'origin': lv['origin'] or '', 'data_percent': '0.00' if lv['origin'] else '',
                         'lv_path': '/dev/%s/%s' % (VG, lv['name']), 'lv_kernel_major': '253',
                         'lv_kernel_minor': str(lv['minor']), 'lv_tags': ','.join(lv['tags']),
                         'lv_snapshot_invalid': '' if lv['origin'] else 'unknown'})
        return json.dumps({'report': [{'lv': rows}]})

    def report_vgs(self):
        return json.dumps({'report': [{'vg': [{
            'vg_name': VG, 'vg_attr': 'wz--n-', 'vg_size': str(4000 * EXT), 'vg_free': str(self.free * EXT),
            'vg_extent_size': str(EXT), 'vg_extent_count': '4000', 'vg_free_count': str(self.free)}]}]})

    def __call__(self, argv, data=None, timeout=None):
        self.calls.append({'argv': list(argv), 'data': data, 'timeout': timeout})
        cmd = argv[0].rsplit('/', 1)[-1]
        args = argv[1:]
        if cmd == 'lvs':
            return 0, self.report_lvs(), ''
        if cmd == 'vgs':
            return 0, self.report_vgs(), ''
        if cmd == 'lvmconfig':
            assert args[:2] == ['--typeconfig', 'full'], args
            return 0, self.lvmconfig, ''
        if cmd == 'findmnt':
            path = args[-1]
            for prefix, name in sorted(self.routes, key=lambda r: -len(r[0])):
                if path == prefix or path.startswith(prefix.rstrip('/') + '/'):
                    lv = self.lvs[name]
                    return 0, 'SOURCE="/dev/mapper/%s-%s" TARGET="%s" FSTYPE="xfs" MAJ:MIN="253:%d"\n' % (
                        VG, name, prefix, lv['minor']), ''
            return 0, 'SOURCE="/dev/vda" TARGET="/" FSTYPE="ext4" MAJ:MIN="254:1"\n', ''
        if cmd == 'lvcreate':
            name = args[args.index('--name') + 1]
            extents = int(args[args.index('--extents') + 1])
            origin = args[-1].split('/')[1]
            tags = [args[i + 1] for i, a in enumerate(args) if a == '--addtag']
            if '--test' in args:
                return 0, '', ''
            self.creates += 1
            if self.on_lvcreate is not None:
                self.on_lvcreate(self.creates)
            if self.lvcreate_delay:
                REAL_SLEEP(self.lvcreate_delay)
            if self.fail_lvcreate_at == self.creates:
                return 5, '', '  Volume group "%s" has insufficient free space (1 extents): 13 required.\n' % VG
            self.add(name, extents, origin=origin, tags=tags)
            return 0, '', ''
        if cmd == 'dmsetup':   # after an overdue lvcreate: nothing is left suspended here
            self.dmsetup.append(args)
            return 0, '%s-irisdb|Active\n' % VG if args[0] == 'info' else '', ''
        if cmd == 'lvremove':
            name = args[-1].split('/')[1]
            if name not in self.lvs:
                return 5, '', '  Failed to find logical volume "%s/%s"\n' % (VG, name)
            self.free += self.lvs.pop(name)['extents']
            return 0, '', ''
        raise AssertionError('unexpected LVM command %r' % (argv,))


def _tree(root, name):
    """Directories of a FakeInstance installed at root/name (as its CPF lists them)."""
    base = os.path.join(str(root), name)
    for sub in ('mgr', 'mgr/user', 'mgr/irislocaldata', 'mgr/journal', 'mgr/journal2'):
        os.makedirs(os.path.join(base, sub))
    return base


@pytest.fixture
def rig(fake_host, monkeypatch, tmp_path):
    """IRIS (LVs irisdb + irisjrn) and CACHE (LV cachedb) with real trees; returns (host, lvm, iris, cache)."""
    iris_dir = _tree(tmp_path, 'irissys')
    cache_dir = _tree(tmp_path, 'cachesys')
    iris = FakeInstance('IRIS', install_dir=iris_dir)
    cache = FakeInstance('CACHE', 'cache', install_dir=cache_dir)
    host = fake_host(iris, cache)
    lvm = FakeLvm(host.calls, str(tmp_path / 'mountinfo'),
                  routes=[(iris_dir, 'irisdb'), (iris_dir + '/mgr/journal', 'irisjrn'),
                          (iris_dir + '/mgr/journal2', 'irisjrn'), (cache_dir, 'cachedb')],
                  lvs=[('irisdb', 100), ('irisjrn', 50), ('cachedb', 100)])
    monkeypatch.setattr(_lvm, 'subprocess_runner', lvm)
    monkeypatch.setattr(_lvm, 'MOUNTINFO_PATH', lvm.mountinfo_path)
    monkeypatch.setattr(_lvm, 'find_binary', lambda name, path=None: '/usr/sbin/' + name)
    monkeypatch.setattr(_lvm.time, 'sleep', lambda s: None)
    return host, lvm, iris, cache


def _events(host):
    """The call log as short labels: 'freeze IRIS', 'thaw CACHE', 'query IRIS', 'lvcreate irisdb', 'systemd-run'..."""
    out = []
    for c in host.calls:
        argv = c['argv']
        prog = argv[0].rsplit('/', 1)[-1]
        if '-U' in argv:
            name = argv[argv.index('-U') - 1]
            expr = argv[-1]
            for method, label in (('ExternalFreeze', 'freeze'), ('ExternalThaw', 'thaw'),
                                  ('IsWDSuspendedExt', 'query')):
                if method in expr:
                    out.append('%s %s' % (label, name))
        elif prog == 'lvcreate':
            out.append('lvcreate%s %s' % (' --test' if '--test' in argv else '', argv[-1].split('/')[1]))
        elif prog in ('lvremove', 'systemd-run', 'systemctl', 'stat'):
            out.append(prog if prog != 'lvremove' else 'lvremove ' + argv[-1].split('/')[1])
        elif argv[1:2] == ['stat']:
            out.append('stat ' + argv[2])
    return out


def _idx(events, prefix):
    return [i for i, e in enumerate(events) if e.startswith(prefix)]


def _warnings(r):
    return [w if isinstance(w, str) else w.get('event', w).get('msg', '') for w in r.get('warnings', [])]


ARGS = {'instances': ['IRIS', 'CACHE'], 'run_id': 't1', 'size': '16M'}


def test_happy_path_freezes_all_then_snapshots_then_thaws_all(rig, run_module, deadman_sandbox):
    host, lvm, iris, cache = rig
    failed, r = run_module(iris_lvm_snapshot, dict(ARGS, deadman_timeout=60))
    assert not failed, r['msg']
    assert r['changed'] and r['instances'] == ['IRIS', 'CACHE']
    assert lvm.snapshots() == ['cachedb_irisops_snap', 'irisdb_irisops_snap', 'irisjrn_irisops_snap']
    assert all(s['created'] and s['valid'] for s in r['snapshots'])
    assert not iris.frozen and not cache.frozen
    ev = _events(host)
    freezes, creates, thaws = _idx(ev, 'freeze '), _idx(ev, 'lvcreate '), _idx(ev, 'thaw ')
    arms = _idx(ev, 'systemd-run')
    assert len(freezes) == 2 and len(creates) == 3 and len(thaws) == 2 and len(arms) == 2, ev
    # every switch armed before the first freeze (arming costs no frozen time), every freeze before the first
    # lvcreate, every thaw after the last one
    assert max(arms) < min(freezes) and max(freezes) < min(creates) and max(creates) < min(thaws), ev
    # only preflight queries and the arming before the freeze; nothing between the freezes and the lvcreates
    assert set(ev[:min(freezes)]) <= {'query IRIS', 'query CACHE', 'lvcreate --test irisdb', 'systemd-run',
                                      'systemctl'}, ev
    assert ev[max(freezes) + 1:min(creates)] == [], ev
    for name in ('IRIS', 'CACHE'):
        e = r['instance_results'][name]
        assert e['action'] == 'frozen' and e['thawed_by'] == 'ExternalThaw' and e['frozen_ms'] >= 0
        assert e['journal_file'] and e['journal_file'].endswith('.002')
    assert r['freeze_window_ms'] >= r['snapshot_ms'] >= 0
    # the host's autoextend settings, reported as lvmconfig gave them (classic snapshots, autoextend off: no warning)
    assert dict((k, v) for k, v in r['lvm_autoextend'].items() if k != 'dmeventd_running') == {
        'snapshot_autoextend_threshold': 100, 'snapshot_autoextend_percent': 20,
        'thin_pool_autoextend_threshold': 100, 'thin_pool_autoextend_percent': 20, 'monitoring': 1}
    assert not [w for w in r['warnings_preflight'] if 'autoextend' in w]


def test_deadman_armed_before_freeze_recorded_after_it_and_disarmed_after_thaw(rig, run_module, deadman_sandbox):
    host, lvm, iris, cache = rig
    seen = {}

    def look(n):  # while the snapshots are taken, both switches are armed and know their freeze
        seen[n] = sorted(os.listdir(deadman_sandbox))
        seen['states'] = [json.load(open(os.path.join(deadman_sandbox, f))) for f in ('IRIS.json', 'CACHE.json')]
    lvm.on_lvcreate = look
    failed, r = run_module(iris_lvm_snapshot, dict(ARGS, deadman_timeout=60))
    assert not failed, r['msg']
    assert seen[1] == ['CACHE.json', 'IRIS.json'], seen
    assert all('log_position' in st and st['armed_by'] == 'iris_lvm_snapshot' for st in seen['states'])
    assert all(st['frozen_at'] for st in seen['states'])                # the freeze was recorded before lvcreate
    # the engine the timers run was copied next to the switches' directory
    assert sorted(os.listdir(os.path.join(os.path.dirname(deadman_sandbox), 'lib'))) == [
        '_freeze.py', '_iris.py', '_lvm.py', '_run.py']
    assert all(r['instance_results'][n]['deadman']['freeze_recorded'] is True for n in ('IRIS', 'CACHE'))
    runs = [c['argv'] for c in host.calls if c['argv'][0].rsplit('/', 1)[-1] == 'systemd-run']
    assert sorted(a[a.index('--unit') + 1] for a in runs) == ['irisops-deadman-CACHE', 'irisops-deadman-IRIS']
    assert all('--on-active=60s' in a and 'deadman-fire' in a for a in runs)
    for name in ('IRIS', 'CACHE'):
        dm = r['instance_results'][name]['deadman']
        assert dm['armed'] and dm['mechanism'] == 'systemd' and dm['seconds'] == 60 and dm['fires_at']
        assert dm['disarmed'] is True
    # the thaws disarmed both: no state file is left
    assert sorted(os.listdir(deadman_sandbox)) == []


def test_deadman_records_who_armed_it(rig, run_module, deadman_sandbox):
    host, lvm, iris, cache = rig
    states = []
    lvm.on_lvcreate = lambda n: states.append(json.load(open(os.path.join(deadman_sandbox, 'IRIS.json'))))
    failed, r = run_module(iris_lvm_snapshot, dict(ARGS, instances=['IRIS']))
    assert not failed, r['msg']
    assert states[0]['armed_by'] == 'iris_lvm_snapshot'
    # default: min(300, ExternalFreezeTimeOut - 60) with the IRIS default 600
    assert states[0]['seconds'] == 300 and r['instance_results']['IRIS']['deadman']['seconds'] == 300


def test_default_deadman_follows_external_freeze_timeout(rig, run_module):
    host, lvm, iris, cache = rig
    failed, r = run_module(iris_lvm_snapshot, dict(ARGS, external_freeze_timeout=200))
    assert not failed, r['msg']
    runs = [c['argv'] for c in host.calls if c['argv'][0].rsplit('/', 1)[-1] == 'systemd-run']
    assert len(runs) == 2 and all('--on-active=140s' in a for a in runs)


def test_deadman_zero_disables_with_warning(rig, run_module, deadman_sandbox):
    host, lvm, iris, cache = rig
    failed, r = run_module(iris_lvm_snapshot, dict(ARGS, deadman_timeout=0))
    assert not failed, r['msg']
    assert 'systemd-run' not in _events(host) and 'deadman' not in r['instance_results']['IRIS']
    assert any('deadman_timeout=0' in w for w in _warnings(r)), r.get('warnings')
    assert not os.path.exists(deadman_sandbox)


def test_snapshot_failure_thaws_all_and_removes_what_was_created(rig, run_module, deadman_sandbox):
    host, lvm, iris, cache = rig
    lvm.fail_lvcreate_at = 2
    failed, r = run_module(iris_lvm_snapshot, ARGS)
    assert failed
    assert not iris.frozen and not cache.frozen
    assert lvm.snapshots() == []
    ev = _events(host)
    assert len(_idx(ev, 'lvcreate ')) == 2, ev             # stopped at the failing one
    assert _idx(ev, 'lvremove ') and min(_idx(ev, 'lvremove ')) > max(_idx(ev, 'thaw ')), ev  # thaw first
    assert r['cleaned_up']['thawed'] == ['CACHE', 'IRIS']
    assert r['cleaned_up']['snapshots_removed'] == ['%s/irisdb_irisops_snap' % VG]
    assert r['cleaned_up']['still_frozen'] == [] and r['cleaned_up']['removal_errors'] == []
    msg = r['msg']
    # names the instances, the failing command and its error, and what to do next
    assert 'backup snapshot of IRIS, CACHE failed' in msg
    assert 'creating snapshot %s/irisjrn_irisops_snap of %s/irisjrn failed (snapshot 2 of 3)' % (VG, VG) in msg
    assert '/usr/sbin/lvcreate --yes --snapshot --extents 4 --name irisjrn_irisops_snap' in msg
    assert 'insufficient free space' in msg
    assert 'Thawed: CACHE, IRIS' in msg and 'Removed: %s/irisdb_irisops_snap' % VG in msg
    assert 'Next: fix the cause above and run again; nothing of run t1 is left frozen or in place' in msg
    # the switches were disarmed after the thaws
    assert all(r['instance_results'][n]['deadman']['disarmed'] for n in ('IRIS', 'CACHE'))
    assert not [f for f in os.listdir(deadman_sandbox) if f.endswith('.json')]
    assert all(not s['created'] for s in r['snapshots'])


def test_freeze_failure_on_second_instance_thaws_first_and_creates_nothing(rig, run_module, deadman_sandbox):
    host, lvm, iris, cache = rig
    cache.freeze_rc = 3
    cache.freeze_delay = 0.2   # IRIS is frozen before CACHE fails
    failed, r = run_module(iris_lvm_snapshot, ARGS)
    assert failed
    assert not iris.frozen and not cache.frozen
    ev = _events(host)
    assert 'freeze IRIS' in ev and 'freeze CACHE' in ev
    assert [e for e in ev if e.startswith('lvcreate ') and '--test' not in e] == [], ev
    assert 'thaw IRIS' in ev and ev.index('thaw IRIS') > ev.index('freeze IRIS')
    # both switches were armed before the freeze and are disarmed after the roll-back
    assert max(_idx(ev, 'systemd-run')) < min(_idx(ev, 'freeze '))
    assert all(r['instance_results'][n]['deadman']['disarmed'] for n in ('IRIS', 'CACHE'))
    assert lvm.snapshots() == []
    assert 'freeze failed on CACHE' in r['msg'] and 'Thawed again: IRIS' in r['msg']
    assert 'Command: ' in r['msg'] and 'Next:' in r['msg']
    assert r['instance_results']['IRIS']['action'] == 'frozen'  # it was frozen, then rolled back
    assert r['instance_results']['CACHE']['action'] == 'failed'
    assert not [f for f in os.listdir(deadman_sandbox) if f.endswith('.json')]  # no switch left armed


def test_arming_failure_freezes_nothing(rig, run_module, deadman_sandbox):
    host, lvm, iris, cache = rig
    host.systemd_run_rc = 1
    failed, r = run_module(iris_lvm_snapshot, ARGS)
    assert failed and not iris.frozen and not cache.frozen
    assert lvm.creates == 0 and lvm.snapshots() == []
    assert not _idx(_events(host), 'freeze '), 'never a freeze without its switch'
    assert r['msg'].startswith('nothing frozen: could not arm the dead-man switch for instance IRIS')
    assert 'systemd-run' in r['msg'] and 'deadman_timeout: 0' in r['msg']
    assert not [f for f in os.listdir(deadman_sandbox) if f.endswith('.json')]


def test_signal_while_arming_freezes_nothing(rig, run_module, deadman_sandbox, monkeypatch):
    """SIGTERM (job cancelled) arrives while the switches are armed: no freeze starts, the switches are disarmed."""
    host, lvm, iris, cache = rig
    real_arm = _freeze.deadman_arm

    def arm_then_signal(*args, **kwargs):
        res = real_arm(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return res
    monkeypatch.setattr(_freeze, 'deadman_arm', arm_then_signal)
    failed, r = run_module(iris_lvm_snapshot, ARGS)
    assert failed and r['msg'].startswith('nothing frozen: received SIGTERM while arming the dead-man switches')
    assert sum(1 for e in _events(host) if e == 'systemd-run') == 1  # stopped arming at the signal
    assert not _idx(_events(host), 'freeze ') and lvm.creates == 0
    assert not iris.frozen and not cache.frozen
    assert not [f for f in os.listdir(deadman_sandbox) if f.endswith('.json')]


def test_switch_that_fired_in_the_window_fails_the_run(rig, run_module, deadman_sandbox):
    """The switch thawed an instance while lvcreate ran (its state file is gone at the thaw): not consistent."""
    host, lvm, iris, cache = rig

    def fire(n):
        if n == 2:
            os.unlink(os.path.join(deadman_sandbox, 'IRIS.json'))
            iris.frozen = False
    lvm.on_lvcreate = fire
    failed, r = run_module(iris_lvm_snapshot, ARGS)
    assert failed and r['valid'] is False
    assert 'BACKUP INVALID: IRIS: its dead-man switch fired before the thaw' in r['msg']
    assert 'raise deadman_timeout' in r['msg'] and 'must not be recorded' in r['msg']
    assert r['invalid'] == {'IRIS': r['instance_results']['IRIS']['invalid']}
    assert lvm.snapshots() == [] and not iris.frozen and not cache.frozen
    assert sorted(r['cleaned_up']['snapshots_removed']) == ['%s/%s_irisops_snap' % (VG, n)
                                                            for n in ('cachedb', 'irisdb', 'irisjrn')]


def test_window_is_capped_at_the_deadman_timeout(rig, run_module):
    """An lvcreate that runs past the time left before the switches fire: the instances are thawed while it still
    runs (the thaw comes first), then its snapshot is removed and the run fails, naming the bound."""
    host, lvm, iris, cache = rig
    lvm.lvcreate_delay = 2.5
    state = {}
    lvm.on_lvcreate = lambda n: state.setdefault('started', time.time())
    # the window ends 2 s (SWITCH_MARGIN) before the switches are due: about 1 s for the first lvcreate here
    failed, r = run_module(iris_lvm_snapshot, dict(ARGS, deadman_timeout=3))
    assert failed and lvm.creates == 1
    assert 'did not finish within' in r['msg'] and 'the instances were thawed first' in r['msg'], r['msg']
    thaws = [c for c in host.calls if 'ExternalThaw(' in c['argv'][-1]]
    assert len(thaws) == 2
    assert lvm.dmsetup and lvm.dmsetup[0][0] == 'info'     # looked for devices the lvcreate left suspended
    assert lvm.snapshots() == [] and not iris.frozen and not cache.frozen


def test_failed_thaw_keeps_the_switch_armed(rig, run_module, deadman_sandbox):
    host, lvm, iris, cache = rig
    iris.thaw_rc = 3
    failed, r = run_module(iris_lvm_snapshot, dict(ARGS, stat_fallback=False, deadman_timeout=60))
    assert failed and iris.frozen and not cache.frozen
    assert 'THAW FAILED, STILL FROZEN: IRIS' in r['msg']
    assert 'the dead-man switch of IRIS stays armed and tries again at' in r['msg']
    assert r['instance_results']['IRIS']['deadman']['disarmed'] is False
    assert r['instance_results']['CACHE']['deadman']['disarmed'] is True
    assert os.path.exists(os.path.join(deadman_sandbox, 'IRIS.json'))
    assert not os.path.exists(os.path.join(deadman_sandbox, 'CACHE.json'))
    assert lvm.snapshots() == []


def test_instance_down_at_the_thaw_is_reported_down_and_its_switch_disarmed(rig, run_module, deadman_sandbox):
    host, lvm, iris, cache = rig

    def stop(n):  # IRIS is stopped inside the window: a stopped instance holds no freeze
        if n == 1:
            iris.status = 'down, last used Mon Nov 23 10:05:00 2026'
            iris.frozen = False
    lvm.on_lvcreate = stop
    failed, r = run_module(iris_lvm_snapshot, dict(ARGS, deadman_timeout=60))
    assert failed and not cache.frozen
    msg = r['msg']
    assert 'IRIS went down inside the freeze window: not frozen' in msg, msg
    assert 'thaw of instance IRIS failed' in msg and 'the instance is not running' in msg
    assert 'STILL FROZEN' not in msg and 'stays armed' not in msg
    assert r['cleaned_up']['went_down'] == ['IRIS'] and r['cleaned_up']['still_frozen'] == []
    assert r['cleaned_up']['thawed'] == ['CACHE'] and lvm.snapshots() == []
    assert r['instance_results']['IRIS']['deadman']['disarmed'] is True
    assert not [f for f in os.listdir(deadman_sandbox) if f.endswith('.json')]


def test_check_mode_changes_nothing(rig, run_module, deadman_sandbox):
    host, lvm, iris, cache = rig
    failed, r = run_module(iris_lvm_snapshot, dict(ARGS, deadman_timeout=45), check_mode=True)
    assert not failed and r['changed']
    ev = _events(host)
    assert not [e for e in ev if e.startswith(('freeze ', 'thaw ', 'lvremove', 'systemd'))], ev
    assert sorted(e for e in ev if e.startswith('lvcreate')) == [
        'lvcreate --test cachedb', 'lvcreate --test irisdb', 'lvcreate --test irisjrn']
    assert lvm.snapshots() == [] and not iris.frozen and not cache.frozen
    for name in ('IRIS', 'CACHE'):
        e = r['instance_results'][name]
        assert e['action'] == 'would_freeze'
        assert e['deadman'] == {'armed': False, 'mechanism': None, 'fires_at': None, 'would_arm': True,
                                'seconds': 45}
    assert not os.path.exists(deadman_sandbox)


@pytest.mark.parametrize('extra,message', [
    ({'deadman_timeout': -1}, 'deadman_timeout must be 0 (disabled) or a positive number'),
    ({'size': 'lots'}, 'lots'),
    ({'suffix': '/x'}, 'suffix'),
    ({'max_freeze_seconds': 700}, 'max_freeze_seconds (700) must be below ExternalFreezeTimeOut (600 s)'),
    ({'timeout': 0}, 'timeout must be a positive number'),
    ({'username': 'backup'}, 'username and password must be given together'),
    ({'text': 'a\nb'}, 'text'),
    ({'instances': ['IRIS', 'NOPE']}, "unknown instance 'NOPE'"),
    ({'volumes': ['noslash']}, 'give vg/lv or an absolute path'),
])
def test_bad_input_rejected_before_any_freeze(rig, run_module, deadman_sandbox, extra, message):
    host, lvm, iris, cache = rig
    failed, r = run_module(iris_lvm_snapshot, dict(ARGS, **extra))
    assert failed and message in r['msg'], r['msg']
    ev = _events(host)
    assert not [e for e in ev if e.startswith(('freeze ', 'thaw ', 'lvcreate', 'systemd'))], ev
    assert not iris.frozen and not cache.frozen and lvm.snapshots() == []
    assert not os.path.exists(deadman_sandbox)


def test_already_frozen_instance_is_refused_in_preflight(rig, run_module):
    host, lvm, iris, cache = rig
    cache.frozen = True
    failed, r = run_module(iris_lvm_snapshot, ARGS)
    assert failed and 'instance CACHE is already frozen' in r['msg'] and 'nothing frozen' in r['msg']
    assert 'freeze IRIS' not in _events(host) and cache.frozen  # someone else's freeze is left alone


# -- freeze_mode=staggered ------------------------------------------------------------------------------------------

def _steps(names, plan_instances):
    """staggered_steps with plans given by name, as the labels the module returns in ``steps``."""
    return [('snapshot ' + arg) if kind == 'snap' else '%s %s' % (kind, ', '.join(arg))
            for kind, arg in _snapset.staggered_steps(names, plan_instances)]


def test_staggered_steps_instances_without_shared_volumes_get_a_window_each():
    assert _steps(['A', 'B'], [('a1', ['A']), ('a2', ['A']), ('b1', ['B'])]) == [
        'freeze A', 'snapshot a1', 'snapshot a2', 'thaw A', 'freeze B', 'snapshot b1', 'thaw B']


def test_staggered_steps_shared_volume_taken_while_all_its_instances_are_frozen():
    # the benchmark's layout: installation directories on one shared LV, two LVs of its own per instance
    own = [('%s%d' % (n.lower(), k), [n]) for n in 'ABCD' for k in (1, 2)]
    steps = _steps(list('ABCD'), [('sys', list('ABCD'))] + own)
    assert steps == ['freeze A', 'snapshot a1', 'snapshot a2', 'freeze B', 'snapshot b1', 'snapshot b2',
                     'freeze C, D', 'snapshot sys', 'thaw A, B', 'snapshot c1', 'snapshot c2', 'thaw C',
                     'snapshot d1', 'snapshot d2', 'thaw D']
    # each snapshot while every instance it belongs to is frozen; each instance frozen and thawed once
    frozen, windows, now = set(), {}, 0
    for step in steps:
        kind, arg = step.split(' ', 1)
        if kind == 'freeze':
            for n in arg.split(', '):
                assert n not in windows
                frozen.add(n)
                windows[n] = [now, None]
        elif kind == 'thaw':
            for n in arg.split(', '):
                frozen.remove(n)
                windows[n][1] = now
        else:
            now += 1
            need = set('ABCD') if arg == 'sys' else set([arg[0].upper()])
            assert need <= frozen, step
    assert not frozen
    # the longest window holds 5 of the 9 lvcreates (freeze all, snapshot all, thaw all: 9)
    assert max(end - start for start, end in windows.values()) == 5


def test_staggered_steps_volume_without_instance_is_taken_while_all_are_frozen():
    assert _steps(['A', 'B'], [('a1', ['A']), ('extra', []), ('b1', ['B'])]) == [
        'freeze A', 'snapshot a1', 'freeze B', 'snapshot extra', 'thaw A', 'snapshot b1', 'thaw B']


def test_staggered_steps_single_instance_is_one_window():
    assert _steps(['A'], [('a1', ['A']), ('x', [])]) == ['freeze A', 'snapshot a1', 'snapshot x', 'thaw A']


def test_staggered_freezes_each_instance_only_for_its_own_volumes(rig, run_module, deadman_sandbox):
    host, lvm, iris, cache = rig
    failed, r = run_module(iris_lvm_snapshot, dict(ARGS, freeze_mode='staggered', deadman_timeout=60))
    assert not failed, r['msg']
    assert r['steps'] == ['freeze IRIS', 'snapshot %s/irisdb' % VG, 'snapshot %s/irisjrn' % VG, 'thaw IRIS',
                          'freeze CACHE', 'snapshot %s/cachedb' % VG, 'thaw CACHE']
    ev = [e for e in _events(host) if e.split(' ')[0] in ('freeze', 'thaw', 'lvcreate')]
    assert ev[ev.index('freeze IRIS'):] == ['freeze IRIS', 'lvcreate irisdb', 'lvcreate irisjrn', 'thaw IRIS',
                                            'freeze CACHE', 'lvcreate cachedb', 'thaw CACHE'], ev
    assert lvm.snapshots() == ['cachedb_irisops_snap', 'irisdb_irisops_snap', 'irisjrn_irisops_snap']
    assert not iris.frozen and not cache.frozen
    for name in ('IRIS', 'CACHE'):
        e = r['instance_results'][name]
        assert e['action'] == 'frozen' and e['thawed_by'] == 'ExternalThaw' and e['frozen_ms'] >= 0
        assert e['deadman']['freeze_recorded'] is True and e['deadman']['disarmed'] is True
    assert not [f for f in os.listdir(deadman_sandbox) if f.endswith('.json')]


def test_staggered_shared_volume_with_both_frozen_and_first_thawed_early(rig, run_module, deadman_sandbox):
    host, lvm, iris, cache = rig
    lvm.routes.append((os.path.join(cache.install_dir, 'mgr', 'journal'), 'irisjrn'))  # CACHE journals on irisjrn
    states = {}

    def look(n):  # who is frozen at each lvcreate (the fakes' own state)
        states[n] = (iris.frozen, cache.frozen)
    lvm.on_lvcreate = look
    failed, r = run_module(iris_lvm_snapshot, dict(ARGS, freeze_mode='staggered'))
    assert not failed, r['msg']
    assert r['steps'] == ['freeze IRIS', 'snapshot %s/irisdb' % VG, 'freeze CACHE', 'snapshot %s/irisjrn' % VG,
                          'thaw IRIS', 'snapshot %s/cachedb' % VG, 'thaw CACHE']
    assert states == {1: (True, False), 2: (True, True), 3: (False, True)}
    assert not iris.frozen and not cache.frozen
    assert r['freeze_window_ms'] == max(r['instance_results'][n]['frozen_ms'] for n in ('IRIS', 'CACHE'))


def test_staggered_failure_after_an_early_thaw_thaws_the_rest_and_removes_all(rig, run_module, deadman_sandbox):
    host, lvm, iris, cache = rig
    lvm.fail_lvcreate_at = 3   # cachedb, after IRIS was snapshotted and thawed
    failed, r = run_module(iris_lvm_snapshot, dict(ARGS, freeze_mode='staggered', deadman_timeout=60))
    assert failed
    assert not iris.frozen and not cache.frozen and lvm.snapshots() == []
    assert 'creating snapshot %s/cachedb_irisops_snap of %s/cachedb failed (snapshot 3 of 3)' % (VG, VG) in r['msg']
    assert r['cleaned_up']['thawed'] == ['CACHE', 'IRIS']
    assert sorted(r['cleaned_up']['snapshots_removed']) == ['%s/irisdb_irisops_snap' % VG,
                                                            '%s/irisjrn_irisops_snap' % VG]
    ev = _events(host)
    assert ev.index('thaw IRIS') < ev.index('freeze CACHE') < ev.index('thaw CACHE') < min(_idx(ev, 'lvremove ')), ev
    assert not [f for f in os.listdir(deadman_sandbox) if f.endswith('.json')]


def test_staggered_check_mode_reports_the_steps(rig, run_module):
    host, lvm, iris, cache = rig
    failed, r = run_module(iris_lvm_snapshot, dict(ARGS, freeze_mode='staggered'), check_mode=True)
    assert not failed and r['steps'][0] == 'freeze IRIS' and r['steps'][-1] == 'thaw CACHE'
    assert not [e for e in _events(host) if e.startswith(('freeze ', 'thaw '))]


def test_staggered_budget_of_a_late_freeze_counts_from_the_arming_of_its_switch(rig, run_module, deadman_sandbox):
    # the switches are armed for every instance before the first freeze and fire deadman_timeout after that: CACHE,
    # frozen after IRIS's two snapshots (0.8 s each), has less than the next lvcreate left and is not snapshotted
    host, lvm, iris, cache = rig
    lvm.lvcreate_delay = 0.8
    failed, r = run_module(iris_lvm_snapshot, dict(ARGS, freeze_mode='staggered', deadman_timeout=4))
    assert failed and lvm.creates == 2, r['msg']
    assert 'freeze budget exceeded' in r['msg'] and '(CACHE)' in r['msg'] and 'deadman_timeout=4' in r['msg']
    assert 'stopped before snapshot %s/cachedb_irisops_snap' % VG in r['msg']
    assert not iris.frozen and not cache.frozen and lvm.snapshots() == []
