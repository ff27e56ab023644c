# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""module_utils/_journal.py: the builders (exact ObjectScript), the parsers (on documented transcripts), the exit
status convention, list_completed_journals; and the scripts run for real against the test emulator (skipped when
not root or when tests/emulator is not there)."""

from __future__ import absolute_import, division, print_function

import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from ansible_collections.irisops.backup.plugins.module_utils import _iris, _journal

__metaclass__ = type


# ---------------------------------------------------------------------------------------------------------------
# helpers and stop points
# ---------------------------------------------------------------------------------------------------------------

def test_canonical_dir():
    assert _journal.canonical_dir('/usr/irissys/mgr/user') == '/usr/irissys/mgr/user/'
    assert _journal.canonical_dir('/usr/irissys/mgr/user/') == '/usr/irissys/mgr/user/'
    assert _journal.canonical_dir('/a/./b//c/../d') == '/a/b/d/'
    for bad in ('', None, 'relative/dir'):
        with pytest.raises(ValueError):
            _journal.canonical_dir(bad)


def test_horolog():
    assert _journal.horolog(datetime.datetime(1840, 12, 31, 0, 0, 1)) == '0,1'
    # 2024-04-26 15:38:32 (the time of the documented restore transcript)
    assert _journal.horolog(datetime.datetime(2024, 4, 26, 15, 38, 32)) == '66956,56312'
    assert _journal.horolog('66956,56312') == '66956,56312'
    # the form the drill's until is documented in (iris_restore_drill, irisops-backup drill --until)
    assert _journal.horolog('2024-04-26 15:38:32') == '66956,56312'
    assert _journal.horolog('2024-04-26T15:38') == '66956,56280'
    epoch = 1714145912.0
    assert _journal.horolog(epoch) == _journal.horolog(datetime.datetime.fromtimestamp(epoch))
    for bad in (True, 'yesterday', None, '2024-13-01 00:00:00'):
        with pytest.raises(ValueError):
            _journal.horolog(bad)


def test_normalize_stop_and_condition():
    assert _journal.normalize_stop(None) is None
    assert _journal.normalize_stop({'file': '/j/20240101.002', 'offset': '4096'}) == \
        {'file': '/j/20240101.002', 'offset': 4096}
    assert _journal.normalize_stop({'time': '66956,56312'}) == {'time': '66956,56312'}
    for bad in ({'file': '/j/x'}, {'offset': 1}, {'file': '/j/x', 'offset': -1}, {'file': '/j/x', 'offset': 'a'},
                {'time': '66956,56312', 'file': '/j/x'}, 'x'):
        with pytest.raises(ValueError):
            _journal.normalize_stop(bad)
    assert _journal.stop_condition({'file': 'f', 'offset': 123}) == "(addr'>123)"
    assert _journal.stop_condition({'time': '2,5'}) == '(($Piece(time,",")*86400+$Piece(time,",",2))\'>172805)'
    assert _journal.filter_routine_line({'file': 'f', 'offset': 7}) == \
        "ZIRISOPSJF(jidsys,dir,glo,type,restmode,addr,time) Set restmode=(addr'>7) Quit"


# ---------------------------------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------------------------------

END = ['Write "IRISOPS|end|1",!']


def test_current_file_and_switch_lines():
    assert _journal.current_file_lines() == [
        'Set cur=##Class(%SYS.Journal.System).GetCurrentFileName()',
        'Write "IRISOPS|journal.current|",cur,!'] + END + [
        'Do ##Class(%SYSTEM.Process).Terminate(,$Select(cur\'="":5,1:3))']
    lines = _journal.switch_lines()
    assert lines[2:4] == ['Do ^JRNSWTCH', '']  # a blank line answers a prompt with its default
    assert lines[-1] == 'Do ##Class(%SYSTEM.Process).Terminate(,$Select((new\'="")&(new\'=old):5,1:3))'


def test_restore_lines_whole_files():
    lines = _journal.restore_lines('/ship/20240426.002', '/ship/20240426.004',
                                   redirects=[('/usr/irissys/mgr/t1', '/drill/t1')], locations=['/ship'])
    assert lines == [
        'Set r=##Class(Journal.Restore).%New()',
        'Set r.FirstFile="/ship/20240426.002"',
        'Set r.LastFile="/ship/20240426.004"',
        'Do r.UseJournalLocation("/ship/")',
        'Set r.AbortOnJournalError=1', 'Set r.AbortOnDatabaseError=1', 'Set r.DisableJournaling=1',
        'Set xsc=r.SelectUpdates("/usr/irissys/mgr/t1/") Write "IRISOPS|restore.r.select.1|",'
        '$SYSTEM.Status.IsOK(xsc),"|",$SYSTEM.Status.GetErrorText(xsc),!',
        'Set xsc=r.RedirectDatabase("/usr/irissys/mgr/t1/","/drill/t1/") Write "IRISOPS|restore.r.redirect.1|",'
        '$SYSTEM.Status.IsOK(xsc),"|",$SYSTEM.Status.GetErrorText(xsc),!',
        'Set sc=r.Run()',
        'Write "IRISOPS|restore.run|",$SYSTEM.Status.IsOK(sc),"|",$SYSTEM.Status.GetErrorText(sc),!',
    ] + END + ['Do ##Class(%SYSTEM.Process).Terminate(,$Select($SYSTEM.Status.IsOK(sc):5,1:3))']
    # no LastFile, no redirection: everything in the journal, onto the directories it names
    lines = _journal.restore_lines('20240426.002')
    assert 'Set r.FirstFile="20240426.002"' in lines and not any('LastFile' in x for x in lines)
    assert not any('SelectUpdates' in x or 'Filter' in x or '%Routine' in x for x in lines)
    # quotes are doubled, control characters refused
    lines = _journal.restore_lines('/j/a"b/20240101.001')
    assert 'Set r.FirstFile="/j/a""b/20240101.001"' in lines
    with pytest.raises(ValueError):
        _journal.restore_lines('/j/a\nb')
    with pytest.raises(ValueError):
        _journal.restore_lines('')
    with pytest.raises(ValueError):
        _journal.restore_lines('/j/20240101.001', redirects=[('/p/a', '/d/x'), ('/p/b', '/d/x/')])


def test_restore_lines_stop_in_first_file():
    lines = _journal.restore_lines('/j/20240101.002', redirects=[('/p/u', '/d/u')],
                                   stop={'file': '/ship/20240101.002', 'offset': 8300})
    text = '\n'.join(lines)
    assert lines[0] == 'Set rt=##Class(%Routine).%New("ZIRISOPSJF.INT")'
    assert lines[1] == ('Do rt.WriteLine("ZIRISOPSJF(jidsys,dir,glo,type,restmode,addr,time) '
                        'Set restmode=(addr\'>8300) Quit")')
    assert 'Set r.LastFile="/j/20240101.002"' in lines and 'Set r.Filter="^ZIRISOPSJF"' in lines
    # the restore never runs without its filter
    assert 'Set sc=$Select(($SYSTEM.Status.IsOK(fsc)&$SYSTEM.Status.IsOK(csc)):r.Run(),' in text
    assert 'Set dsc=##Class(%Routine).Delete("ZIRISOPSJF.INT")' in lines
    assert 'r2' not in text


def test_restore_lines_stop_in_a_later_file():
    files = ['/s/20240101.001', '/s/20240101.002', '/s/20240101.003', '/s/20240102.001']
    lines = _journal.restore_lines('/s/20240101.002', redirects=[('/p/u', '/d/u')],
                                   stop={'file': '/s/20240102.001', 'offset': 5000}, files=files)
    text = '\n'.join(lines)
    # run 1: first .. the file before the stop file, no filter; run 2: the stop file with the filter, only when
    # run 1 succeeded
    assert 'Set r.FirstFile="/s/20240101.002"' in lines and 'Set r.LastFile="/s/20240101.003"' in lines
    assert 'Set r.Filter' not in text and 'Set sc=r.Run()' in lines
    assert 'Set r2.FirstFile="/s/20240102.001"' in lines and 'Set r2.LastFile="/s/20240102.001"' in lines
    assert 'Set r2.Filter="^ZIRISOPSJF"' in lines
    assert ('Set sc2=$Select(($SYSTEM.Status.IsOK(fsc)&$SYSTEM.Status.IsOK(csc))&($SYSTEM.Status.IsOK(sc)):'
            'r2.Run(),') in text
    assert lines[-1] == ('Do ##Class(%SYSTEM.Process).Terminate(,$Select($SYSTEM.Status.IsOK(sc)&'
                         '$SYSTEM.Status.IsOK(sc2):5,1:3))')
    # the chain is needed to know the file before the stop file
    for bad in (None, files[2:], ['/s/20240102.001', '/s/20240101.002']):
        with pytest.raises(ValueError):
            _journal.restore_lines('/s/20240101.002', stop={'file': '/s/20240102.001', 'offset': 1}, files=bad)
    with pytest.raises(ValueError):
        _journal.restore_lines('/s/20240101.002', '/s/20240101.003', stop={'file': '/s/20240102.001', 'offset': 1},
                               files=files)


def test_restore_lines_stop_at_a_time():
    when = datetime.datetime(2024, 4, 26, 15, 38, 32)
    lines = _journal.restore_lines('/s/20240426.002', '/s/20240426.009', stop={'time': when})
    assert ('Do rt.WriteLine("ZIRISOPSJF(jidsys,dir,glo,type,restmode,addr,time) '
            'Set restmode=(($Piece(time,"","")*86400+$Piece(time,"","",2))\'>%d) Quit")'
            % (66956 * 86400 + 56312)) in lines
    assert 'Set r.LastFile="/s/20240426.009"' in lines and 'Set r.Filter="^ZIRISOPSJF"' in lines


def test_integrity_lines():
    lines = _journal.integrity_lines(['/d/user', '/d/app/'])
    assert lines == [
        'Kill ^IRIS.TempIntegrityOutput(+$JOB)',
        'Set sc=$$CheckList^Integrity(,$ListBuild("/d/user/","/d/app/"),0,,1)',
        'Do Display^Integrity(,1)',
        'Write "IRISOPS|integrity.check|",$SYSTEM.Status.IsOK(sc),"|",$SYSTEM.Status.GetErrorText(sc),!',
        'Kill ^IRIS.TempIntegrityOutput(+$JOB)',
    ] + END + ['Do ##Class(%SYSTEM.Process).Terminate(,$Select($SYSTEM.Status.IsOK(sc):5,1:3))']
    assert _journal.integrity_lines(['/d/u'], flavour='cache')[0] == 'Kill ^CacheTempIntegrityOutput(+$JOB)'
    assert 'Do Display^Integrity(,0)' in _journal.integrity_lines(['/d/u'], flags=0)
    with pytest.raises(ValueError):
        _journal.integrity_lines([])


# ---------------------------------------------------------------------------------------------------------------
# parsers (documented transcripts)
# ---------------------------------------------------------------------------------------------------------------

# Journal.Restore.Run() in a terminal, IRIS 2024.1 (InterSystems Japan, iijimam/IRISBackupAndRestore OnlineBackup.md)
RUN_TRANSCRIPT = """
%SYS>set status=##class(ZRestore.Journal).RedirectTest()

