# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

import os
import stat
import subprocess
import sys
import time

import pytest

from ansible_collections.irisops.backup.plugins.module_utils import _iris
from ansible_collections.irisops.backup.tests.unit.plugins.iris_fakes import FakeHost, FakeInstance

__metaclass__ = type


# ---------------------------------------------------------------------------------------------------------------
# qlist
# ---------------------------------------------------------------------------------------------------------------

# Sample lines from ontariosystems/isclib instance_test.go (reference §2.1) plus variants seen in scripts.
QLIST_ISCLIB = (
    'INSTTEST^/ensemble/instances/insttest/^2018.1.1.643.0^running, since Fri May 13 22:07:02 2016^iris.cpf^56772'
    '^57772^62972^ok^IRIS^^^/mgr/config\n'
    'INSTTEST^/ensemble/instances/insttest/^2015.2.2.805.0.16216^running, since Fri May 13 22:07:02 2016^cache.cpf'
    '^56772^57772^62972^ok^^Failover^Primary^/mgr/config\n'
    'DOCKER^/ensemble/instances/docker/^2015.2.2.805.0.16216^down, last used Fri May 13 18:12:33 2016^cache.cpf'
    '^56772^57772^62972^^\n'
)


def test_qlist_isclib_samples():
    insts = _iris.parse_qlist(QLIST_ISCLIB)
    assert len(insts) == 3
    a, b, c = insts
    assert a['name'] == 'INSTTEST'
    assert a['install_dir'] == '/ensemble/instances/insttest'  # trailing slash stripped
    assert a['version'] == '2018.1.1.643.0'
    assert a['status'] == 'running' and a['ready'] and a['up']
    assert a['since'] == 'Fri May 13 22:07:02 2016' and a['last_used'] is None
    assert a['cpf_file'] == 'iris.cpf' and a['flavour'] == 'iris'
    assert (a['superserver_port'], a['webserver_port'], a['jdbc_port']) == (56772, 57772, 62972)
    assert a['state'] == 'ok' and a['product'] == 'IRIS'
    assert a['mirror_member_type'] == '' and a['mirror_status'] == '' and a['mirror_member'] is False
    assert a['data_dir'] == '/mgr/config'
    assert b['flavour'] == 'cache' and b['product'] == ''
    assert (b['mirror_member_type'], b['mirror_status'], b['mirror_member']) == ('Failover', 'Primary', True)
    assert c['status'] == 'down' and not c['up'] and not c['ready']
    assert c['last_used'] == 'Fri May 13 18:12:33 2016' and c['since'] is None
    assert c['state'] == '' and c['data_dir'] == '' and c['mirror_status'] == ''


def test_qlist_all_thirteen_fields_present_even_for_short_lines():
    # Very old versions print only 8 fields (no state/product/mirror/data dir).
    insts = _iris.parse_qlist('OLD^/usr/cachesys^2010.2.3.702.0^running, since Tue Jan  4 09:00:00 2011^cache.cpf'
                              '^1972^57772^62972')
    assert len(insts) == 1
    inst = insts[0]
    for field in _iris.QLIST_FIELDS:
        assert field in inst
    assert inst['state'] == '' and inst['product'] == '' and inst['data_dir'] == ''
    assert inst['since'] == 'Tue Jan  4 09:00:00 2011'


@pytest.mark.parametrize('status_raw, status, detail, up, ready', [
    ('running, since Fri May 13 22:07:02 2016', 'running', '', True, True),
    ('sign-on inhibited', 'sign-on inhibited', '', True, False),
    ('sign-on inhibited:primary transition', 'sign-on inhibited', 'primary transition', True, False),
    ('running on node ? (cache.ids missing)', 'running', 'on node ? (cache.ids missing)', True, True),
    ('down, last used Thu Sep 15 18:58:30 2016', 'down', '', False, False),
    ('crashed', 'crashed', 'crashed', False, False),
    ('in use by node othernode', 'in use by another node', 'in use by node othernode', False, False),
    ('', 'unknown', '', False, False),
    ('something new', 'unknown', 'something new', False, False),
])
def test_qlist_status_variants(status_raw, status, detail, up, ready):
    line = 'X^/usr/irissys/^2024.1.0.267.2^%s^iris.cpf^1972^52773^53773^ok^IRIS^^^' % status_raw
    inst = _iris.parse_qlist(line)[0]
    assert inst['status_raw'] == status_raw
    assert inst['status'] == status
    assert inst['status_detail'] == detail
    assert inst['up'] is up
    assert inst['ready'] is ready


def test_qlist_mirror_dr_async_and_crlf_and_garbage():
    text = ('\r\nPRD^/iris/prd/^2023.1.2.450.0^running, since Sat Jan  6 01:02:03 2024^iris.cpf^1972^52773^0^warn'
            '^IRISHealth^Disaster Recovery^Connected^/iris/durable/\r\n'
            'iris: some diagnostic without carets\r\n'
            '^^^\r\n')
    insts = _iris.parse_qlist(text)
    assert [i['name'] for i in insts] == ['PRD']
    i = insts[0]
    assert i['mirror_member_type'] == 'Disaster Recovery' and i['mirror_status'] == 'Connected'
    assert i['data_dir'] == '/iris/durable' and i['install_dir'] == '/iris/prd'
    assert i['state'] == 'warn' and i['product'] == 'IRISHealth'
    assert i['jdbc_port'] == 0


