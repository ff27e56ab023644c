"""Small helpers: locked JSON files, IRIS time formats, process checks."""
import contextlib
import datetime
import fcntl
import json
import os
import pwd
import grp
import time


@contextlib.contextmanager
def locked(lock_path, exclusive=True):
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def read_json(path, default=None):
    try:
        with open(path, "r", encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return default
    if not text.strip():
        return default
    return json.loads(text)


def write_json_inplace(path, data, mode=0o666):
    """Rewrite a file in place (keeps owner and mode; the caller holds the lock)."""
    text = json.dumps(data, indent=1, sort_keys=True)
    existed = os.path.exists(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, mode)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    if not existed:
        try:
            os.chmod(path, mode)
        except PermissionError:
            pass


def pid_alive(pid):
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours is not alive
    try:
        with open("/proc/%d/stat" % int(pid)) as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
    except (OSError, IndexError):
        pass
    return True


def describe_pid(pid):
    """What /proc shows of ``pid``: gone, or its state and command line."""
    if not pid:
        return "no pid recorded"
    try:
        with open("/proc/%d/stat" % int(pid)) as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        with open("/proc/%d/cmdline" % int(pid), "rb") as fh:
            args = fh.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        return "state %s, cmdline %r" % (state, args[-120:])
    except (OSError, IndexError, ValueError) as exc:
        return "gone (%s)" % type(exc).__name__


def wd_alive(pid, name, proc="/proc"):
    """Is pid the write daemon of instance `name`?  (pids are reused, e.g. after a container restart)"""
    if not pid_alive(pid):
        return False
    try:
        with open("%s/%d/cmdline" % (proc, int(pid)), "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    if not raw:
        # a live process with no arguments yet is still in its execve (state D): the write daemon `iris start` has
        # just spawned.  Taken for dead, its instance was marked down for good by start's own first look at the
        # state (full run of 2026-12-07: "pid 25604 of SRC not found (state D, cmdline '')"; test_journal's
        # "SRC is not running")
        return True
    args = raw.split(b"\0")
    return b"irisemu-wd" in args and name.encode() in args


def ctime(ts):
    """'Fri May 13 22:07:02 2016' (qlist / list status)."""
    return time.ctime(ts)


def log_stamp(ts=None):
    """messages.log stamp: MM/DD/YY-HH:MM:SS:mmm"""
    ts = time.time() if ts is None else ts
    dt = datetime.datetime.fromtimestamp(ts)
    return dt.strftime("%m/%d/%y-%H:%M:%S:") + "%03d" % (dt.microsecond // 1000)


def device_stamp(ts=None):
    """LogFile / principal device stamp: MM/DD/YYYY HH:MM:SS"""
    ts = time.time() if ts is None else ts
    return datetime.datetime.fromtimestamp(ts).strftime("%m/%d/%Y %H:%M:%S")


def horolog(ts=None):
    ts = time.time() if ts is None else ts
    dt = datetime.datetime.fromtimestamp(ts)
    days = (dt.date() - datetime.date(1840, 12, 31)).days
    secs = dt.hour * 3600 + dt.minute * 60 + dt.second
    return days, secs


def current_user():
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def user_ids(name):
    pw = pwd.getpwnam(name)
    return pw.pw_uid, pw.pw_gid


def group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
