"""Fault injection for tests (`irisemu-fault`) and the phase log.  TEST-ONLY; real IRIS has nothing like it.

Per instance, in the runtime state directory mgr/irisemu/:

* faults.json  the active faults, e.g. {"freeze-delay": 5.0, "thaw-fail": 2}; 0666, rewritten in place under an
               flock on faults.lock (0666), like state.json / state.lock.  Absent = no faults.
* phase.log    one line per fault that fires: "<epoch seconds, 6 decimals> <pid> <event>\\n", appended with a single
               write(2); 0666.  Events: freeze-fail, freeze-delay-start, freeze-delay-end, thaw-delay-start,
               thaw-delay-end, thaw-fail, thaw-hang-start.

Every fault that fires also writes a messages.log line, severity 1, [Utility.Event], text "irisemu fault: ...",
before its phase.log line (so a driver that sees the phase line also finds the messages.log line).

Lock order: state.lock may be held while faults.lock is taken, never the other way round (nothing here touches
the instance state).
"""
import argparse
import os
import sys
import time

from . import instance, util

DELAYS = ("freeze-delay", "thaw-delay")          # seconds, stay until cleared
COUNTS = ("freeze-fail", "thaw-fail", "thaw-hang")  # fire that many times, decremented atomically
KEYS = ("freeze-delay", "freeze-fail", "thaw-delay", "thaw-fail", "thaw-hang")


def faults_path(inst):
    return os.path.join(inst.emudir, "faults.json")


def lock_path(inst):
    return os.path.join(inst.emudir, "faults.lock")


def phase_path(inst):
    return os.path.join(inst.emudir, "phase.log")


def _create_0666(path, flags=os.O_WRONLY):
    """Open ``path`` (creating it); a file we create gets mode 0666 whatever the umask."""
    fd = os.open(path, flags | os.O_CREAT, 0o666)
    try:
        if os.fstat(fd).st_size == 0:
            os.fchmod(fd, 0o666)
    except PermissionError:
        pass
    return fd


def _locked(inst):
    if not os.path.exists(lock_path(inst)):
        os.close(_create_0666(lock_path(inst), os.O_RDWR))
    return util.locked(lock_path(inst))


def read(inst):
    """The active faults ({} when none); a cheap stat when faults.json does not exist."""
    if not os.path.exists(faults_path(inst)):
        return {}
    with _locked(inst):
        return _active(util.read_json(faults_path(inst)) or {})


def _active(data):
    return dict((k, v) for k, v in data.items() if k in KEYS and v)


def change(inst, clear=False, **values):
    """Set faults (key with '_' for '-'); a value of 0 removes that fault.  Returns the active faults."""
    with _locked(inst):
        data = {} if clear else _active(util.read_json(faults_path(inst)) or {})
        for k, v in values.items():
            if v is None:
                continue
            key = k.replace("_", "-")
            if v:
                data[key] = v
            else:
                data.pop(key, None)
        util.write_json_inplace(faults_path(inst), _active(data))
        return _active(data)


def delay(inst, key):
    """Seconds of the delay fault ``key`` (0 when not set)."""
    return float(read(inst).get(key) or 0)


def take(inst, key):
    """Fire the counting fault ``key`` once: None when it is not set, else how many are left after this one."""
    if not os.path.exists(faults_path(inst)):
        return None
    with _locked(inst):
        data = _active(util.read_json(faults_path(inst)) or {})
        n = int(data.get(key) or 0)
        if n <= 0:
            return None
        data[key] = n - 1
        util.write_json_inplace(faults_path(inst), _active(data))
        return n - 1


def fired(inst, event, text):
    """Record that a fault fired: messages.log first, then phase.log."""
    inst.log(1, "irisemu fault: %s" % text, "Utility.Event")
    phase(inst, event)


def phase(inst, event):
    line = "%.6f %d %s\n" % (time.time(), os.getpid(), event)
    fd = _create_0666(phase_path(inst), os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def sleep_delay(inst, key, what):
    """Run the delay fault ``key`` if set (messages.log + phase.log at start and end); return its seconds."""
    secs = delay(inst, key)
    if secs <= 0:
        return 0
    pid = os.getpid()
    fired(inst, key + "-start", "%s of %g s started in pid %d (%s)" % (key, secs, pid, what))
    time.sleep(secs)
    fired(inst, key + "-end", "%s of %g s ended in pid %d" % (key, secs, pid))
    return secs


def hang_forever(inst, left):
    fired(inst, "thaw-hang-start", "thaw-hang fired in pid %d: ExternalThaw hangs until killed, the system stays "
                                   "suspended (%d left)" % (os.getpid(), left))
    while True:
        time.sleep(3600)


# ---------------------------------------------------------------------------------------------------------------

def _seconds(text):
    v = float(text)
    if v < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return v


def _count(text):
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return v


def main(argv):
    """irisemu-fault INSTANCE [--clear] [--freeze-delay S] [--freeze-fail N] [--thaw-delay S] [--thaw-fail N]
    [--thaw-hang N] [--status]"""
    p = argparse.ArgumentParser(
        prog="irisemu-fault",
        description="inject faults into Backup.General of an emulated instance (TEST EMULATOR ONLY). "
                    "Options add to the faults already set; 0 removes one; --clear removes all first.")
    p.add_argument("instance")
    p.add_argument("--freeze-delay", type=_seconds, metavar="SECONDS",
                   help="every ExternalFreeze blocks this long after the write daemon suspended, before "
                        "'System suspended' (until cleared)")
    p.add_argument("--freeze-fail", type=_count, metavar="N",
                   help="the next N ExternalFreeze calls that would suspend fail with 3, nothing suspended")
    p.add_argument("--thaw-delay", type=_seconds, metavar="SECONDS",
                   help="every ExternalThaw of a suspended system blocks this long after 'Resuming system', "
                        "before resuming (until cleared)")
    p.add_argument("--thaw-fail", type=_count, metavar="N",
                   help="the next N ExternalThaw calls of a suspended system return 3, the system stays suspended")
    p.add_argument("--thaw-hang", type=_count, metavar="N",
                   help="the next N ExternalThaw calls of a suspended system never return (until killed)")
    p.add_argument("--clear", action="store_true", help="remove every fault (before setting the others)")
    p.add_argument("--status", action="store_true", help="print the active faults, one key=value per line")
    a = p.parse_args(argv)
    inst = instance.find(a.instance)
    if inst is None:
        sys.stderr.write("irisemu-fault: instance %s not found\n" % a.instance)
        return 1
    values = dict((k.replace("-", "_"), getattr(a, k.replace("-", "_"))) for k in KEYS)
    if a.clear or any(v is not None for v in values.values()):
        active = change(inst, clear=a.clear, **values)
        # not "irisemu fault:" (that prefix means a fault fired)
        inst.log(0, "irisemu: faults set by pid %d: %s" % (
            os.getpid(), " ".join("%s=%s" % (k, _fmt(active[k])) for k in KEYS if k in active) or "none"),
            "Utility.Event")
    else:
        active = read(inst)
    if a.status:
        for k in KEYS:
            if k in active:
                print("%s=%s" % (k, _fmt(active[k])))
    return 0


def _fmt(v):
    return "%g" % v if isinstance(v, float) else str(v)