def test_qlist_root_install_dir_kept():
    inst = _iris.parse_qlist('R^/^1^down^iris.cpf^^^^^^^^')[0]
    assert inst['install_dir'] == '/'
    assert inst['superserver_port'] is None


# ---------------------------------------------------------------------------------------------------------------
# parameters.isc / CPF
# ---------------------------------------------------------------------------------------------------------------

PARAMETERS_ISC = """\
install_mode.setup_type: Server
security_settings.iris_user: irisusr
security_settings.iris_group: irisusr
security_settings.manager_user: irisowner
security_settings.manager_group: irisowner
security_settings.initial_level: Normal
port_selection.superserver_port: 1972
product_info.version: 2024.1.0.267.2
postinstall: upgrade
postinstall: cleanup
"""


def test_parameters_isc():
    p = _iris.parse_parameters_isc(PARAMETERS_ISC.replace('\n', '\r\n'))
    assert p['security_settings.manager_user'] == 'irisowner'
    assert p['security_settings.iris_group'] == 'irisusr'
    assert p['port_selection.superserver_port'] == '1972'
    assert p['postinstall'] == 'cleanup'
    assert p['postinstall[]'] == ['upgrade', 'cleanup']


CPF = """\
[ConfigFile]
Product=IRIS
Version=2024.1

[Databases]
IRISSYS=/usr/irissys/mgr/
IRISLIB=/usr/irissys/mgr/irislib/,,,,1
IRISTEMP=/usr/irissys/mgr/iristemp/
USER=/data/db/user/
APP=/data/db/app/,
REMOTEDB=:mirror:MIR:REMOTEDB,ECPSRV

[Journal]
AlternateDirectory=/iris/journal2/
BackupsBeforePurge=3
CurrentDirectory=/iris/journal1/
DaysBeforePurge=2
FreezeOnError=1

[MirrorMember]
AgentAddress=
AsyncMemberType=0

[Mirrors]
MIR=4C1E2B2C-0000-0000-0000-000000000000,2,1,1,8000,0,0,10.0.0.10,,2188,arbiter:2188,0

[config]
wijdir=/iris/wij/
globals=0,0,512,0,0,0
"""


def test_parse_cpf():
    c = _iris.parse_cpf(CPF)
    assert c['databases']['USER']['directory'] == '/data/db/user'
    assert c['databases']['IRISLIB']['directory'] == '/usr/irissys/mgr/irislib'
    assert c['databases']['REMOTEDB']['server'] == 'ECPSRV'
    assert '/data/db/app' in c['database_dirs']
    assert all(not d.startswith(':') for d in c['database_dirs'])  # remote databases left out
    assert c['journal_dirs'] == ['/iris/journal1', '/iris/journal2']  # current first
    assert c['backups_before_purge'] == 3 and c['days_before_purge'] == 2 and c['freeze_on_error'] == 1
    assert c['mirror_qos_timeout_ms'] == 8000
    assert c['mirror_name'] == 'MIR'
    assert c['wij_dir'] == '/iris/wij'
    assert c['sections']['config']['globals'] == '0,0,512,0,0,0'


def test_parse_cpf_not_mirrored_and_missing_settings():
    c = _iris.parse_cpf('[Databases]\nUSER=/u/\n[Journal]\nCurrentDirectory=/j/\n')
    assert c['mirror_qos_timeout_ms'] is None and c['mirror_name'] is None
    assert c['backups_before_purge'] is None
    assert c['journal_dirs'] == ['/j']
    assert c['wij_dir'] is None


def test_mirror_lag_reads_both_distances_and_says_why_when_it_cannot():
    inst = {'name': 'IRIS', 'flavour': 'iris', 'session_cmd': ['iris', 'session'], 'owner_user': None}
    seen = []

    def runner(out, rc=0):
        def run(argv, data=None, timeout=None):
            seen.append((argv, data))
            return rc, out, ''
        return run
    mark = _iris.SCRIPT_MARK
    ok = '%sjournal_distance|1\n%sdatabase_distance|3\n%send|1\n' % (mark, mark, mark)
    assert _iris.mirror_lag(inst, run_as='root', runner=runner(ok)) == (1, 3, None)
    assert seen[0][0][-4:] == ['session', 'IRIS', '-U', '%SYS']
    assert 'DistanceFromPrimaryJournalFiles()' in seen[0][1]
    j, d, err = _iris.mirror_lag(inst, run_as='root', runner=runner('<CLASS DOES NOT EXIST> *SYS.Mirror\n', 1))
    assert (j, d) == (None, None) and err.startswith('instance IRIS: SYS.Mirror.DistanceFromPrimary* failed (rc 1): '
                                                     '<CLASS DOES NOT EXIST>'), err