Journal file being applied: /usr/irissys/mgr/journal/20240426.002
/usr/irissys/mgr/journal/20240426.002
  2.91% 100.00%
[Journal restore completed at 20240426 15:38:32]

The following databases have been updated:

1. /usr/irissys/mgr/t1rest/

%SYS>
"""

# ^JRNRESTO's end (Data Integrity Guide, several files and skipped databases)
GUIDE_TRANSCRIPT = """c:\\MyIRIS1\\mgr\\journal\\20230406.001
 35.73% 70.61% 100.00%
c:\\MyIRIS1\\mgr\\journal\\20230406.002
 35.73% 70.61% 100.00%
c:\\MyIRIS1\\mgr\\journal\\20230406.003
 100.00%
[Journal restore completed at 20230407 02:25:31]

The following databases have been updated:

1. c:\\MyIRIS1\\mgr\\source22\\
2. c:\\MyIRIS1\\mgr\\source23\\

The following databases have been skipped:

1. /bench/user/InterSystems/IRIS/162/
2. /scratch1/user/InterSystems/IRIS/p750.162/mgr/
"""


def test_parse_restore_output_documented():
    out = _journal.parse_restore_output(RUN_TRANSCRIPT)
    assert out['applying'] == '/usr/irissys/mgr/journal/20240426.002'
    assert out['files'] == [{'path': '/usr/irissys/mgr/journal/20240426.002', 'progress': ['2.91%', '100.00%'],
                             'complete': True}]
    assert out['finished'] == 'completed' and out['finished_at'] == '20240426 15:38:32'
    assert out['updated'] == ['/usr/irissys/mgr/t1rest/'] and out['skipped'] == []
    out = _journal.parse_restore_output(GUIDE_TRANSCRIPT)
    assert out['complete_files'] == ['c:\\MyIRIS1\\mgr\\journal\\20230406.00%d' % i for i in (1, 2, 3)]
    assert out['updated'] == ['c:\\MyIRIS1\\mgr\\source22\\', 'c:\\MyIRIS1\\mgr\\source23\\']
    assert len(out['skipped']) == 2
    # one line per file (the guide's flattened form)
    out = _journal.parse_restore_output('/j/20230406.001 35.73% 100.00%\n/j/20230406.002 40.00%\n')
    assert out['complete_files'] == ['/j/20230406.001'] and out['files'][1]['complete'] is False


def test_parse_restore_output_stopped():
    text = ("%SYS>Journal file being applied: /s/20240101.001\n/s/20240101.001\n  63.45% 100.00%\n"
            "/s/20240101.002\n  10.00%\n[Journal restore aborted at 20240101 10:00:00]\nsomething went wrong\n")
    out = _journal.parse_restore_output(text)
    assert out['complete_files'] == ['/s/20240101.001'] and out['finished'] == 'aborted'


def res(rc, values, stdout='', complete=True, errors=(), denied=False):
    v = dict(values)
    if complete:
        v['end'] = '1'
    return {'rc': rc, 'values': v, 'stdout': stdout, 'complete': complete, 'errors': list(errors),
            'denied': denied}


def test_interpret_run():
    assert _journal.interpret_run(res(5, {}))[0] == 'success'
    assert _journal.interpret_run(res(3, {}))[0] == 'failure'
    for r, word in ((res(0, {}), 'unexpected'), (res(1, {}, complete=False, denied=True), 'login refused'),
                    (res(None, {}, complete=False), 'timeout'),
                    (res(0, {}, complete=False, errors=['<CLASS DOES NOT EXIST> *Journal.Restore']), 'CLASS'),
                    (res(5, {}, complete=False), 'did not reach its end')):
        outcome, msg = _journal.interpret_run(r)
        assert outcome == 'error' and word in msg, msg


def test_restore_result_point_reached():
    ok = {'restore.run': '1|'}
    r = _journal.restore_result(res(5, ok, RUN_TRANSCRIPT))
    assert r['ok'] and r['outcome'] == 'success'
    assert r['point_reached'] == {'file': '/usr/irissys/mgr/journal/20240426.002', 'offset': None}
    stop = {'file': '/s/20240101.002', 'offset': 900}
    r = _journal.restore_result(res(5, dict(ok, **{'restore.run2': '1|'}), RUN_TRANSCRIPT), stop)
    assert r['point_reached'] == stop
    # a failure claims only the files that were applied completely
    text = "Journal file being applied: /s/1/20240101.001\n/s/1/20240101.001\n 100.00%\n/s/1/20240101.002\n 5.00%\n"
    r = _journal.restore_result(res(3, {'restore.run': '0|ERROR #1105: the journal file after x is missing'}, text),
                                stop)
    assert not r['ok'] and r['outcome'] == 'failure' and 'is missing' in r['message']
    assert r['point_reached'] == {'file': '/s/1/20240101.001', 'offset': None}
    r = _journal.restore_result(res(3, {'restore.run': '0|ERROR #1105: x'}, ''))
    assert r['point_reached'] is None
    # exit 5 with a run that says error is not trusted
    r = _journal.restore_result(res(5, {'restore.run': '0|ERROR #1: x'}, RUN_TRANSCRIPT))
    assert not r['ok']


# ^Integrity's log (InterSystems Japan, iijimam/IRISBackupAndRestore README.md, IRIS 2024.1; shortened)
INTEGRITY_TRANSCRIPT = """Intersystems IRIS Database Integrity Check on 04/08/2024 at 15:23:20
System: 733fea287670  Configuration: IRIS

