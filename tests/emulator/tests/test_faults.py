"""Test-only controls: irisemu-fault (faults.json, phase.log), irisemu-ctl rotate-log, foreign thaws by pid."""
import os
import re
import signal
import stat
import subprocess
import sys
import time

import pytest

from conftest import FLAV

LOGSTAMP = r"\d\d/\d\d/\d\d-\d\d:\d\d:\d\d:\d{3} "

FREEZE = "##class(Backup.General).ExternalFreeze(%s)"
THAW = "##class(Backup.General).ExternalThaw(%s)"
SUSPENDED = "##class(Backup.General).IsWDSuspendedExt()"


@pytest.fixture(scope="module")
def _instances(emu):
    return {}


def _instance(emu, flavour, _instances):
    if flavour not in _instances:
        name = "F" + flavour.upper()
        _instances[flavour] = (name, emu.install(flavour, name, owner="root", write_interval_ms=20))
    name, d = _instances[flavour]
    if not emu.instance(name).is_running(emu.state(d)):
        emu.run([FLAV[flavour]["control"], "start", name], check_rc=0)
    emu.reset(name)
    emu.run(["irisemu-fault", name, "--clear"], check_rc=0)
    open(os.path.join(d, "mgr", "irisemu", "phase.log"), "a").close()
    open(os.path.join(d, "mgr", "irisemu", "phase.log"), "w").close()
    return name, d


@pytest.fixture
def inst(emu, flavour, _instances):
    """A running instance per flavour, no faults, empty phase.log, not frozen (before and after the test)."""
    name, d = _instance(emu, flavour, _instances)
    yield name, d
    emu.run(["irisemu-fault", name, "--clear"], check_rc=0)
    emu.reset(name)


@pytest.fixture
def iris(emu, _instances):
    name, d = _instance(emu, "iris", _instances)
    yield name, d
    emu.run(["irisemu-fault", name, "--clear"], check_rc=0)
    emu.reset(name)


def session_argv(flavour, name, expr):
    return list(FLAV[flavour]["session"]) + [name, "-U", "%SYS", expr]


def call(emu, flavour, name, expr, **kw):
    return emu.run(session_argv(flavour, name, expr), **kw)


def suspended_rc(emu, flavour, name):
    return call(emu, flavour, name, SUSPENDED).returncode


def popen(emu, argv):
    return subprocess.Popen(argv, env=emu.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd="/")


def faults(emu, name, *args, check_rc=0):
    return emu.run(["irisemu-fault", name] + list(args), check_rc=check_rc)


def status(emu, name):
    return faults(emu, name, "--status").stdout


def phases(d):
    """[(epoch, pid, event)] from mgr/irisemu/phase.log"""
    out = []
    with open(os.path.join(d, "mgr", "irisemu", "phase.log")) as fh:
        for line in fh:
            t, pid, ev = line.split()
            out.append((float(t), int(pid), ev))
    return out