# ---------------------------------------------------------------------------------------------------------------
# Freeze / thaw logs - the §1.8 text verbatim
# ---------------------------------------------------------------------------------------------------------------

FREEZE_STDOUT_18 = """\
08/11/2021 05:49:43: Backup.General.ExternalFreeze: Suspending system
08/11/2021 05:49:43: Backup.General.ExternalFreeze: Warning, /usr/irissys/mgr/irislocaldata/ is not being journalled
08/11/2021 05:49:43: Backup.General.ExternalFreeze: Warning, 1 databases are not journalled, data will be lost in them if system crashes while suspended

Journal file switched to:
/iris/journal1/20210811.003
08/11/2021 05:49:43: Backup.General.ExternalFreeze: Start a journal restore for this backup with journal file: /iris/journal1/20210811.003

Journal marker set at
offset 262272 of /iris/journal1/20210811.003
08/11/2021 05:49:44: Backup.General.ExternalFreeze: System suspended
"""  # noqa: E501

THAW_STDOUT_18 = """\
08/11/2021 05:49:54: Backup.General.ExternalThaw: Resuming system
08/11/2021 05:49:55: Backup.General.ExternalThaw: System resumed
"""

MESSAGES_LOG_18 = """\
08/11/21-05:49:43:233 (18374) 0 [Utility.Event] Backup.General.ExternalFreeze: Suspending system
08/11/21-05:49:43:233 (18374) 1 [Utility.Event] Backup.General.ExternalFreeze: Warning, /usr/irissys/mgr/irislocaldata/ is not being journalled
08/11/21-05:49:43:342 (18374) 0 [Generic.Event] INTERSYSTEMS IRIS JOURNALING SYSTEM MESSAGE
Journaling switched to: /iris/journal1/20210811.003
08/11/21-05:49:43:342 (18374) 0 [Utility.Event] Backup.General.ExternalFreeze: Start a journal restore for this backup with journal file: /iris/journal1/20210811.003
08/11/21-05:49:44:347 (18374) 0 [Utility.Event] Backup.General.ExternalFreeze: System suspended
08/11/21-05:49:54:410 (18380) 0 [Utility.Event] Backup.General.ExternalThaw: Resuming system
08/11/21-05:49:55:411 (18380) 0 [Utility.Event] Backup.General.ExternalThaw: System resumed
"""  # noqa: E501


@pytest.mark.parametrize('newline', ['\n', '\r\n'])
def test_parse_freeze_log_stdout_form(newline):
    r = _iris.parse_freeze_log(FREEZE_STDOUT_18.replace('\n', newline))
    assert r['journal_file'] == '/iris/journal1/20210811.003'
    assert r['switched_to'] == '/iris/journal1/20210811.003'
    assert r['marker_offset'] == 262272
    assert r['marker_file'] == '/iris/journal1/20210811.003'
    assert r['not_journalled'] == ['/usr/irissys/mgr/irislocaldata/']
    assert len(r['warnings']) == 2
    assert r['warnings'][1].startswith('Warning, 1 databases are not journalled')
    assert r['suspended'] is True
    assert r['suspending_at'] == '2021-08-11T05:49:43'
    assert r['suspended_at'] == '2021-08-11T05:49:44'
    assert r['errors'] == []


def test_parse_freeze_log_messages_log_form():
    r = _iris.parse_freeze_log(MESSAGES_LOG_18)
    assert r['journal_file'] == '/iris/journal1/20210811.003'
    assert r['switched_to'] == '/iris/journal1/20210811.003'
    assert r['marker_offset'] is None  # messages.log has no marker line
    assert r['not_journalled'] == ['/usr/irissys/mgr/irislocaldata/']
    assert r['suspended'] is True
    assert r['suspended_at'] == '2021-08-11T05:49:44.347'


def test_parse_freeze_log_failure_and_empty():
    r = _iris.parse_freeze_log('11/23/2026 10:00:00: Backup.General.ExternalFreeze: Failed to suspend system: '
                               'system is already suspended\n')
    assert r['suspended'] is False and r['journal_file'] is None
    assert r['errors'] and 'Failed to suspend' in r['errors'][0]
    e = _iris.parse_freeze_log('')
    assert e['suspended'] is False and e['warnings'] == [] and e['messages'] == []


def test_parse_thaw_log_both_forms():
    r = _iris.parse_thaw_log(THAW_STDOUT_18.replace('\n', '\r\n'))
    assert r['resumed'] is True
    assert r['resuming_at'] == '2021-08-11T05:49:54' and r['resumed_at'] == '2021-08-11T05:49:55'
    m = _iris.parse_thaw_log(MESSAGES_LOG_18)
    assert m['resumed'] is True and m['resumed_at'] == '2021-08-11T05:49:55.411'
    n = _iris.parse_thaw_log('x: Backup.General.ExternalThaw: System is not suspended, nothing to resume')
    assert n['resumed'] is False


