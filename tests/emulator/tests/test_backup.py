"""Backup.General: ExternalFreeze / ExternalThaw / IsWDSuspended(Ext) / ExternalSetHistory, timeouts, irisstat -W."""
import os
import re
import signal
import stat
import subprocess
import time

import pytest

from conftest import FLAV, read_generation

STAMP = r"\d\d/\d\d/\d{4} \d\d:\d\d:\d\d: "
LOGSTAMP = r"\d\d/\d\d/\d\d-\d\d:\d\d:\d\d:\d{3} \(\d+\) "


def freeze(emu, name, flavour, args="", **kw):
    return emu.session(name, "##Class(Backup.General).ExternalFreeze(%s)" % args, prog=FLAV[flavour]["session"],
                       **kw)


def thaw(emu, name, flavour, args="", **kw):
    return emu.session(name, "##class(Backup.General).ExternalThaw(%s)" % args, prog=FLAV[flavour]["session"],
                       **kw)


def suspended_rc(emu, name, flavour):
    return emu.session(name, "##class(Backup.General).IsWDSuspendedExt()", prog=FLAV[flavour]["session"]).returncode


def stop_outside_lock(pid, lock_path):
    """SIGSTOP the write daemon, but never while it holds the state lock (that would block every command)."""
    import fcntl
    for _attempt in range(100):
        os.kill(pid, signal.SIGSTOP)
        fd = os.open(lock_path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return
        except BlockingIOError:
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.01)
        finally:
            os.close(fd)
    raise AssertionError("could not stop the write daemon outside the lock")


def log_text(d, flavour):
    return open(os.path.join(d, "mgr", FLAV[flavour]["log"])).read()


@pytest.fixture(scope="module")
def _instances(emu):
    return {}


@pytest.fixture
def inst(emu, flavour, _instances):
    """A running instance per flavour (shared by this module), reset to "not frozen" after each test."""
    if flavour not in _instances:
        name = "B" + flavour.upper()
        _instances[flavour] = (name, emu.install(flavour, name, owner="root", write_interval_ms=20))
    name, d = _instances[flavour]
    c = FLAV[flavour]["control"]
    if not emu.instance(name).is_running(emu.state(d)):
        emu.run([c, "start", name], check_rc=0)
    emu.reset(name)
    yield name, d
    emu.reset(name)