---Directory /usr/irissys/mgr/---

Global: %
 Elapsed Time = 0.2 seconds 04/08/2024 15:23:26

---Total for directory /usr/irissys/mgr/---
     8,318 Total blocks                  64MB (81% full)

Elapsed time = 14.3 seconds 04/08/2024 15:23:40

No Errors were found in this directory.

---Directory /usr/irissys/mgr/HSCUSTOM/---

No Errors were found in this directory.

No Errors were found.
"""


def test_parse_integrity_output():
    out = _journal.parse_integrity_output(INTEGRITY_TRANSCRIPT)
    assert out['order'] == ['/usr/irissys/mgr/', '/usr/irissys/mgr/HSCUSTOM/']
    assert all(d['clean'] is True and not d['errors'] for d in out['directories'].values())
    assert out['clean'] is True and out['errors'] == []
    text = ("%SYS>\n---Directory /d/user/---\n\nError: /d/user/IRIS.DAT: block 7: checksum mismatch\n\n"
            "Errors were found in this directory.\n\n---Directory /d/app/---\n\nNo Errors were found in this "
            "directory.\n\nErrors were found.\n%SYS>IRISOPS|integrity.check|0|ERROR #1107: found errors\n")
    out = _journal.parse_integrity_output(text)
    assert out['directories']['/d/user/'] == {'clean': False,
                                              'errors': ['Error: /d/user/IRIS.DAT: block 7: checksum mismatch']}
    assert out['directories']['/d/app/']['clean'] is True and out['clean'] is False
    r = _journal.integrity_result(res(3, {'integrity.check': '0|ERROR #1107: found errors'}, text))
    assert not r['ok'] and r['outcome'] == 'failure'
    assert r['message'] == ('integrity check found errors in /d/user/: Error: /d/user/IRIS.DAT: block 7: '
                            'checksum mismatch')
    r = _journal.integrity_result(res(5, {'integrity.check': '1|'}, INTEGRITY_TRANSCRIPT))
    assert r['ok'] and r['status_text'] == ''


def test_parse_switch_and_current():
    v = {'journal.old': '/j/20240101.001', 'journal.new': '/j/20240101.002'}
    out = _journal.parse_switch(v, 'Switching from: /j/20240101.001\nTo: /j/20240101.002\n')
    assert out == {'switched': True, 'old': '/j/20240101.001', 'new': '/j/20240101.002',
                   'printed': ('/j/20240101.001', '/j/20240101.002')}
    # the documented flattened form
    assert _journal.parse_switch(v, 'Switching from: C:\\j\\20231113.002 To: C:\\j\\20231113.003')['printed'] == \
        ('C:\\j\\20231113.002', 'C:\\j\\20231113.003')
    assert _journal.parse_switch({'journal.old': 'a', 'journal.new': 'a'})['switched'] is False
    assert _journal.parse_switch({})['switched'] is False
    assert _journal.parse_current_file({'journal.current': '/j/x'}) == '/j/x'
    assert _journal.parse_current_file({'journal.current': ''}) is None


# ---------------------------------------------------------------------------------------------------------------
# journal files
# ---------------------------------------------------------------------------------------------------------------

def test_list_completed_journals(tmp_path):
    a, b = tmp_path / 'journal', tmp_path / 'journal2'
    a.mkdir()
    b.mkdir()
    for d, n in ((a, '20240101.001'), (a, '20240101.002z'), (b, '20240101.003'), (a, '20240102.001'),
                 (a, '20240102.002'), (b, '20240102.010'), (a, 'journal.log'), (a, '20240103.001.tmp')):
        (d / n).write_text('x')
    (a / '20231231.999').mkdir()  # a directory is not a file
    cur = str(a / '20240102.002')
    got = _journal.list_completed_journals([str(a), str(b)], cur)
    assert [os.path.basename(f) for f in got] == ['20240101.001', '20240101.002z', '20240101.003', '20240102.001']
    assert got[2] == str(b / '20240101.003')
    allf = _journal.list_completed_journals([str(a), str(b), str(tmp_path / 'missing')], None)
    assert [os.path.basename(f) for f in allf][-2:] == ['20240102.002', '20240102.010']
    # the current file by name, in whatever directory it is
    assert str(a / '20240102.002') not in _journal.list_completed_journals([str(a)], '/elsewhere/20240102.002')
    # prefixed (mirror) names sort by date and sequence
    c = tmp_path / 'mirror'
    c.mkdir()
    for n in ('MIRROR-M-20240101.002', '20240101.001', 'MIRROR-M-20240101.003'):
        (c / n).write_text('x')
    assert [os.path.basename(f) for f in _journal.list_completed_journals([str(c)], None)] == \
        ['20240101.001', 'MIRROR-M-20240101.002', 'MIRROR-M-20240101.003']
    assert _journal.journals_from(got, '/x/20240101.003') == got[2:]
    assert _journal.journals_from(got, '20990101.001') == []


# ---------------------------------------------------------------------------------------------------------------
# against the test emulator: the scripts run in real sessions
# ---------------------------------------------------------------------------------------------------------------

def _emulator_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    for up in range(3, 7):
        cand = os.path.join(here, *(['..'] * up), 'tests', 'emulator', 'install.py')
        if os.path.isfile(cand):
            return os.path.dirname(os.path.abspath(cand))
        cand = os.path.join(here, *(['..'] * up), 'emulator', 'install.py')
        if os.path.isfile(cand):
            return os.path.dirname(os.path.abspath(cand))
    return None


@pytest.fixture(scope='module')
def emu():
    emudir = _emulator_dir()
    if emudir is None or os.geteuid() != 0 or not os.path.exists('/usr/bin/python3'):
        pytest.skip('needs root and tests/emulator')
    root = tempfile.mkdtemp(prefix='journal-unit-')
    os.chmod(root, 0o755)
    env = dict(os.environ, IRISEMU_ROOT=root)
    for k in ('IRISEMU_REGISTRY', 'IRISEMU_BINDIR', 'IRISEMU_CODEDIR'):
        env.pop(k, None)

    def install(name, *extra):
        subprocess.check_call([sys.executable, os.path.join(emudir, 'install.py'), '--flavour', 'iris', '--instance',
                               name, '--dir', os.path.join(root, name.lower()), '--owner', 'root',
                               '--databases', 'USER,APP', '--start'] + list(extra), env=env,
                              stdout=subprocess.DEVNULL)
    install('SRC', '--database-dir', os.path.join(root, 'srcdata'), '--write-interval-ms', '20')
    install('DRILL', '--database-dir', os.path.join(root, 'drilldata'), '--load', 'off')
    sys.path.insert(0, emudir)
    try:
        yield {'root': root, 'env': env, 'iris': os.path.join(root, 'usr', 'bin', 'iris')}
    finally:
        for name in ('SRC', 'DRILL'):
            subprocess.call([os.path.join(root, 'usr', 'bin', 'iris'), 'force', name, 'quietly'], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)


def inst(e, name):
    return {'name': name, 'flavour': 'iris', 'session_cmd': [e['iris'], 'session']}


def run(e, name, lines):
    return _iris.run_script(inst(e, name), lines, None, 60)


def gen_of(path):
    from irisemu import dbfile  # pylint: disable=import-error
    return dbfile.read_generation(path)


def current_file(e, name, wait=30):
    """(current journal file, the last session's result): asked until the instance names one, up to ``wait`` s.
    An instance that is not running fails at once, with its messages.log: in loaded full runs the emulator marked
    SRC down right after its start (its `iris start` looked at the daemon while it was still in execve, with an
    empty command line; fixed in irisemu.util.wd_alive, 2026-12-07), and the emulator now logs why it takes an
    instance for down."""
    deadline = time.time() + wait
    while True:
        res = run(e, name, _journal.current_file_lines())
        cur = _journal.parse_current_file(res['values'])
        if cur or time.time() > deadline:
            return cur, res
        if 'is not running' in (res['stdout'] or ''):
            log = os.path.join(e['root'], name.lower(), 'mgr', 'messages.log')
            tail = open(log).read()[-1200:] if os.path.exists(log) else 'no messages.log'
            pytest.fail('emulator: instance %s is not running after its start. Its log: %s' % (name, tail))
        time.sleep(0.5)


def test_against_the_emulator(emu):
    e = emu
    src, drill = inst(e, 'SRC'), 'DRILL'
    cur, res = current_file(e, 'SRC')
    assert cur and cur.startswith(os.path.join(e['root'], 'src', 'mgr', 'journal')), (
        cur, res['rc'], res['stdout'][-800:], res['stderr'][-800:])
    # a backup under freeze
    rc, out, _err, _argv, _ms = _iris.session(None, src, _iris.external_freeze_expr(log_file='0'), timeout=60)
    assert rc == 5, out
    first = _iris.parse_freeze_log(out)['journal_file']
    shutil.copytree(os.path.join(e['root'], 'srcdata'), os.path.join(e['root'], 'backup'))
    assert _iris.session(None, src, _iris.external_thaw_expr(), timeout=60)[0] == 5
    g0 = gen_of(os.path.join(e['root'], 'backup', 'user', 'IRIS.DAT'))
    from irisemu import journal as jm  # pylint: disable=import-error
    srcuser = os.path.join(e['root'], 'srcdata', 'user') + '/'

    def wait_for_writes(path):
        # the workload's writes reach each file before it is switched away (a fixed sleep was too short on a
        # loaded machine: the first file had no record of the user database and the test failed on its own rig)
        deadline = time.time() + 60
        while time.time() < deadline:
            if len([r for r in jm.read_records(path) if r['sub'] == 'gen' and r['dir'] == srcuser]) >= 2:
                return
            subprocess.call(['sleep', '0.1'])
        pytest.fail('the workload wrote no two records of %s into %s in 60 s' % (srcuser, path))

    # journal switches: the files before the current one are the completed ones
    current = first
    for dummy in range(3):
        wait_for_writes(current)
        r = run(e, 'SRC', _journal.switch_lines())
        sw = _journal.parse_switch(r['values'], r['stdout'])
        assert _journal.interpret_run(r)[0] == 'success' and sw['switched'] and sw['printed'] == (sw['old'], sw['new'])
        current = sw['new']
    jdir = os.path.join(e['root'], 'src', 'mgr', 'journal')
    completed = _journal.list_completed_journals([jdir], sw['new'])
    chain = _journal.journals_from(completed, first)
    assert len(chain) == 3 and os.path.basename(chain[0]) == os.path.basename(first)
    ship = os.path.join(e['root'], 'ship')
    os.makedirs(ship)
    shipped = []
    for f in chain:
        shutil.copy2(f, ship)
        shipped.append(os.path.join(ship, os.path.basename(f)))

    def gens(path, d):
        return [(r['offset'], int(r['value'])) for r in jm.read_records(path) if r['sub'] == 'gen' and r['dir'] == d]

    redirects = [(os.path.join(e['root'], 'srcdata', db), os.path.join(e['root'], 'drilldata', db))
                 for db in ('user', 'app')]
    target = os.path.join(e['root'], 'drilldata', 'user', 'IRIS.DAT')

    def put_backup():
        for db in ('user', 'app'):
            shutil.copy2(os.path.join(e['root'], 'backup', db, 'IRIS.DAT'),
                         os.path.join(e['root'], 'drilldata', db, 'IRIS.DAT'))

    # every shipped file
    put_backup()
    r = run(e, drill, _journal.restore_lines(shipped[0], shipped[-1], redirects, [ship]))
    rr = _journal.restore_result(r)
    assert rr['ok'], (rr, r['stdout'])
    assert rr['point_reached'] == {'file': shipped[-1], 'offset': None}
    assert rr['output']['updated'] == [d + '/' for _s, d in redirects]
    assert gen_of(target) == gens(shipped[-1], srcuser)[-1][1] > g0
    r = run(e, drill, _journal.integrity_lines([d for _s, d in redirects]))
    ir = _journal.integrity_result(r)
    assert ir['ok'] and all(v['clean'] for v in ir['output']['directories'].values()), r['stdout']
    # a stop inside the second file: two runs, the second with the filter
    stop_off, stop_gen = gens(shipped[1], srcuser)[len(gens(shipped[1], srcuser)) // 2]
    put_backup()
    stop = {'file': shipped[1], 'offset': stop_off}
    r = run(e, drill, _journal.restore_lines(shipped[0], None, redirects, [ship], stop=stop, files=shipped))
    rr = _journal.restore_result(r, stop)
    assert rr['ok'] and rr['point_reached'] == stop, r['stdout']
    assert gen_of(target) == stop_gen
    # a stop at a time
    t = [x for x in jm.read_records(shipped[2]) if x['sub'] == 'gen'][0]['horolog']
    put_backup()
    r = run(e, drill, _journal.restore_lines(shipped[0], shipped[-1], redirects, [ship], stop={'time': t}))
    assert _journal.restore_result(r, {'time': t})['ok'], r['stdout']
    tsec = int(t.split(',')[0]) * 86400 + int(t.split(',')[1])
    want = max(int(x['value']) for f in shipped for x in jm.read_records(f)
               if x['sub'] == 'gen' and x['dir'] == srcuser
               and int(x['horolog'].split(',')[0]) * 86400 + int(x['horolog'].split(',')[1]) <= tsec)
    assert gen_of(target) == want
    # a gap: the point reached is the end of the file before it, never more; the second run does not start
    os.remove(shipped[1])
    put_backup()
    r = run(e, drill, _journal.restore_lines(shipped[0], shipped[-1], redirects, [ship]))
    rr = _journal.restore_result(r)
    assert rr['outcome'] == 'failure' and not rr['ok'] and 'is missing' in rr['message']
    assert rr['point_reached'] == {'file': shipped[0], 'offset': None}
    assert gen_of(target) == gens(shipped[0], srcuser)[-1][1]
    put_backup()
    stop = {'file': shipped[2], 'offset': 10 ** 9}
    r = run(e, drill, _journal.restore_lines(shipped[0], None, redirects, [ship], stop=stop, files=shipped))
    rr = _journal.restore_result(r, stop)
    assert not rr['ok'] and 'not run' in rr['statuses']['restore.run2'][1]
    assert gen_of(target) == gens(shipped[0], srcuser)[-1][1]
    # a damaged block: the integrity check names the file and the block
    with open(target, 'r+b') as fh:
        fh.seek(3 * 8192 + 77)
        fh.write(b'\x00\x01\x02')
    r = run(e, drill, _journal.integrity_lines([d for _s, d in redirects]))
    ir = _journal.integrity_result(r)
    assert ir['outcome'] == 'failure' and re.search(r'IRIS\.DAT: block 3: checksum', ir['message']), ir