# ---------------------------------------------------------------------------------------------------------------
# ObjectScript builders
# ---------------------------------------------------------------------------------------------------------------

def test_objectscript_string():
    assert _iris.objectscript_string('a"b') == '"a""b"'
    assert _iris.objectscript_string('') == '""'
    with pytest.raises(ValueError):
        _iris.objectscript_string('two\nlines')


def test_external_freeze_expr_positional_order():
    # Same shape as InterSystems' AWS lifecycle.yml: ExternalFreeze("$LOGFILE",,,,,,600,,,300)
    assert (_iris.external_freeze_expr(log_file='/tmp/f.log', external_freeze_timeout=600, wd_suspend_limit=300)
            == '##Class(Backup.General).ExternalFreeze("/tmp/f.log",,,,,,600,,,300)')
    assert _iris.external_freeze_expr() == '##Class(Backup.General).ExternalFreeze()'
    assert (_iris.external_freeze_expr(log_file='/l', text='say "hi"', switch_journal=False, timeout=10,
                                       hibernate=0, verbose=True, external_freeze_timeout=1200, username='u',
                                       password='p', wd_suspend_limit=30)
            == '##Class(Backup.General).ExternalFreeze("/l","say ""hi""",0,10,0,1,1200,"u","p",30)')
    assert _iris.external_freeze_expr(text='t') == '##Class(Backup.General).ExternalFreeze(,"t")'


@pytest.mark.parametrize('kwargs', [
    {'external_freeze_timeout': 'ten'}, {'external_freeze_timeout': -1}, {'switch_journal': 'yes'},
    {'wd_suspend_limit': True}, {'text': 'a\nb'},
])
def test_external_freeze_expr_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        _iris.external_freeze_expr(**kwargs)


def test_other_exprs():
    assert _iris.external_thaw_expr('/l') == '##Class(Backup.General).ExternalThaw("/l")'
    assert _iris.external_thaw_expr() == '##Class(Backup.General).ExternalThaw()'
    assert _iris.is_wd_suspended_expr() == '##Class(Backup.General).IsWDSuspendedExt()'
    expr = _iris.set_history_expr('/l', 'nightly')
    assert '##Class(Backup.General).ExternalSetHistory("/l","nightly")' in expr
    assert expr.startswith('##Class(%SYSTEM.Process).Terminate(,$Select(')
    assert expr.endswith(':5,1:3))')


# ---------------------------------------------------------------------------------------------------------------
# Command building
# ---------------------------------------------------------------------------------------------------------------

IRIS_INST = {'name': 'IRIS', 'flavour': 'iris', 'session_cmd': ['/usr/bin/iris', 'session'],
             'control_cmd': '/usr/bin/iris'}
CACHE_INST = {'name': 'CACHE', 'flavour': 'cache', 'session_cmd': ['/usr/bin/csession'],
              'control_cmd': '/usr/bin/ccontrol'}


def test_session_argv_same_user_runs_directly():
    argv = _iris.build_session_argv(IRIS_INST, 'X', run_as='irisowner', current_user='irisowner')
    assert argv == ['/usr/bin/iris', 'session', 'IRIS', '-U', '%SYS', 'X']
    assert _iris.build_session_argv(CACHE_INST, 'X', run_as=None, current_user='bob') == [
        '/usr/bin/csession', 'CACHE', '-U', '%SYS', 'X']


def test_session_argv_root_uses_runuser():
    argv = _iris.build_session_argv(IRIS_INST, 'X', run_as='irisowner', current_user='root')
    assert os.path.basename(argv[0]) == 'runuser'
    assert argv[1:4] == ['-u', 'irisowner', '--']
    assert argv[4:] == ['/usr/bin/iris', 'session', 'IRIS', '-U', '%SYS', 'X']


def test_session_argv_other_user_uses_sudo_non_interactive():
    argv = _iris.build_session_argv(CACHE_INST, 'X', run_as='cacheusr', current_user='deploy')
    assert os.path.basename(argv[0]) == 'sudo'
    assert argv[1:5] == ['-n', '-u', 'cacheusr', '--']
    assert argv[5:] == ['/usr/bin/csession', 'CACHE', '-U', '%SYS', 'X']


def test_session_flavour_default_commands_without_discovery():
    assert _iris.build_session_argv({'name': 'C', 'flavour': 'cache'}, 'X', current_user='u')[0] == 'csession'
    argv = _iris.build_session_argv({'name': 'I', 'flavour': 'iris'}, 'X', current_user='u')
    assert argv[:2] == ['iris', 'session']


def test_stat_argv():
    argv = _iris.build_stat_argv(CACHE_INST, ['-W'], current_user='root')
    assert argv == ['/usr/bin/ccontrol', 'stat', 'CACHE', '-W']