def test_freeze_output_and_thaw(emu, inst, flavour):
    name, d = inst
    jdir = os.path.join(d, "mgr", "journal")
    before = set(os.listdir(jdir))
    r = freeze(emu, name, flavour, "0")
    assert r.returncode == 5, r.stdout + r.stderr
    out = r.stdout
    tmpdb = os.path.join(d, "mgr", "iristemp" if flavour == "iris" else "cachetemp") + "/"
    new = sorted(set(os.listdir(jdir)) - before)
    assert len(new) == 1 and re.match(r"^\d{8}\.\d{3}$", new[0])
    jf = os.path.join(jdir, new[0])
    expected = [
        STAMP + re.escape("Backup.General.ExternalFreeze: Suspending system"),
        STAMP + re.escape("Backup.General.ExternalFreeze: Warning, %s is not being journalled" % tmpdb),
        STAMP + re.escape("Backup.General.ExternalFreeze: Warning, 1 databases are not journalled, data will be "
                          "lost in them if system crashes while suspended"),
        "",
        "Journal file switched to:",
        re.escape(jf),
        STAMP + re.escape("Backup.General.ExternalFreeze: Start a journal restore for this backup with journal "
                          "file: " + jf),
        "",
        "Journal marker set at",
        r"offset (\d+) of " + re.escape(jf),
        STAMP + re.escape("Backup.General.ExternalFreeze: System suspended"),
    ]
    lines = out.splitlines()
    assert len(lines) == len(expected), out
    for line, pat in zip(lines, expected):
        assert re.fullmatch(pat, line), (line, pat)
    off = int(re.fullmatch(expected[9], lines[9]).group(1))
    with open(jf, "rb") as fh:
        fh.seek(off)
        assert b" JRNMARK -1 ExternalFreeze text=" in fh.readline()
    log = log_text(d, flavour)
    assert re.search(LOGSTAMP + r"0 \[Utility\.Event\] Backup\.General\.ExternalFreeze: Suspending system\n", log)
    assert re.search(LOGSTAMP + r"1 \[Utility\.Event\] Backup\.General\.ExternalFreeze: Warning, ", log)
    banner = "INTERSYSTEMS IRIS" if flavour == "iris" else "INTERSYSTEMS CACHE"
    assert re.search(LOGSTAMP + r"0 \[Generic\.Event\] %s JOURNALING SYSTEM MESSAGE\nJournaling switched to: %s\n"
                     % (banner, re.escape(jf)), log)
    assert re.search(LOGSTAMP + r"0 \[Utility\.Event\] Backup\.General\.ExternalFreeze: System suspended\n", log)
    assert suspended_rc(emu, name, flavour) == 5
    assert emu.session(name, "Write ##class(Backup.General).IsWDSuspended()",
                       prog=FLAV[flavour]["session"]).stdout == "1"
    stat = emu.run([os.path.join(d, "bin", FLAV[flavour]["stat"])]).stdout
    assert any("WDSUSPD" in line for line in stat.splitlines())
    # second freeze fails with 3
    r2 = freeze(emu, name, flavour, "0")
    assert r2.returncode == 3 and "already suspended" in r2.stdout
    r = thaw(emu, name, flavour, "0")
    assert r.returncode == 5
    assert [re.sub(STAMP, "", x) for x in r.stdout.splitlines()] == [
        "Backup.General.ExternalThaw: Resuming system", "Backup.General.ExternalThaw: System resumed"]
    assert re.search(LOGSTAMP + r"0 \[Utility\.Event\] Backup\.General\.ExternalThaw: System resumed\n",
                     log_text(d, flavour))
    assert suspended_rc(emu, name, flavour) == 3
    assert emu.session(name, "Write ##class(Backup.General).IsWDSuspended()",
                       prog=FLAV[flavour]["session"]).stdout == "0"
    assert "WDSUSPD" not in emu.run([os.path.join(d, "bin", FLAV[flavour]["stat"])]).stdout
    # thaw when not frozen is harmless
    r = thaw(emu, name, flavour)
    assert r.returncode == 5 and r.stdout == ""


def test_logfile_destinations(emu, inst, flavour, tmp_path):
    name, d = inst
    logf = str(tmp_path / "sub.log")
    r = freeze(emu, name, flavour, '"%s","my text",0' % logf)
    assert r.returncode == 5 and r.stdout == ""
    text = open(logf).read()
    assert "Backup.General.ExternalFreeze: System suspended" in text
    # created with mode 0666 minus the caller's umask (README: Permissions)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(logf).st_mode) == 0o666 & ~umask
    assert "Journal file switched to:" not in text  # SwitchJournalFile=0
    st = emu.state(d)
    cur = st["journal"]["current"]
    assert "Start a journal restore for this backup with journal file: %s\n" % cur in text
    r = thaw(emu, name, flavour, '"%s"' % logf)
    assert r.returncode == 5 and r.stdout == ""
    text2 = open(logf).read()
    assert text2.startswith(text) and "ExternalThaw: System resumed" in text2  # appended
    # default LogFile "": nothing on stdout, still in messages.log
    n = log_text(d, flavour).count("System suspended")
    r = freeze(emu, name, flavour)
    assert r.returncode == 5 and r.stdout == ""
    assert log_text(d, flavour).count("System suspended") == n + 1
    assert thaw(emu, name, flavour).returncode == 5


def test_freeze_stops_db_writes_journal_continues(emu, inst, flavour):
    name, d = inst
    dat = os.path.join(d, "mgr", "user", FLAV[flavour]["dat"])
    emu.wait_generation(d, 3)
    assert freeze(emu, name, flavour).returncode == 5
    g1 = read_generation(dat)
    data1 = open(dat, "rb").read()
    jf = emu.state(d)["journal"]["current"]
    size1 = os.path.getsize(jf)
    assert emu.run(["irisemu-dbcheck", os.path.join(d, "mgr")]).returncode == 0
    time.sleep(0.3)
    assert open(dat, "rb").read() == data1
    assert os.path.getsize(jf) > size1
    assert emu.state(d)["generation"] == g1
    assert thaw(emu, name, flavour).returncode == 5
    emu.wait_generation(d, g1 + 2)