def wait_phase(d, event, pid=None, count=1, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        hits = [p for p in phases(d) if p[2] == event and (pid is None or p[1] == pid)]
        if len(hits) >= count:
            return hits[count - 1]
        time.sleep(0.02)
    raise AssertionError("phase %s (pid %s) not reached: %s" % (event, pid, phases(d)))


def log_text(d, flavour):
    return open(os.path.join(d, "mgr", FLAV[flavour]["log"])).read()


def log_has(d, flavour, pid, severity, text):
    """A messages.log line of process ``pid`` with ``severity`` whose text starts with ``text``."""
    return re.search(r"^%s\(%d\) %d \[Utility\.Event\] %s" % (LOGSTAMP, pid, severity, re.escape(text)),
                     log_text(d, flavour), re.M) is not None


def pid_gone(pid, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with open("/proc/%d/stat" % pid) as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except (OSError, IndexError):
            return True
        time.sleep(0.02)
    return False


# ---------------------------------------------------------------------------------------------------------------

def test_fault_command_set_status_clear(emu, iris):
    name, d = iris
    emudir = os.path.join(d, "mgr", "irisemu")
    assert status(emu, name) == ""
    r = faults(emu, name, "--freeze-delay", "2.5", "--freeze-fail", "2", "--status")
    assert r.stdout == "freeze-delay=2.5\nfreeze-fail=2\n"
    # options add to what is set; 0 removes one
    faults(emu, name, "--thaw-delay", "1", "--thaw-fail", "3", "--thaw-hang", "1")
    assert status(emu, name) == "freeze-delay=2.5\nfreeze-fail=2\nthaw-delay=1\nthaw-fail=3\nthaw-hang=1\n"
    faults(emu, name, "--freeze-delay", "0", "--thaw-hang", "0")
    assert status(emu, name) == "freeze-fail=2\nthaw-delay=1\nthaw-fail=3\n"
    # --clear first, then the others
    assert faults(emu, name, "--clear", "--thaw-fail", "1", "--status").stdout == "thaw-fail=1\n"
    faults(emu, name, "--clear")
    assert status(emu, name) == ""
    # same conventions as state.json: 0666 files in mgr/irisemu, written in place under an flock
    for f in ("faults.json", "faults.lock"):
        assert stat.S_IMODE(os.stat(os.path.join(emudir, f)).st_mode) == 0o666, f
    # setting faults is logged, but not as a fault that fired
    log = log_text(d, "iris")
    assert re.search(r"\[Utility\.Event\] irisemu: faults set by pid \d+: thaw-fail=1\n", log)
    assert "irisemu fault:" not in log
    assert phases(d) == []
    # errors
    assert faults(emu, "NOSUCH", "--status", check_rc=None).returncode == 1
    assert faults(emu, name, "--freeze-fail", "-1", check_rc=None).returncode == 2
    assert faults(emu, name, "--thaw-delay", "x", check_rc=None).returncode == 2


def test_freeze_fail_counts_down(emu, inst, flavour):
    name, d = inst
    faults(emu, name, "--freeze-fail", "2")
    pids = []
    for left in (1, 0):
        p = popen(emu, session_argv(flavour, name, FREEZE % "0"))
        out = p.communicate(timeout=30)[0]
        pids.append(p.pid)
        assert p.returncode == 3, out
        assert "Failed to suspend system: irisemu fault injected (freeze-fail)" in out
        assert "Suspending system" not in out
        assert suspended_rc(emu, flavour, name) == 3  # nothing suspended
        assert log_has(d, flavour, p.pid, 1, "irisemu fault: freeze-fail fired in pid %d" % p.pid)
        assert log_has(d, flavour, p.pid, 1, "irisemu fault: freeze-fail fired in pid %d: ExternalFreeze fails, "
                                             "nothing suspended (%d left)" % (p.pid, left))
        assert status(emu, name) == ("freeze-fail=1\n" if left else "")
    assert [(pid, ev) for _t, pid, ev in phases(d)] == [(pids[0], "freeze-fail"), (pids[1], "freeze-fail")]
    # used up: the next freeze works
    assert call(emu, flavour, name, FREEZE % "").returncode == 5
    # a freeze that fails anyway (already suspended) does not consume the fault
    faults(emu, name, "--freeze-fail", "1")
    r = call(emu, flavour, name, FREEZE % "0")
    assert r.returncode == 3 and "already suspended" in r.stdout
    assert status(emu, name) == "freeze-fail=1\n"
    assert call(emu, flavour, name, THAW % "").returncode == 5
    # cleared: no fault fires
    faults(emu, name, "--clear")
    assert call(emu, flavour, name, FREEZE % "").returncode == 5
    assert len(phases(d)) == 2
    assert call(emu, flavour, name, THAW % "").returncode == 5


def test_freeze_delay(emu, inst, flavour, tmp_path):
    name, d = inst
    logf = str(tmp_path / "freeze.log")
    faults(emu, name, "--freeze-delay", "1")
    t0 = time.time()
    p = popen(emu, session_argv(flavour, name, FREEZE % ('"%s"' % logf)))
    t_start, pid, _event = wait_phase(d, "freeze-delay-start", p.pid)
    # during the delay: the write daemon is suspended, "System suspended" is not logged, the method has not returned
    assert p.poll() is None
    assert suspended_rc(emu, flavour, name) == 5
    assert emu.state(d)["freeze"]["acked"] is True
    text = open(logf).read()
    assert "Suspending system" in text and "Start a journal restore" in text and "System suspended" not in text
    assert log_has(d, flavour, pid, 1, "irisemu fault: freeze-delay of 1 s started in pid %d" % pid)
    assert not log_has(d, flavour, pid, 0, "Backup.General.ExternalFreeze: System suspended")
    assert p.wait(timeout=30) == 5
    assert time.time() - t0 >= 1.0
    t_end = wait_phase(d, "freeze-delay-end", pid)[0]
    assert 1.0 <= t_end - t_start < 3
    assert "System suspended" in open(logf).read()
    log = log_text(d, flavour)
    assert log.index("irisemu fault: freeze-delay of 1 s ended in pid %d" % pid) \
        < log.index("(%d) 0 [Utility.Event] Backup.General.ExternalFreeze: System suspended" % pid)
    # a delay stays until cleared; the thaw is not delayed
    assert status(emu, name) == "freeze-delay=1\n"
    assert call(emu, flavour, name, THAW % "").returncode == 5
    faults(emu, name, "--freeze-delay", "0")
    t0 = time.time()
    assert call(emu, flavour, name, FREEZE % "").returncode == 5
    assert time.time() - t0 < 1.0
    assert [ev for _t, _p, ev in phases(d)] == ["freeze-delay-start", "freeze-delay-end"]


CALLER = """
import subprocess, sys
# a caller (think: the module that runs `iris session`) starting the session in its own session or not
child = subprocess.Popen(sys.argv[2:], start_new_session=(sys.argv[1] == "own-session"), stdin=subprocess.DEVNULL)
sys.stdout.write("%d\\n" % child.pid)
sys.stdout.flush()
sys.exit(child.wait())
"""


@pytest.mark.parametrize("mode", ["own-session", "same-group"])
def test_freeze_delay_caller_killed(emu, iris, mode, tmp_path):
    """SIGKILL to the caller's process group during ExternalFreeze (e.g. a timeout of the caller): a session child
    in its own session finishes the freeze by itself; one in the caller's group dies with it, and the instance
    is frozen anyway (the write daemon suspended before the delay) without a "System suspended" line."""
    name, d = iris
    logf = str(tmp_path / "freeze.log")
    faults(emu, name, "--freeze-delay", "1")
    argv = [sys.executable, "-c", CALLER, mode] + session_argv("iris", name, FREEZE % ('"%s"' % logf))
    caller = subprocess.Popen(argv, env=emu.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        child = int(caller.stdout.readline())
        wait_phase(d, "freeze-delay-start", child)
        os.killpg(caller.pid, signal.SIGKILL)
        caller.wait(timeout=10)
        assert caller.returncode == -signal.SIGKILL
        assert pid_gone(child)
    finally:
        caller.stdout.close()
    assert suspended_rc(emu, "iris", name) == 5  # frozen either way
    if mode == "own-session":
        wait_phase(d, "freeze-delay-end", child)
        assert log_has(d, "iris", child, 0, "Backup.General.ExternalFreeze: System suspended")
        assert "System suspended" in open(logf).read()
    else:
        time.sleep(1.2)
        assert [ev for _t, _p, ev in phases(d)] == ["freeze-delay-start"]
        assert "System suspended" not in open(logf).read()
        assert not log_has(d, "iris", child, 0, "Backup.General.ExternalFreeze: System suspended")
    r = call(emu, "iris", name, THAW % "0")
    assert r.returncode == 5 and "System resumed" in r.stdout


def test_freeze_delay_thawed_meanwhile(emu, iris):
    """A thaw by another process during the freeze delay: the thaw works (5), the freeze then fails (3)."""
    name, d = iris
    faults(emu, name, "--freeze-delay", "1")
    p = popen(emu, session_argv("iris", name, FREEZE % "0"))
    wait_phase(d, "freeze-delay-start", p.pid)
    r = call(emu, "iris", name, THAW % "0")
    assert r.returncode == 5 and "System resumed" in r.stdout
    out = p.communicate(timeout=30)[0]
    assert p.returncode == 3
    assert "Failed to suspend system: the freeze was ended (ExternalThaw) before ExternalFreeze completed" in out
    assert "System suspended" not in out
    assert suspended_rc(emu, "iris", name) == 3


def test_thaw_delay(emu, inst, flavour):
    name, d = inst
    faults(emu, name, "--thaw-delay", "1")
    assert call(emu, flavour, name, FREEZE % "").returncode == 5
    assert phases(d) == []  # the freeze is not delayed
    p = popen(emu, session_argv(flavour, name, THAW % "0"))
    t_start = wait_phase(d, "thaw-delay-start", p.pid)[0]
    # "Resuming system" logged, still suspended
    assert p.poll() is None
    assert suspended_rc(emu, flavour, name) == 5
    assert log_has(d, flavour, p.pid, 0, "Backup.General.ExternalThaw: Resuming system")
    assert log_has(d, flavour, p.pid, 1, "irisemu fault: thaw-delay of 1 s started in pid %d" % p.pid)
    assert not log_has(d, flavour, p.pid, 0, "Backup.General.ExternalThaw: System resumed")
    out = p.communicate(timeout=30)[0]
    assert p.returncode == 5 and "System resumed" in out
    assert wait_phase(d, "thaw-delay-end", p.pid)[0] - t_start >= 1.0
    assert suspended_rc(emu, flavour, name) == 3
    # irisstat -W during the delay: the thaw then reports the backup as not valid
    assert call(emu, flavour, name, FREEZE % "").returncode == 5
    p = popen(emu, session_argv(flavour, name, THAW % "0"))
    wait_phase(d, "thaw-delay-start", p.pid)
    emu.run([FLAV[flavour]["control"], "stat", name, "-W"], check_rc=0)
    out = p.communicate(timeout=30)[0]
    assert p.returncode == 3 and "while ExternalThaw was running" in out and "not valid" in out
    # a thaw with nothing to resume is not delayed
    t0 = time.time()
    assert call(emu, flavour, name, THAW % "").returncode == 5
    assert time.time() - t0 < 1.0
    assert status(emu, name) == "thaw-delay=1\n"


def test_thaw_fail_counts_down(emu, inst, flavour):
    name, d = inst
    faults(emu, name, "--thaw-fail", "2")
    assert call(emu, flavour, name, FREEZE % "").returncode == 5
    p = popen(emu, session_argv(flavour, name, THAW % "0"))
    out = p.communicate(timeout=30)[0]
    assert p.returncode == 3, out
    assert "Resuming system" in out and "Failed to resume system: irisemu fault injected (thaw-fail)" in out
    assert "System resumed" not in out
    assert suspended_rc(emu, flavour, name) == 5  # left frozen
    assert log_has(d, flavour, p.pid, 1, "irisemu fault: thaw-fail fired in pid %d: ExternalThaw fails, the system "
                                         "stays suspended (1 left)" % p.pid)
    assert phases(d)[-1][1:] == (p.pid, "thaw-fail")
    assert status(emu, name) == "thaw-fail=1\n"
    # irisstat -W still resumes the write daemon
    emu.run([os.path.join(d, "bin", FLAV[flavour]["stat"]), "-W"], check_rc=0)
    assert suspended_rc(emu, flavour, name) == 3
    # a thaw after -W has nothing to resume: the fault is not consumed, the backup is reported invalid
    r = call(emu, flavour, name, THAW % "0")
    assert r.returncode == 3 and "not valid" in r.stdout and "irisemu fault" not in r.stdout
    assert status(emu, name) == "thaw-fail=1\n"
    # the second one fires on the next suspended system, then thaws work again
    assert call(emu, flavour, name, FREEZE % "").returncode == 5
    assert call(emu, flavour, name, THAW % "").returncode == 3
    assert status(emu, name) == ""
    assert suspended_rc(emu, flavour, name) == 5
    assert call(emu, flavour, name, THAW % "").returncode == 5
    assert suspended_rc(emu, flavour, name) == 3
    assert [ev for _t, _p, ev in phases(d)] == ["thaw-fail", "thaw-fail"]


def test_thaw_hang(emu, inst, flavour):
    name, d = inst
    faults(emu, name, "--thaw-hang", "1")
    assert call(emu, flavour, name, FREEZE % "").returncode == 5
    p = popen(emu, session_argv(flavour, name, THAW % "0"))
    try:
        wait_phase(d, "thaw-hang-start", p.pid)
        assert log_has(d, flavour, p.pid, 1, "irisemu fault: thaw-hang fired in pid %d: ExternalThaw hangs until "
                                             "killed, the system stays suspended (0 left)" % p.pid)
        assert status(emu, name) == ""  # consumed when it fired
        time.sleep(1.0)
        assert p.poll() is None
        assert suspended_rc(emu, flavour, name) == 5
    finally:
        p.kill()
        p.communicate(timeout=10)
    assert p.returncode == -signal.SIGKILL
    assert suspended_rc(emu, flavour, name) == 5
    r = call(emu, flavour, name, THAW % "0")
    assert r.returncode == 5 and "System resumed" in r.stdout


def test_foreign_thaw_and_irisstat_w_name_their_pid(emu, inst, flavour):
    """The engine's check "is the write daemon still suspended by MY freeze?" can read messages.log: every thaw and
    every irisstat -W leaves a line whose (pid) is the process that did it."""
    name, d = inst
    f = popen(emu, session_argv(flavour, name, FREEZE % ""))
    f.communicate(timeout=30)
    assert f.returncode == 5
    assert log_has(d, flavour, f.pid, 0, "Backup.General.ExternalFreeze: System suspended")
    t = popen(emu, session_argv(flavour, name, THAW % ""))
    t.communicate(timeout=30)
    assert t.returncode == 5
    assert log_has(d, flavour, t.pid, 0, "Backup.General.ExternalThaw: Resuming system")
    assert log_has(d, flavour, t.pid, 0, "Backup.General.ExternalThaw: System resumed")
    assert call(emu, flavour, name, FREEZE % "").returncode == 5
    w = popen(emu, [FLAV[flavour]["control"], "stat", name, "-W"])
    w.communicate(timeout=30)
    assert w.returncode == 0
    assert log_has(d, flavour, w.pid, 1, "Write daemon resumed by %s -W" % FLAV[flavour]["stat"])
    assert call(emu, flavour, name, THAW % "").returncode == 3


def test_rotate_log(emu, inst, flavour):
    name, d = inst
    mgr = os.path.join(d, "mgr")
    logname = FLAV[flavour]["log"]
    path = os.path.join(mgr, logname)
    before = open(path).read()
    st0 = os.stat(path)
    r = emu.run(["irisemu-ctl", name, "rotate-log"], check_rc=0)
    old = r.stdout.split(" -> ")[1].strip()
    assert re.fullmatch(re.escape(path) + r"\.old_\d{8}_\d{6}", old), old
    assert open(old).read() == before  # nothing lost, nothing added
    new = open(path).read()
    assert re.fullmatch(LOGSTAMP + r"\(\d+\) 0 \[Generic\.Event\] irisemu: %s started, the previous log was renamed "
                        r"to %s\n" % (re.escape(logname), re.escape(os.path.basename(old))), new), new
    st1 = os.stat(path)
    assert stat.S_IMODE(st1.st_mode) == 0o666 and (st1.st_uid, st1.st_gid) == (st0.st_uid, st0.st_gid)
    # new lines go to the new file
    assert call(emu, flavour, name, FREEZE % "").returncode == 5
    assert "System suspended" in open(path).read() and "System suspended" not in open(old).read()[len(before):]
    assert call(emu, flavour, name, THAW % "").returncode == 5
    # two rotations within the same second do not overwrite each other
    olds = [emu.run(["irisemu-ctl", name, "rotate-log"], check_rc=0).stdout.split(" -> ")[1].strip()
            for _i in range(2)]
    assert len(set(olds + [old])) == 3 and all(os.path.isfile(o) for o in olds)
    assert emu.run(["irisemu-ctl", "NOSUCH", "rotate-log"]).returncode == 1
    assert emu.run(["irisemu-ctl", name, "bogus"]).returncode == 2