def test_credentials_go_to_stdin_never_argv():
    seen = []

    def runner(argv, data=None, timeout=None):
        seen.append((argv, data, timeout))
        return 5, 'Password: s3cr3t-echo', ''

    rc, out, err, argv, dur = _iris.session(runner, IRIS_INST, _iris.is_wd_suspended_expr(), run_as='irisowner',
                                            username='backup', password='s3cr3t', timeout=7, current_user='root')
    assert rc == 5
    (sent_argv, data, timeout), = seen
    assert data == 'backup\ns3cr3t\n'
    assert timeout == 7
    assert not any('s3cr3t' in a for a in sent_argv)
    assert not any('backup' == a for a in sent_argv)
    assert argv == sent_argv
    assert 's3cr3t' not in out  # echoed secrets are scrubbed


def test_no_credentials_means_no_stdin():
    seen = []
    _iris.session(lambda a, d=None, t=None: seen.append(d) or (3, '', ''), IRIS_INST, 'X', current_user='u')
    assert seen == [None]


# ---------------------------------------------------------------------------------------------------------------
# Exit codes
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('method', ['freeze', 'thaw', 'is_wd_suspended', 'set_history'])
def test_interpret_rc_5_and_3(method):
    assert _iris.interpret_rc(method, 5)[0] == 'success'
    assert _iris.interpret_rc(method, 3)[0] == 'failure'


@pytest.mark.parametrize('rc, out, hint', [
    (1, 'Access Denied\n', 'login refused'),
    (1, '<NAMESPACE> %SYS\n', 'namespace'),
    (1, '<PROTECT> (user x lacks %Manager)', 'privileges'),
    (1, '<IRIS Startup Error>: instance IRIS is not running', 'not running'),
    (None, '', 'timeout'),
    (0, '', 'unexpected exit status'),
    (1, 'sudo: a password is required', 'sudo'),
])
def test_interpret_rc_other_codes_are_errors_with_a_hint(rc, out, hint):
    outcome, msg = _iris.interpret_rc('freeze', rc, out, '')
    assert outcome == 'error'
    assert 'neither 5 nor 3' in msg
    assert hint in msg


# ---------------------------------------------------------------------------------------------------------------
# Discovery
# ---------------------------------------------------------------------------------------------------------------

def _host(*insts, **kw):
    return FakeHost(list(insts), **kw)


def test_discover_merges_both_flavours_and_reads_files():
    host = _host(FakeInstance('IRIS', 'iris', manager_user='irisowner', owner_user='irisusr'),
                 FakeInstance('CACHE', 'cache', manager_user='cacheusr', owner_user='cacheusr',
                              status='down, last used Mon Nov 23 09:00:00 2026'))
    insts, errors = _iris.discover_instances(runner=host, which=host.which, read_file=host.read_file)
    assert errors == []
    by = dict((i['name'], i) for i in insts)
    assert set(by) == {'IRIS', 'CACHE'}
    iris, cache = by['IRIS'], by['CACHE']
    assert iris['flavour'] == 'iris' and cache['flavour'] == 'cache'
    assert iris['session_cmd'] == ['/usr/bin/iris', 'session']
    assert cache['session_cmd'] == ['/usr/bin/csession']
    assert cache['control_cmd'] == '/usr/bin/ccontrol'
    assert iris['manager_user'] == 'irisowner' and iris['owner_user'] == 'irisusr'
    assert cache['manager_user'] == 'cacheusr' and cache['owner_group'] == 'cacheusr'
    assert cache['install_dir'] == '/usr/cachesys'
    assert iris['journal_dirs'] == ['/usr/irissys/mgr/journal', '/usr/irissys/mgr/journal2']
    assert '/usr/irissys/mgr/user' in iris['database_dirs']
    assert iris['backups_before_purge'] == 2
    assert cache['status'] == 'down'
    assert _iris.default_run_as(cache) == 'cacheusr'
    assert iris['messages_log'] == '/usr/irissys/mgr/messages.log'
    assert cache['messages_log'] == '/usr/cachesys/mgr/cconsole.log'


def test_discover_only_one_flavour_installed_and_failing_qlist():
    host = _host(FakeInstance('IRIS'), has_ccontrol=False)
    insts, errors = _iris.discover_instances(runner=host, which=host.which, read_file=host.read_file)
    assert [i['name'] for i in insts] == ['IRIS'] and errors == []

    def broken(argv, data=None, timeout=None):
        return 1, '', 'license expired'
    insts, errors = _iris.discover_instances(runner=broken, which=host.which, read_file=host.read_file)
    assert insts == [] and 'license expired' in errors[0]


def test_discover_unreadable_files_are_warnings():
    host = _host(FakeInstance('IRIS'))

    def nothing(path):
        raise IOError(13, 'Permission denied', path)
    insts, errors = _iris.discover_instances(runner=host, which=host.which, read_file=nothing)
    assert insts[0]['manager_user'] is None and insts[0]['journal_dirs'] == []
    assert any('Permission denied' in w for w in insts[0]['discovery_warnings'])