def test_freeze_waits_for_write_cycle(emu, inst, flavour):
    name, d = inst
    # slow cycles: 4 databases x 16 blocks x 10 ms = 0.64 s per cycle, no idle time between cycles
    emu.run(["irisemu-load", name, "--block-pause-ms", "10", "--interval-ms", "0"], check_rc=0)
    mgr = os.path.join(d, "mgr")
    for _attempt in range(30):  # catch the write daemon in the middle of a cycle
        r = emu.run(["irisemu-dbcheck", mgr])
        if r.returncode == 1:
            break
    assert r.returncode == 1, r.stdout
    in_progress = int(re.search(r"out of step with generation (\d+)", r.stdout).group(1))
    assert freeze(emu, name, flavour).returncode == 5
    # freeze returned only after the cycle in progress ended: consistent, at least at that cycle's generation
    r = emu.run(["irisemu-dbcheck", mgr])
    assert r.returncode == 0, r.stdout
    assert int(re.search(r"generation (\d+)", r.stdout).group(1)) >= in_progress
    assert thaw(emu, name, flavour).returncode == 5


def test_freeze_timeout_hangs_logins_until_irisstat_w(emu, inst, flavour):
    name, d = inst
    assert freeze(emu, name, flavour, ",,,,,,1").returncode == 5
    time.sleep(1.05)
    # past ExternalFreezeTimeOut: new sessions (even a thaw) hang
    with pytest.raises(subprocess.TimeoutExpired):
        thaw(emu, name, flavour, timeout=0.8)
    assert "paused" in log_text(d, flavour)
    # irisstat/cstat still answers and shows the suspension; qlist too
    assert "WDSUSPD" in emu.run([os.path.join(d, "bin", FLAV[flavour]["stat"])]).stdout
    assert "running" in emu.run([FLAV[flavour]["control"], "qlist", name]).stdout
    # a thaw started now hangs until `irisstat -W` resumes the write daemon
    p = subprocess.Popen(list(FLAV[flavour]["session"]) + [name, "-U", "%SYS",
                                                           "##class(Backup.General).ExternalThaw(0)"],
                         env=emu.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.4)
    assert p.poll() is None
    r = emu.run([FLAV[flavour]["control"], "stat", name, "-W"], check_rc=0)
    assert "resumed" in r.stdout
    out = p.communicate(timeout=10)[0]
    # the thaw ran after -W: the freeze had already ended, so it reports the backup as invalid
    assert p.returncode == 3 and "not valid" in out
    assert suspended_rc(emu, name, flavour) == 3
    g = emu.generation(d)
    emu.wait_generation(d, g + 2)


def test_wd_suspend_limit_lazy(emu, inst, flavour):
    name, d = inst
    assert freeze(emu, name, flavour, ",,,,,,600,,,2").returncode == 5
    pid = emu.wd_pid(d)
    stop_outside_lock(pid, os.path.join(d, "mgr", "irisemu", "state.lock"))
    # the write daemon cannot resume by itself now: the limit is enforced lazily by the commands
    try:
        assert suspended_rc(emu, name, flavour) == 5
        time.sleep(2.05)
        assert suspended_rc(emu, name, flavour) == 3
        assert "WDSUSPD" not in emu.run([os.path.join(d, "bin", FLAV[flavour]["stat"])]).stdout
    finally:
        os.kill(pid, signal.SIGCONT)
    r = thaw(emu, name, flavour, "0")
    assert r.returncode == 3 and "WDSuspendLimit" in r.stdout and "not valid" in r.stdout
    assert "WDSuspendLimit" in log_text(d, flavour)
    r = thaw(emu, name, flavour, "0")
    assert r.returncode == 5