def test_select_instances():
    host = _host(FakeInstance('IRIS'), FakeInstance('CACHE', 'cache'),
                 FakeInstance('OLD', status='down, last used Sun Nov 22 08:00:00 2026'))
    insts, dummy = _iris.discover_instances(runner=host, which=host.which, read_file=host.read_file)
    sel, err = _iris.select_instances(insts, 'all')
    assert sorted(i['name'] for i in sel) == ['CACHE', 'IRIS'] and err == []
    sel, err = _iris.select_instances(insts, ['iris', 'IRIS'])
    assert [i['name'] for i in sel] == ['IRIS'] and err == []
    sel, err = _iris.select_instances(insts, ['NOPE'])
    assert sel == [] and 'unknown instance' in err[0] and 'IRIS' in err[0] and 'CACHE' in err[0]
    sel, err = _iris.select_instances(insts, ['all', 'IRIS'])
    assert err
    prep = _iris.prepare_selection(['OLD'], runner=host, which=host.which, read_file=host.read_file)
    assert any('down' in e for e in prep['errors'])


# ---------------------------------------------------------------------------------------------------------------
# High level against the fake host
# ---------------------------------------------------------------------------------------------------------------

def _discover(host):
    insts, dummy = _iris.discover_instances(runner=host, which=host.which, read_file=host.read_file)
    return dict((i['name'], i) for i in insts)


def test_freeze_then_already_frozen_then_thaw(tmp_path):
    fi = FakeInstance('IRIS')
    host = _host(fi)
    inst = _discover(host)['IRIS']
    r = _iris.freeze(host, inst, tmp_dir=str(tmp_path), text='nightly')
    assert r['changed'] and not r['failed'] and fi.frozen
    assert r['journal_file'] == '/usr/irissys/mgr/journal/20261123.002'
    assert r['marker_offset'] == 262272
    assert r['not_journalled'] == ['/usr/irissys/mgr/irislocaldata/']
    assert r['frozen_at'].endswith('Z') and r['log_suspended_at']
    assert 'System suspended' in r['log']
    assert r['rc'] == 5 and r['command'][-1].startswith('##Class(Backup.General).ExternalFreeze(')
    assert os.listdir(str(tmp_path)) == []  # temporary log file and directory removed
    calls = [c['argv'][-1] for c in host.calls if '-U' in c['argv']]
    assert 'IsWDSuspendedExt' in calls[0] and 'ExternalFreeze' in calls[1]

    again = _iris.freeze(host, inst, tmp_dir=str(tmp_path))
    assert not again['changed'] and not again['failed'] and again['already_frozen']
    assert not host.session_calls('IRIS', 'ExternalFreeze')[1:]  # no second ExternalFreeze

    t = _iris.thaw(host, inst, tmp_dir=str(tmp_path))
    assert t['changed'] and t['thawed_by'] == 'ExternalThaw' and not fi.frozen
    assert t['log_resumed_at']
    t2 = _iris.thaw(host, inst, tmp_dir=str(tmp_path))
    assert not t2['changed'] and not t2['failed']
    assert len(host.session_calls('IRIS', 'ExternalThaw')) == 1


def test_freeze_with_user_log_file_reads_only_appended_part(tmp_path):
    fi = FakeInstance('IRIS')
    host = _host(fi)
    inst = _discover(host)['IRIS']
    log = tmp_path / 'freeze.log'
    log.write_text(FREEZE_STDOUT_18)  # an earlier freeze in the same file
    r = _iris.freeze(host, inst, log_file=str(log))
    assert r['journal_file'] == '/usr/irissys/mgr/journal/20261123.002'  # not the 2021 one
    assert '20210811' not in r['log']
    assert log.exists()


def test_freeze_failure_rc3_thaws_if_suspended_anyway(tmp_path):
    fi = FakeInstance('IRIS')
    fi.freeze_rc = 3
    fi.freeze_suspends_anyway = True
    host = _host(fi)
    inst = _discover(host)['IRIS']
    r = _iris.freeze(host, inst, tmp_dir=str(tmp_path))
    assert r['failed'] and not r['changed']
    assert r['suspended_after_failure'] and r['thawed_after_failure']
    assert not fi.frozen
    assert 'IRIS' in r['msg'] and 'ExternalFreeze' in r['msg'] and 'Next:' in r['msg']


def test_freeze_login_refused_is_error_before_anything(tmp_path):
    fi = FakeInstance('IRIS')
    fi.login_refused = True
    host = _host(fi)
    r = _iris.freeze(host, _discover(host)['IRIS'], tmp_dir=str(tmp_path))
    assert r['failed'] and not fi.frozen
    assert 'login refused' in r['msg'] and 'nothing was frozen' in r['msg']
    assert not host.session_calls('IRIS', 'ExternalFreeze')


def test_freeze_timeout_thaws(tmp_path):
    fi = FakeInstance('IRIS')
    fi.freeze_hang = True
    host = _host(fi)
    r = _iris.freeze(host, _discover(host)['IRIS'], tmp_dir=str(tmp_path), timeout=5)
    assert r['failed'] and r['rc'] is None
    assert r['thawed_after_failure'] and not fi.frozen
    assert 'timeout' in r['msg']


def test_password_login(tmp_path):
    fi = FakeInstance('IRIS')
    fi.require_password = ('backup', 'pw"with quote')
    host = _host(fi)
    inst = _discover(host)['IRIS']
    bad = _iris.freeze(host, inst, tmp_dir=str(tmp_path))
    assert bad['failed'] and 'login refused' in bad['msg'] and not fi.frozen
    good = _iris.freeze(host, inst, tmp_dir=str(tmp_path), username='backup', password='pw"with quote')
    assert good['changed'] and fi.frozen
    for c in host.calls:
        assert not any('pw"with' in a for a in c['argv'])


def test_thaw_failure_with_and_without_stat_fallback(tmp_path):
    fi = FakeInstance('CACHE', 'cache')
    host = _host(fi)
    inst = _discover(host)['CACHE']
    fi.frozen = True
    fi.thaw_hang = True
    r = _iris.thaw(host, inst, tmp_dir=str(tmp_path), timeout=3)
    assert r['failed'] and fi.frozen and 'stat_fallback' in r['msg']
    r = _iris.thaw(host, inst, tmp_dir=str(tmp_path), timeout=3, stat_fallback=True)
    assert not r['failed'] and r['changed'] and r['thawed_by'] == 'stat -W' and not fi.frozen
    assert r['stat_fallback']['command'] == ['/usr/bin/ccontrol', 'stat', 'CACHE', '-W']
    stat_call = [c for c in host.calls if c['argv'][1:2] == ['stat']][-1]
    assert stat_call['timeout'] == _iris.STAT_MIN_TIMEOUT  # not cut short by the 3 s session timeout


def test_thaw_of_an_instance_that_went_down_reports_it_down_not_frozen(tmp_path):
    fi = FakeInstance('IRIS')
    host = _host(fi)
    inst = _discover(host)['IRIS']
    fi.frozen = True
    fi.status = 'down, last used Mon Nov 23 10:05:00 2026'   # stopped while frozen: no freeze is held any more
    for check_state in (False, True):
        r = _iris.thaw(host, inst, tmp_dir=str(tmp_path), check_state=check_state, stat_fallback=True)
        assert r['failed'] and r['down'] is True and r['frozen'] is False, r
        assert 'the instance is not running' in r['msg']
        assert "The instance is down (qlist: 'down, last used Mon Nov 23 10:05:00 2026'), so it is not frozen" in r['msg']
        assert 'Next: find out why it stopped' in r['msg'] and '`iris start IRIS`' in r['msg']
        assert 'stat_fallback' not in r  # no irisstat -W against a stopped instance
    # a thaw that fails while the instance runs is not "down"
    fi.status = 'running, since Mon Nov 23 10:06:00 2026'
    fi.thaw_rc = 3
    r = _iris.thaw(host, inst, tmp_dir=str(tmp_path), check_state=False)
    assert r['failed'] and 'down' not in r


def test_qlist_status(tmp_path):
    fi = FakeInstance('IRIS')
    host = _host(fi)
    inst = _discover(host)['IRIS']
    assert _iris.qlist_status(host, inst)['status'] == _iris.STATUS_RUNNING
    fi.status = 'down, last used Mon Nov 23 10:05:00 2026'
    st = _iris.qlist_status(host, inst)
    assert st['status'] == _iris.STATUS_DOWN and st['status_raw'].startswith('down')
    assert _iris.qlist_status(host, {'name': 'IRIS'}) is None            # no control command known
    assert _iris.qlist_status(host, dict(inst, name='GONE')) is None     # not listed


def test_set_history_refused_while_frozen(tmp_path):
    fi = FakeInstance('IRIS')
    host = _host(fi)
    inst = _discover(host)['IRIS']
    fi.frozen = True
    r = _iris.set_history(host, inst, text='x', tmp_dir=str(tmp_path))
    assert r['failed'] and r['refused'] and fi.history == []
    fi.frozen = False
    r = _iris.set_history(host, inst, text='snap 1', tmp_dir=str(tmp_path))
    assert r['changed'] and not r['failed'] and fi.history == ['snap 1']


def test_freeze_many_all_ok(tmp_path):
    a, b = FakeInstance('IRIS'), FakeInstance('CACHE', 'cache')
    host = _host(a, b)
    insts = list(_discover(host).values())
    res = _iris.freeze_many(host, insts, tmp_dir=str(tmp_path))
    assert not res['failed'] and res['changed']
    assert a.frozen and b.frozen
    assert res['rolled_back'] == {}