def test_wd_suspend_limit_write_daemon_resumes(emu, inst, flavour):
    name, d = inst
    assert freeze(emu, name, flavour, ",,,,,,,,,2").returncode == 5
    g = emu.generation(d)
    wd = emu.wd_pid(d)
    # the write daemon resumes by itself (no command looks at the state meanwhile: emu.generation reads the file)
    emu.wait_generation(d, g + 2, timeout=5)
    # ... and says so in messages.log, as the write daemon's own pid
    assert re.search(LOGSTAMP.replace(r"\(\d+\)", r"\(%d\)" % wd)
                     + r"1 \[Utility\.Event\] Backup\.General\.ExternalFreeze: Write daemon resumed after "
                       r"WDSuspendLimit \(2 seconds\); the backup started at .+ is not valid\n", log_text(d, flavour))
    assert suspended_rc(emu, name, flavour) == 3
    assert "WDSUSPD" not in emu.run([os.path.join(d, "bin", FLAV[flavour]["stat"])]).stdout
    r = thaw(emu, name, flavour, "0")
    assert r.returncode == 3 and "WDSuspendLimit" in r.stdout and "not valid" in r.stdout


def test_required_file_and_text_marker(emu, inst, flavour):
    name, d = inst
    script = ('Set rf=""\n'
              'Set sc=##class(Backup.General).ExternalFreeze(0,"marker ""quoted"" text",1,,,,,,,,.rf)\n'
              'Write "RF=",rf,!\n'
              'Write "SC=",sc,!\n'
              'Write "SUSP=",##class(Backup.General).IsWDSuspended(),!\n'
              'Write "THAW=",##class(Backup.General).ExternalThaw(),!\n'
              'Halt\n')
    r = emu.session(name, prog=FLAV[flavour]["session"], input=script)
    assert r.returncode == 0, r.stdout
    rf = re.search(r"RF=(\S+)", r.stdout).group(1)
    assert re.match(r".*/\d{8}\.\d{3}$", rf) and os.path.exists(rf)
    assert "SC=1" in r.stdout and "SUSP=1" in r.stdout and "THAW=1" in r.stdout
    assert 'marker "quoted" text' in open(rf, errors="replace").read()


def test_set_history_and_purge(emu, inst, flavour):
    name, d = inst
    jdir = os.path.join(d, "mgr", "journal")
    restore = []
    for i in range(3):
        r = freeze(emu, name, flavour, "0")
        assert r.returncode == 5
        restore.append(re.search(r"journal file: (\S+)", r.stdout).group(1))
        assert thaw(emu, name, flavour).returncode == 5
        before = set(os.listdir(jdir))
        r = emu.session(name, '##class(Backup.General).ExternalSetHistory(0,"nightly %d")' % i,
                        prog=FLAV[flavour]["session"])
        assert r.returncode == 5, r.stdout
        after = set(os.listdir(jdir))
        purged = sorted(before - after)
        if i == 0:
            assert purged == []  # BackupsBeforePurge=2: nothing before the second backup
        else:
            # everything older than the restore point of the 2nd most recent backup is purged, and printed
            keep_from = os.path.basename(restore[i - 1])
            assert purged and all(p < keep_from for p in purged)
            assert all(f >= keep_from for f in after)
            for p in purged:
                assert "Purged journal file %s" % os.path.join(jdir, p) in r.stdout
    hist = emu.state(d) and __import__("json").load(open(os.path.join(d, "mgr", "irisemu", "buhistory.json")))
    assert len(hist) == 3
    for k, v in hist.items():
        assert re.match(r"^\d+$", k) and v["STATUS"] == "Completed" and v["TYPE"] == "External"
    assert sorted(v["DESC"] for v in hist.values()) == ["nightly 0", "nightly 1", "nightly 2"]


def test_iris_freeze_thaw_command_line(emu, both):
    name, d = both["iris"]
    r = emu.run(["iris", "freeze", name, "timeout=30"])
    assert r.returncode == 0 and "System suspended" in r.stdout
    assert emu.state(d)["freeze"]["eft"] == 30
    r = emu.run(["iris", "freeze", name])
    assert r.returncode == 1
    r = emu.run(["iris", "thaw", name])
    assert r.returncode == 0 and "System resumed" in r.stdout
    # Caché has no `ccontrol freeze`
    assert emu.run(["ccontrol", "freeze", "CACHE"]).returncode not in (0, 5)


def test_stop_while_frozen_ends_freeze(emu, inst, flavour):
    name, d = inst
    assert freeze(emu, name, flavour).returncode == 5
    emu.run([FLAV[flavour]["control"], "stop", name], check_rc=0)
    assert emu.state(d)["freeze"] is None
    emu.run([FLAV[flavour]["control"], "start", name], check_rc=0)
    assert suspended_rc(emu, name, flavour) == 3