@pytest.mark.parametrize('mode', ['rc3', 'rc1', 'hang', 'suspended_anyway'])
def test_freeze_many_rolls_back_when_one_fails(tmp_path, mode):
    good, bad = FakeInstance('IRIS'), FakeInstance('CACHE', 'cache')
    good.freeze_delay = 0.05
    if mode == 'rc3':
        bad.freeze_rc = 3
    elif mode == 'rc1':
        bad.freeze_rc = 1
    elif mode == 'hang':
        bad.freeze_hang = True
    else:
        bad.freeze_rc = 3
        bad.freeze_suspends_anyway = True
    host = _host(good, bad)
    insts = list(_discover(host).values())
    res = _iris.freeze_many(host, insts, tmp_dir=str(tmp_path), timeout=5)
    assert res['failed']
    assert not good.frozen and not bad.frozen
    assert 'CACHE' in res['msg'] and 'IRIS' in res['msg']
    assert 'IRIS' in res['rolled_back'] and not res['rolled_back']['IRIS']['failed']
    assert res['results']['IRIS']['rolled_back'] is True
    assert res['still_frozen'] == []
    assert not res['changed']


def test_freeze_many_does_not_thaw_instances_frozen_by_someone_else(tmp_path):
    pre, bad = FakeInstance('IRIS'), FakeInstance('CACHE', 'cache')
    pre.frozen = True  # frozen before the call: not ours to thaw
    bad.freeze_rc = 3
    host = _host(pre, bad)
    res = _iris.freeze_many(host, list(_discover(host).values()), tmp_dir=str(tmp_path))
    assert res['failed'] and pre.frozen
    assert 'IRIS' not in res['rolled_back']


def test_freeze_many_runs_concurrently(tmp_path):
    insts = [FakeInstance('I%d' % n) for n in range(4)]
    for i in insts:
        i.freeze_delay = 0.5
    host = _host(*insts)
    start = time.time()
    res = _iris.freeze_many(host, list(_discover(host).values()), tmp_dir=str(tmp_path))
    assert not res['failed']
    assert time.time() - start < 1.5  # 4 x 0.5 s in parallel, not 2 s in a row


# ---------------------------------------------------------------------------------------------------------------
# LogCapture and the real subprocess runner
# ---------------------------------------------------------------------------------------------------------------

def test_log_capture_private_temp_file(tmp_path):
    cap = _iris.LogCapture(tmp_dir=str(tmp_path), run_as=None)
    d = os.path.dirname(cap.path)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o711
    assert stat.S_IMODE(os.stat(cap.path).st_mode) == 0o660
    with open(cap.path, 'a') as f:
        f.write('hello\n')
    assert cap.read() == 'hello\n'
    cap.cleanup()
    assert not os.path.exists(d)


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to chown')
def test_log_capture_owned_by_run_as_user(tmp_path):
    cap = _iris.LogCapture(tmp_dir=str(tmp_path), run_as='nobody', current_user='root')
    st = os.stat(cap.path)
    import pwd
    assert st.st_uid == pwd.getpwnam('nobody').pw_uid
    cap.cleanup()


def test_subprocess_runner_stdin_and_rc():
    rc, out, err = _iris.subprocess_runner([sys.executable, '-c', 'import sys; d=sys.stdin.read(); '
                                            'sys.stdout.write(d.upper()); sys.exit(5)'], data='ab\ncd\n', timeout=10)
    assert (rc, out, err) == (5, 'AB\nCD\n', '')


def test_subprocess_runner_stdin_is_devnull_without_data():
    rc, out, err = _iris.subprocess_runner([sys.executable, '-c', 'import sys; print(repr(sys.stdin.read()))'],
                                           timeout=10)
    assert rc == 0 and out.strip() == "''"


def test_subprocess_runner_missing_command():
    rc, out, err = _iris.subprocess_runner(['/nonexistent/iris', 'qlist'])
    assert rc == 127 and 'nonexistent' in err


def test_subprocess_runner_timeout_kills_process_group(tmp_path):
    pidfile = tmp_path / 'grandchild.pid'
    script = 'sleep 60 & echo $! > %s; wait' % pidfile
    start = time.time()
    rc, out, err = _iris.subprocess_runner(['sh', '-c', script], timeout=1)
    assert rc is None
    assert time.time() - start < 10
    pid = int(pidfile.read_text().strip())
    for dummy in range(50):
        try:
            os.kill(pid, 0)
        except OSError:
            break
        # reap if it is our zombie (it is not our child, so just wait a bit)
        time.sleep(0.1)
    else:
        subprocess.call(['kill', '-9', str(pid)])
        pytest.fail('grandchild %d survived the timeout' % pid)


@pytest.mark.parametrize('name, is_journal', [
    ('20210811.003', True),
    ('H20152_20170104.011', True),        # journal file prefix, as in the seed article's log lines
    ('MIRRORA-20240101.001', True),       # mirror journal
    ('20240101.1', False),
    ('iris.cpf', False),
    ('20240101.001.bak', False),
    ('CACHE.DAT', False),
])
def test_list_journal_files_recognises_prefixed_names(tmp_path, name, is_journal):
    (tmp_path / name).write_text('x')
    (tmp_path / 'sub').mkdir()
    assert _iris.list_journal_files([str(tmp_path), str(tmp_path / 'missing')]) == (
        [str(tmp_path / name)] if is_journal else [])
