# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
#
# Standard library only, no ansible import: the hook program, irisops-backup and the dead-man switch run verbatim
# copies of this file next to _run.py and _iris.py.
"""The freeze engine: the one sequence every freezer of the collection runs.

Freezers: ``iris_freeze`` (freeze and hold until ``iris_thaw``), ``iris_lvm_snapshot`` and ``irisops-backup``
(freeze, snapshot, thaw in one process: :meth:`FreezeEngine.window`), the hook program (``irisops-hook freeze``
holds until ``irisops-hook thaw``).  They differ only in what happens between the freeze and the thaw; the rest is
here, once:

* **one host-wide freeze lock** (:class:`FreezeLock`): ``flock`` on ``<state dir>/freeze.lock`` (the kernel drops
  it when its holder dies: no stale locks) plus an owner record.  A freeze that outlives its process (``iris_freeze``
  until ``iris_thaw``, a hook's freeze until its thaw script) turns the record into a *lease* with a token; a thaw
  without that token never thaws the lease's instances unless forced.  A lease ends when its dead-man switches are
  due, so a controller killed while holding it never blocks the next run for longer than that;
* **arm before freeze**: the dead-man switch of every instance (a systemd timer or a detached sleeper, see
  :func:`deadman_arm`) is armed before ExternalFreeze starts, so no freeze ever runs without a switch covering it,
  not even one that an ``iris session`` child finishes after its parent was killed;
* **a signal guard** (SIGTERM, SIGINT, SIGHUP, SIGPIPE) that records the signal; the engine stops at the next step
  boundary and thaws what this run froze (every step is bounded);
* **rollback** of a partial freeze thaws with the ``stat -W`` fallback; an instance still frozen after that keeps
  its armed switch and is named in the error;
* **validity check before the thaw**: per instance, the write daemon must still be suspended (IsWDSuspendedExt),
  the instance's switch must still be this run's, and the instance log must show no resume and no second freeze
  since the arm.  Otherwise the backup is *invalid*: the caller removes what it took in the window, and the run
  record says so, so that nothing downstream records it (``iris_set_history`` with ``run_id`` refuses it);
* a **run record** per run (``<state dir>/runs/<run_id>.json``): instances, token, valid, reasons.

State lives in :func:`state_dir`: ``/run/irisops`` (0700) for root; for another user ``$XDG_RUNTIME_DIR/irisops``
or ``/tmp/irisops-<uid>``, each verified (owned by the user, 0700, not a symlink, opened without following links)
before anything is written to it or run from it.

The state diagram is in docs/architecture.md.
"""

from __future__ import absolute_import, division, print_function

import datetime
import errno
import fcntl
import json
import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

try:
    from ansible_collections.irisops.backup.plugins.module_utils import _iris
    from ansible_collections.irisops.backup.plugins.module_utils import _run
except ImportError:  # an on-host copy: the engine files side by side (hook program, irisops-backup, switch)
    if os.path.dirname(os.path.abspath(__file__)) not in sys.path:   # run as a script with python3 -I
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _iris  # pylint: disable=import-error
    import _run  # pylint: disable=import-error

__metaclass__ = type

API_VERSION = 2

# ---------------------------------------------------------------------------------------------------------------
# State directory
# ---------------------------------------------------------------------------------------------------------------

#: State directory of root: lock, owner record, switches, run records, the copy of the engine the switches run.
ROOT_STATE_DIR = '/run/irisops'
#: State directory of another user when $XDG_RUNTIME_DIR is not set (verified before use).
USER_STATE_DIR = os.path.join(tempfile.gettempdir(), 'irisops-%d')
LOCK_NAME = 'freeze.lock'
OWNER_NAME = 'freeze.owner.json'
DEADMAN_SUBDIR = 'deadman'
LIB_SUBDIR = 'lib'
RUNS_SUBDIR = 'runs'
#: Run ids and caller names end up in file names and unit names.
SAFE_ID_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$')


class StateDirError(Exception):
    """The state directory cannot be trusted or created; ``str()`` is the whole message."""


def _dir_fd(path):
    return os.open(path, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0) | getattr(os, 'O_NOFOLLOW', 0))


def secure_dir(path, uid=None):
    """Create ``path`` (mode 0700) or verify an existing one: a directory, not a symlink, owned by ``uid`` (default:
    the effective uid), no access for group or others (a directory of ours with a looser mode is tightened).
    Returns ``path``; raises StateDirError naming what is wrong and what to do."""
    uid = os.geteuid() if uid is None else uid
    try:
        os.mkdir(path, 0o700)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise StateDirError('cannot create the state directory %s: %s' % (path, exc))
    try:
        fd = _dir_fd(path)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise StateDirError('%s is a symbolic link or not a directory; refusing to keep freeze state there or to '
                                'run code from it. Next: remove it (another user may have planted it) and retry'
                                % path)
        raise StateDirError('cannot open the state directory %s: %s' % (path, exc))
    try:
        st = os.fstat(fd)
        if st.st_uid != uid:
            raise StateDirError('%s belongs to uid %d, not to uid %d that runs this freeze: another user created it, '
                                'so it could plant the code the dead-man switch runs or delete its state. Next: remove '
                                'it (as root) or set XDG_RUNTIME_DIR to a private directory' % (path, st.st_uid, uid))
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return path


def state_dir(create=True):
    """The verified state directory of the effective user (see the module docstring)."""
    if os.geteuid() == 0:
        path = ROOT_STATE_DIR
    else:
        xdg = os.environ.get('XDG_RUNTIME_DIR')
        if xdg and os.path.isabs(xdg):
            path = os.path.join(xdg, 'irisops')
        else:
            path = USER_STATE_DIR % os.geteuid()
    if not create:
        return path
    return secure_dir(path)


def state_subdir(name, base=None):
    return secure_dir(os.path.join(base or state_dir(), name))


def write_atomic(path, text, mode=0o600):
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix='.tmp-', dir=directory)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(text.encode('utf-8') if isinstance(text, str) else text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_json(path):
    """The JSON document at ``path`` (opened without following a symlink), or None."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0))
    except OSError:
        return None
    try:
        with os.fdopen(fd, 'r') as f:
            return json.load(f)
    except (IOError, OSError, ValueError):
        return None


def _remove(path):
    try:
        os.unlink(path)
        return True
    except OSError:
        return False


def now_iso(ts=None):
    ts = time.time() if ts is None else ts
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).replace(microsecond=0, tzinfo=None).isoformat() \
        + 'Z'


def new_token():
    return os.urandom(8).hex()


def default_run_id(caller='run'):
    return '%s-%s-%d' % (time.strftime('%Y%m%dT%H%M%SZ', time.gmtime()), caller.split(':')[0], os.getpid())


def check_run_id(run_id):
    """An error text for a run id that cannot be a file name, else None."""
    if not run_id or not SAFE_ID_RE.match(run_id) or '..' in run_id:
        return ('run_id %r: use letters, digits, ".", "_", ":" and "-" only (up to 128 characters, no "/" or "..")'
                % (run_id,))
    return None


# ---------------------------------------------------------------------------------------------------------------
# Host-wide freeze lock
# ---------------------------------------------------------------------------------------------------------------

#: Seconds a freezer waits for the lock before it gives up with the holder's name.
LOCK_WAIT = 10.0
#: Seconds a lease outlives the time its switches are due (they need a moment to thaw).
LEASE_SLACK = 60


class LockBusy(Exception):
    """Another freezer holds the host's freeze lock; ``holder`` describes it, ``str()`` is the message."""

    def __init__(self, msg, holder=None):
        super(LockBusy, self).__init__(msg)
        self.holder = holder or {}


def _proc_cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % int(pid), 'rb') as f:
            return [a.decode('utf-8', 'replace') for a in f.read().split(b'\0') if a]
    except (IOError, OSError, ValueError, TypeError):
        return None


def flock_holders(path):
    """pids holding a flock on ``path``, from /proc/locks (empty when unknown)."""
    try:
        st = os.stat(path)
        with open('/proc/locks') as f:
            lines = f.read().splitlines()
    except (IOError, OSError):
        return []
    pids = []
    for line in lines:
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" (a "->" marks a waiter)
        if len(parts) < 6 or parts[1] != 'FLOCK' or '->' in parts:
            continue
        try:
            pid = int(parts[4])
            ino = int(parts[5].split(':')[-1])
        except ValueError:
            continue
        if ino == st.st_ino:
            pids.append(pid)
    return pids


def describe_holder(holder):
    """One line naming who holds the lock: caller, pid, since, run id, lease."""
    if not holder:
        return 'another process'
    parts = [holder.get('caller') or 'an unknown freezer']
    pid = holder.get('pid')
    if pid:
        cmd = _proc_cmdline(pid)
        parts.append('pid %s%s' % (pid, (' (%s)' % ' '.join(cmd)[:120]) if cmd else ' (gone)'))
    if holder.get('since'):
        parts.append('since %s' % holder['since'])
    if holder.get('run_id'):
        parts.append('run %s' % holder['run_id'])
    if holder.get('lease_until'):
        held = ', '.join(holder.get('instances') or []) or 'its instances'
        parts.append('holding %s frozen under a lease until %s at the latest (it ends once its dead-man switches have '
                     'fired or been disarmed and its holder is gone)' % (held, now_iso(holder['lease_until'])))
    return ', '.join(parts)


def lease_live(record, now=None, directory=None):
    """Whether a lease still holds the host's freeze lock: before ``lease_until`` and, when the lock's directory is
    known, while its holder process lives or one of the switches armed under its token is still armed (a switch
    that fired or was disarmed ends its part of the lease: a controller killed while holding a lease blocks the next
    run no longer than its switches)."""
    if not (record and record.get('lease_until') and record['lease_until'] > (now or time.time())):
        return False
    if directory is None:
        return True
    pid = record.get('pid')
    if pid and _proc_cmdline(pid) is not None:
        return True
    try:
        names = os.listdir(os.path.join(directory, DEADMAN_SUBDIR))
    except OSError:
        return False
    for name in names:
        if name.endswith('.json'):
            st = read_json(os.path.join(directory, DEADMAN_SUBDIR, name))
            if st and st.get('lease_token') == record.get('token'):
                return True
    return False


class FreezeLock(object):
    """The host's freeze lock.  ``acquire`` takes the flock (waiting up to ``wait`` seconds) and refuses a live
    lease of another token; ``lease`` keeps the owner record after this process is gone; ``release`` drops both."""

    def __init__(self, caller, token=None, run_id=None, directory=None):
        self.caller = caller
        self.token = token or new_token()
        self.run_id = run_id
        self.directory = directory
        self.fd = None
        self.taken_over = None
        self.previous = None

    @property
    def path(self):
        return os.path.join(self.directory, LOCK_NAME)

    @property
    def owner_path(self):
        return os.path.join(self.directory, OWNER_NAME)

    def record(self):
        return read_json(self.owner_path)

    def _busy(self, holder, what):
        return LockBusy('the host freeze lock (%s) is %s %s. Next: wait until it finishes (or its dead-man switch '
                        'is due), or thaw it with its own lease token; force it only when you know that freeze was '
                        'abandoned' % (self.path, what, describe_holder(holder)), holder)

    def acquire(self, wait=LOCK_WAIT, instances=(), force=False, sleep=time.sleep, write=True):
        """Take the flock and check the owner record (kept in ``previous``).  ``write``: record this process as the
        owner (a freezer); a thaw leaves the record of the freeze it thaws as it is until it is done."""
        self.previous = None
        if self.directory is None:
            self.directory = state_dir()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_CLOEXEC', 0),
                     0o600)
        deadline = time.time() + (wait or 0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except (IOError, OSError) as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise
                if time.time() >= deadline:
                    holder = self.record() or {}
                    pids = flock_holders(self.path)
                    if pids and holder.get('pid') not in pids:
                        holder = dict(holder, pid=pids[0], caller=holder.get('caller') or 'an unknown freezer')
                    os.close(fd)
                    if force:
                        # Forced (a thaw of an abandoned freeze): go on without the lock, and say so.
                        self.taken_over = holder
                        return self
                    raise self._busy(holder, 'held by')
                sleep(0.2)
        self.fd = fd
        rec = self.previous = self.record()
        if lease_live(rec, directory=self.directory) and rec.get('token') != self.token:
            if not force:
                self._unlock()
                raise self._busy(rec, 'leased to')
            self.taken_over = rec
        if write:
            self._write(instances=list(instances))
        return self

    def _write(self, **extra):
        rec = {'token': self.token, 'caller': self.caller, 'pid': os.getpid(), 'since': now_iso(),
               'run_id': self.run_id, 'lease_until': None, 'instances': []}
        old = self.record()
        if old and old.get('token') == self.token:
            rec['since'] = old.get('since') or rec['since']
        rec.update(extra)
        write_atomic(self.owner_path, json.dumps(rec, indent=1, sort_keys=True), 0o600)

    def lease(self, until, instances):
        """Keep the instances frozen after this process: the owner record stays (with ``until``) and the flock is
        released.  Another freezer is refused until ``until`` unless it carries this token or forces."""
        self._write(lease_until=until, instances=list(instances))
        self._unlock()

    def keep_lease(self, record, instances):
        """Leave the lease ``record`` in place for ``instances`` only (a thaw reached the others): its token,
        caller, run id, holder and end stay; unlock."""
        rec = dict(record, instances=list(instances))
        write_atomic(self.owner_path, json.dumps(rec, indent=1, sort_keys=True), 0o600)
        self._unlock()

    def release(self, force=False):
        """Unlock and remove the owner record when it is ours, stale, or ``force`` (a forced thaw ended it)."""
        rec = self.record()
        if rec is None or rec.get('token') == self.token or not lease_live(rec, directory=self.directory) or force:
            _remove(self.owner_path)
        self._unlock()

    def _unlock(self):
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None


# ---------------------------------------------------------------------------------------------------------------
# Signal guard
# ---------------------------------------------------------------------------------------------------------------

def stdout_reader_gone(fd=1):
    """True when nobody reads this process's standard output any more (the pipe's reader is gone: the control
    connection was cut while a module ran with pipelining, so no SIGHUP came).  A module that took snapshots for
    the play's later tasks removes them then: no task will ever use or remove them."""
    try:
        import select
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        events = poller.poll(0)
    except (OSError, ValueError, AttributeError):
        return False
    return any(ev & (select.POLLERR | select.POLLHUP) for _fd, ev in events)


def signal_name(signum):
    try:
        return signal.Signals(signum).name
    except (ValueError, AttributeError):
        return 'signal %s' % signum


class SignalGuard(object):
    """Records SIGTERM, SIGINT, SIGHUP and SIGPIPE while instances may be frozen; the engine checks
    :meth:`interrupted` between steps and thaws.

    The handler does not raise: an exception in the middle of an ExternalFreeze session or of an lvcreate would
    leave that child running on its own.  Every step is bounded, so the thaw starts at the next step boundary.
    SIGKILL cannot be caught: that is what the dead-man switch, armed before the freeze, is for.  Only the main
    thread can install handlers; elsewhere the guard records nothing (the switch still covers a kill).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE)

    def __init__(self):
        self.received = []
        self.old = {}

    def _handler(self, signum, frame):
        self.received.append(signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self.old[s] = signal.signal(s, self._handler)
        return self

    def names(self):
        return ', '.join(self.unique())

    def unique(self):
        """The names of the signals received, each once, in the order they first came."""
        seen = []
        for s in self.received:
            if signal_name(s) not in seen:
                seen.append(signal_name(s))
        return seen

    def interrupted(self):
        if self.received:
            return ('interrupted by %s (the control connection dropped, the job was cancelled or the process was '
                    'told to stop)' % self.names())
        return None

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        return False


# ---------------------------------------------------------------------------------------------------------------
# Dead-man switch
# ---------------------------------------------------------------------------------------------------------------
#
# Why: a frozen instance hangs users once its ExternalFreezeTimeOut is over, and nothing thaws it when the freezer
# dies between the freeze and the thaw (ansible-playbook SIGKILLed, SSH cut, AWX job cancelled, the backup product
# behind a hook crashed).  So every freeze is covered by an on-host timer armed BEFORE it starts:
#   * systemd hosts (running as root with /run/systemd/system): a transient timer + service made with
#     `systemd-run --on-active=N --unit irisops-deadman-<INSTANCE>`; it belongs to PID 1, not to the connection;
#   * elsewhere: a detached sleeper (new session, reparented to init when the freezer exits), pid in the state file.
# When it fires it runs the engine itself from <state dir>/lib (`python3 _freeze.py deadman-fire STATE TOKEN`):
# the same thaw() with the same `stat -W` fallback as every freezer, not a second implementation.
#
# It thaws only the freeze it was armed for: the state file holds a random token that the timer's command line
# repeats (a re-arm or a disarm replaces/removes it), and the instance log must show at most one freeze started
# since the arm (our own: the freezer holds the host lock, so nobody else of ours freezes in between).  Two freezes
# started since the arm mean ours ended and somebody else's is running: left alone.  When the log cannot tell (it
# was rotated), a frozen instance is thawed: a frozen instance blocks users, which is worse than ending somebody's
# freeze (their validity check then refuses to record their backup).  No credentials are stored: the thaw logs in
# with OS authentication as run_as and falls back to `iris stat INST -W`, which needs no login.

#: File every firing appends a line to (besides syslog/journal through `logger`).
DEADMAN_LOG = '/var/log/irisops-deadman.log'
#: syslog priority of the "thawed it" message.
DEADMAN_PRIORITY = 'user.crit'
DEADMAN_TAG = 'irisops-deadman'
DEADMAN_UNIT_PREFIX = 'irisops-deadman-'
#: Upper bound of the default dead-man timeout, and the margin kept below ExternalFreezeTimeOut.
DEADMAN_DEFAULT_MAX = 300
DEADMAN_MARGIN = 60
#: The engine files the switch runs, copied into <state dir>/lib at arm time (_lvm: a window's switch also removes
#: the LVM snapshots of its run when it fires).
ENGINE_MODULES = ('_run', '_iris', '_lvm', '_freeze')
#: Seconds a firing switch waits for an lvcreate of its run (in its own session, it outlives a killed window) before
#: it removes the run's snapshots.
CLEANUP_WAIT = 60


def default_deadman_timeout(external_freeze_timeout=None):
    """min(300, ExternalFreezeTimeOut - 60); for short freeze timeouts half of it (at least 1 s)."""
    eft = external_freeze_timeout or _iris.DEFAULT_EXTERNAL_FREEZE_TIMEOUT
    if eft > 2 * DEADMAN_MARGIN:
        return min(DEADMAN_DEFAULT_MAX, eft - DEADMAN_MARGIN)
    return max(1, eft // 2)


def deadman_dir(base=None):
    return os.path.join(base or state_dir(create=False), DEADMAN_SUBDIR)


def deadman_safe_name(name):
    """Instance name usable in a unit and file name (IRIS names are letters, digits, '_' and '-' anyway)."""
    return re.sub(r'[^A-Za-z0-9_-]', '_', name or '')


def deadman_unit(name):
    return DEADMAN_UNIT_PREFIX + deadman_safe_name(name)


def deadman_state_path(name, directory=None):
    return os.path.join(directory or deadman_dir(), deadman_safe_name(name) + '.json')


def module_source(module):
    """The source text of an imported module: from its loader (inside an AnsiballZ zip) or its file."""
    loader = getattr(module, '__loader__', None)
    fn = getattr(loader, 'get_source', None)
    if fn is not None:
        try:
            src = fn(module.__name__)
            if src:
                return _run._text(src)
        except Exception:  # pylint: disable=broad-except
            pass
    path = getattr(module, '__file__', None)
    fn = getattr(loader, 'get_data', None)
    if fn is not None and path:
        try:
            return _run._text(fn(path))
        except Exception:  # pylint: disable=broad-except
            pass
    with open(path, 'rb') as f:
        return f.read().decode('utf-8', 'replace')


def _lvm_module():
    """_lvm, imported when needed (the switch of a freeze without snapshots never uses it)."""
    try:
        from ansible_collections.irisops.backup.plugins.module_utils import _lvm
    except ImportError:
        import _lvm  # pylint: disable=import-error
    return _lvm


def engine_sources():
    """``{file name: source}`` of the engine files the switch runs (this file and what it imports)."""
    mods = {'_run': _run, '_iris': _iris, '_lvm': _lvm_module(), '_freeze': sys.modules[__name__]}
    return dict((name + '.py', module_source(mods[name])) for name in ENGINE_MODULES)


def install_engine(base, sources=None):
    """Copy the engine into ``<base>/lib`` (verified 0700) and return the path of its ``_freeze.py``.  Files whose
    content is already the same are not rewritten."""
    lib = secure_dir(os.path.join(base, LIB_SUBDIR))
    for name, text in (sources or engine_sources()).items():
        path = os.path.join(lib, name)
        try:
            with open(path, 'rb') as f:
                if f.read().decode('utf-8', 'replace') == text:
                    continue
        except (IOError, OSError):
            pass
        write_atomic(path, text, 0o600)
    return os.path.join(lib, '_freeze.py')


def build_deadman_systemd_argv(name, seconds, python, script, state_path, token, systemd_run='systemd-run'):
    """argv of the transient systemd timer that fires ``script deadman-fire STATE TOKEN`` after ``seconds``."""
    return [systemd_run, '--unit', deadman_unit(name), '--on-active=%ds' % int(seconds),
            '--timer-property=AccuracySec=1s', '--description',
            'irisops dead-man switch: thaw IRIS instance %s if still frozen' % name,
            '--property=TimeoutStartSec=%d' % (_iris.DEFAULT_SESSION_TIMEOUT * 3 + 30),
            python, '-I', script, 'deadman-fire', state_path, token]


def build_deadman_sleeper_argv(python, script, state_path, token, seconds):
    """argv of the detached sleeper (hosts without systemd)."""
    return [python, '-I', script, 'deadman-sleep', state_path, token, str(int(seconds))]


def use_systemd(systemd_dir='/run/systemd/system'):
    return os.geteuid() == 0 and os.path.isdir(systemd_dir) and _iris.find_executable('systemd-run') is not None


def deadman_read_state(name, directory=None):
    """The state dict of the switch armed for ``name``, or None."""
    return read_json(deadman_state_path(name, directory))


def _write_state(path, state):
    write_atomic(path, json.dumps(state, indent=1, sort_keys=True), 0o600)


def deadman_arm(instance, seconds, run_as=None, timeout=None, runner=None, python=None, base=None, mechanism=None,
                sources=None, armed_by='iris_freeze', run_id=None, lease_token=None, cleanup=None):
    """Arm the switch of one instance that is about to be frozen.  Returns ``dict(armed, mechanism, fires_at,
    state_file, unit|pid, token, failed, msg)``; an existing switch for the instance is disarmed first.

    The state records where the instance log ends now (:func:`_iris.log_position`): the switch counts the freezes
    started after that point (see the comment above).  ``armed_by`` names the freezer in the log line of a firing
    switch; ``run_id``/``lease_token`` tie the switch to the run that armed it.  ``cleanup``: what the switch
    removes after its thaw when it fires (``{'lvm_run_tag': tag}``: the LVM snapshots of a window whose process
    died)."""
    runner = runner or _iris.subprocess_runner
    name = instance['name']
    res = {'armed': False, 'mechanism': None, 'fires_at': None, 'failed': False, 'msg': '', 'seconds': int(seconds)}
    try:
        base = base or state_dir()
        directory = secure_dir(deadman_dir(base))
        deadman_disarm(name, runner=runner, directory=directory)
        script = install_engine(base, sources)
        token = new_token()
        if mechanism is None:
            mechanism = 'systemd' if use_systemd() else 'process'
        armed_at = time.time()
        state = {
            'instance': name, 'token': token, 'seconds': int(seconds), 'mechanism': mechanism,
            'armed_at': now_iso(armed_at), 'fires_at': now_iso(armed_at + seconds), 'fires_at_epoch': armed_at + seconds,
            'run_as': _iris.default_run_as(instance) if not run_as else run_as,
            'timeout': int(timeout or _iris.DEFAULT_SESSION_TIMEOUT), 'log_file': DEADMAN_LOG,
            'log_position': _iris.log_position(instance), 'frozen_at': None,
            'unit': deadman_unit(name) if mechanism == 'systemd' else None, 'pid': None,
            'armed_by': armed_by or 'iris_freeze', 'run_id': run_id, 'lease_token': lease_token,
            'cleanup': cleanup,
        }
        state_path = deadman_state_path(name, directory)
        _write_state(state_path, state)
        python = python or sys.executable or 'python3'
        if mechanism == 'systemd':
            argv = build_deadman_systemd_argv(name, seconds, python, script, state_path, token,
                                              systemd_run=_iris.find_executable('systemd-run') or 'systemd-run')
            rc, out, err = runner(argv, None, _iris.DEFAULT_QUERY_TIMEOUT)
            res['command'] = argv
            if rc != 0:
                _remove(state_path)
                res.update(failed=True, msg='could not arm the dead-man switch for instance %s: `%s` exited %s: %s'
                           % (name, ' '.join(argv), rc, (err or out).strip()))
                return res
        else:
            argv = build_deadman_sleeper_argv(python, script, state_path, token, seconds)
            # the detached sleeper outlives this process (no AnsibleModule.run_command: it waits for its child)
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,  # pylint: disable=ansible-bad-function
                                    stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True, cwd='/')
            state['pid'] = proc.pid
            _write_state(state_path, state)
            time.sleep(0.2)
            if proc.poll() is not None:
                _remove(state_path)
                res.update(failed=True, msg='could not arm the dead-man switch for instance %s: the sleeper `%s` '
                                            'exited at once with %s' % (name, ' '.join(argv), proc.returncode))
                return res
            res['command'] = argv
            res['pid'] = proc.pid
        res.update(armed=True, mechanism=mechanism, fires_at=state['fires_at'], fires_at_epoch=state['fires_at_epoch'],
                   state_file=state_path, unit=state['unit'], token=token,
                   msg='dead-man switch armed for instance %s: thaws it at %s unless the thaw comes first'
                       % (name, state['fires_at']))
    except (IOError, OSError, ValueError, StateDirError) as exc:
        res.update(failed=True, msg='could not arm the dead-man switch for instance %s: %s' % (name, exc))
    return res


def deadman_mark_frozen(instance, directory=None):
    """Record in the switch that the freeze it guards succeeded (time and journal point, for status reports).
    A file read and write, no process: cheap inside the freeze window.  False when there is no switch."""
    path = deadman_state_path(instance['name'], directory)
    state = read_json(path)
    if state is None:
        return False
    state['frozen_at'] = now_iso()
    try:
        _write_state(path, state)
    except (IOError, OSError):
        return False
    return True


def deadman_disarm(name, runner=None, directory=None):
    """Stop the timer / kill the sleeper and remove the state.  Idempotent: ``dict(disarmed, was_armed, ...)``."""
    runner = runner or _iris.subprocess_runner
    directory = directory or deadman_dir()
    state_path = deadman_state_path(name, directory)
    state = read_json(state_path)
    res = {'was_armed': state is not None, 'disarmed': False, 'mechanism': state.get('mechanism') if state else None}
    if os.geteuid() == 0 and os.path.isdir('/run/systemd/system'):
        systemctl = _iris.find_executable('systemctl')
        if systemctl:
            unit = deadman_unit(name)
            # Always try: a timer can outlive a lost state file.  Stopping units that do not exist is harmless.
            runner([systemctl, 'stop', unit + '.timer'], None, _iris.DEFAULT_QUERY_TIMEOUT)
            runner([systemctl, 'reset-failed', unit + '.timer', unit + '.service'], None, _iris.DEFAULT_QUERY_TIMEOUT)
    if state and state.get('pid'):
        cmd = _proc_cmdline(state['pid']) or []
        if 'deadman-sleep' in cmd and state_path in cmd:
            try:
                os.kill(int(state['pid']), signal.SIGTERM)
            except OSError:
                pass
    res['disarmed'] = _remove(state_path) or res['was_armed']
    return res


def deadman_status(name, directory=None):
    """``dict(armed, mechanism, fires_at, ...)`` from the state file (armed False when there is none)."""
    try:
        directory = directory or deadman_dir()
    except StateDirError:
        return {'armed': False, 'mechanism': None, 'fires_at': None}
    state = deadman_read_state(name, directory)
    if not state:
        return {'armed': False, 'mechanism': None, 'fires_at': None}
    out = dict((k, state.get(k)) for k in ('mechanism', 'fires_at', 'armed_at', 'seconds', 'unit', 'pid', 'armed_by',
                                           'run_id', 'frozen_at'))
    out['armed'] = True
    out['state_file'] = deadman_state_path(name, directory)
    return out


def switch_is_ours(name, token, directory=None):
    """True when the switch of ``name`` is still the one armed with ``token`` (it has not fired or been re-armed)."""
    state = deadman_read_state(name, directory)
    return bool(state and state.get('token') == token)


def _deadman_log(message, priority=DEADMAN_PRIORITY, log_file=DEADMAN_LOG, runner=None):
    """Log loudly: syslog/journal through logger, plus a line in DEADMAN_LOG."""
    runner = runner or _iris.subprocess_runner
    logger = _iris.find_executable('logger', extra_dirs=('/usr/bin', '/bin'))
    if logger:
        runner([logger, '-p', priority, '-t', DEADMAN_TAG, message], None, 10)
    if log_file:
        try:
            with open(log_file, 'a') as f:
                f.write('%s %s[%d]: %s\n' % (now_iso(), DEADMAN_TAG, os.getpid(), message))
        except (IOError, OSError):
            pass


def freezes_since(position, read_from=None):
    """How many freezes were started in the instance log since ``position`` (see _iris.log_events_since), or None
    when the log cannot tell (rotated, unreadable, no position recorded)."""
    events = _iris.log_events_since(position, read_from=read_from)
    if events is None:
        return None
    return sum(1 for e in events if e == 'suspending')


def deadman_fire(state_path, token, runner=None, discover=None, log=None):
    """What the timer runs: thaw the instance if it is still frozen by the freeze that armed this switch, then do the
    switch's clean-up (the LVM snapshots of a window that died).

    Returns a short word for tests: 'disarmed' (no state / other token), 'not-found', 'not-frozen',
    'other-freeze', 'thawed', 'thaw-failed'."""
    log = log or _deadman_log
    state = read_json(state_path)
    if not state or state.get('token') != token:
        return 'disarmed'
    outcome = _deadman_thaw(state, state_path, runner, discover, log)
    if state.get('cleanup'):
        # the switches of one window (one per instance) fire together: one at a time lists and removes the run's
        # snapshots, so that the second finds them gone instead of failing on an LV the first just removed
        try:
            fd = os.open(os.path.join(os.path.dirname(state_path), '.cleanup.lock'),
                         os.O_WRONLY | os.O_CREAT | getattr(os, 'O_NOFOLLOW', 0), 0o600)
        except OSError:
            fd = None
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            _fire_cleanup(state, log)
        finally:
            if fd is not None:
                os.close(fd)
    return outcome


def _deadman_thaw(state, state_path, runner, discover, log):
    name = state['instance']
    armed_for = state.get('seconds')
    armed_by = state.get('armed_by') or 'iris_freeze'
    instances, errors = (discover or _iris.discover_instances)()
    inst = _iris.find_instance(instances, name)
    if inst is None:
        log('irisops dead-man switch: instance %s not found (%s); could not check whether it is still frozen'
            % (name, '; '.join(errors) or 'not in qlist'), 'user.err')
        _remove(state_path)
        return 'not-found'
    run_as = state.get('run_as')
    timeout = state.get('timeout') or _iris.DEFAULT_SESSION_TIMEOUT
    st = _iris.is_frozen(runner, inst, run_as=run_as, timeout=min(timeout, _iris.DEFAULT_QUERY_TIMEOUT))
    if st['frozen'] is False:
        _remove(state_path)
        return 'not-frozen'
    note = ''
    count = freezes_since(state.get('log_position'))
    if count is not None and count >= 2:
        log('irisops dead-man switch: instance %s is frozen, but by a freeze started after the one %s armed this switch '
            'for (%d freezes since the arm); left it alone' % (name, armed_by, count), 'user.warning')
        _remove(state_path)
        return 'other-freeze'
    if count is None:
        note = ' (the instance log was rotated or unreadable, so it could not tell whose freeze this is; a frozen ' \
               'instance blocks users, so it thawed anyway)'
    t = _iris.thaw(runner, inst, run_as=run_as, timeout=timeout, stat_fallback=True, check_state=False)
    _remove(state_path)
    if t['failed']:
        log('irisops dead-man switch: instance %s was still frozen %s s after %s and the thaw FAILED: %s%s'
            % (name, armed_for, armed_by, t['msg'], note), 'user.crit')
        return 'thaw-failed'
    log('irisops dead-man switch: instance %s was still frozen %s s after %s; thawed it (%s)%s'
        % (name, armed_for, armed_by, t['thawed_by'], note), DEADMAN_PRIORITY)
    return 'thawed'


def _lvcreate_running(tag):
    """pids of lvcreate processes creating a snapshot with ``tag``."""
    pids = []
    for d in os.listdir('/proc'):
        if d.isdigit():
            cmd = _proc_cmdline(int(d)) or []
            if any(os.path.basename(a) in ('lvcreate', 'lvm') for a in cmd[:3]) and tag in cmd:
                pids.append(int(d))
    return pids


def _fire_cleanup(state, log, wait=None, sleep=time.sleep):
    """A window's switch fired: its process died (or overran), and nobody else removes the LVM snapshots of its
    run.  Wait for an lvcreate of the run still running in its own session, then remove every snapshot carrying the
    run's tag (unmounting first)."""
    tag = (state.get('cleanup') or {}).get('lvm_run_tag')
    if not tag:
        return []
    deadline = time.time() + (CLEANUP_WAIT if wait is None else wait)
    while _lvcreate_running(tag) and time.time() < deadline:
        sleep(0.5)
    lvm_mod = _lvm_module()
    lvm = lvm_mod.Lvm()
    removed, errors = [], []
    try:
        lvs = lvm.lvs()
        mounts = lvm.mountinfo()
    except (lvm_mod.LvmError, IOError, OSError) as exc:
        log('irisops dead-man switch: cannot list the LVM snapshots of %s to remove them: %s' % (tag, exc), 'user.err')
        return []
    for lv in lvs:
        if lv.is_any_snapshot and tag in lv.tags:
            try:
                lvm.remove_lv(lv.vg, lv.name, mountpoints=lvm.mountpoints(lv, mounts))
                removed.append(lv.full_name)
            except lvm_mod.LvmError as exc:
                errors.append(exc.msg)
    if removed or errors:
        log('irisops dead-man switch: removed the snapshots of the dead window %s: %s%s' % (
            tag, ', '.join(removed) or 'none', ('; COULD NOT REMOVE: %s' % '; '.join(errors)) if errors else ''),
            'user.err' if errors else 'user.warning')
    return removed


def _deadman_main(argv):
    """``_freeze.py deadman-fire STATE TOKEN`` | ``_freeze.py deadman-sleep STATE TOKEN SECONDS``."""
    if len(argv) >= 3 and argv[0] == 'deadman-fire':
        sys.stdout.write(deadman_fire(argv[1], argv[2]) + '\n')
        return 0
    if len(argv) >= 4 and argv[0] == 'deadman-sleep':
        # Detached sleeper: ignore SIGHUP (a closing connection), exit quietly on SIGTERM (disarm).
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        time.sleep(int(argv[3]))
        sys.stdout.write(deadman_fire(argv[1], argv[2]) + '\n')
        return 0
    sys.stderr.write('usage: _freeze.py deadman-fire STATE TOKEN | deadman-sleep STATE TOKEN SECONDS\n')
    return 2


# ---------------------------------------------------------------------------------------------------------------
# Run records
# ---------------------------------------------------------------------------------------------------------------

def run_record_path(run_id, base=None):
    return os.path.join(base or state_dir(create=False), RUNS_SUBDIR, run_id + '.json')


def write_run_record(record, base=None):
    base = base or state_dir()
    secure_dir(os.path.join(base, RUNS_SUBDIR))
    write_atomic(run_record_path(record['run_id'], base), json.dumps(record, indent=1, sort_keys=True), 0o600)


def read_run_record(run_id, base=None):
    try:
        return read_json(run_record_path(run_id, base))
    except StateDirError:
        return None


def run_validity(run_id, base=None):
    """``(valid, text)`` of a run: True, False (invalid: never record it), or None (unknown or still frozen)."""
    err = check_run_id(run_id)
    if err:
        return None, err
    rec = read_run_record(run_id, base)
    if rec is None:
        return None, ('no record of run %s on this host (%s): it never ran here, or the host rebooted since'
                      % (run_id, run_record_path(run_id, base)))
    if rec.get('valid') is True:
        return True, 'run %s of %s is a valid backup window' % (run_id, rec.get('caller'))
    if rec.get('valid') is False:
        return False, 'run %s of %s is INVALID: %s' % (run_id, rec.get('caller'), '; '.join(
            '%s: %s' % (k, v) for k, v in sorted((rec.get('invalid') or {}).items())) or rec.get('msg') or '?')
    return None, 'run %s of %s has not been thawed yet (state: %s)' % (run_id, rec.get('caller'),
                                                                       rec.get('state') or '?')


# ---------------------------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------------------------

#: Share of ExternalFreezeTimeOut used as the default freeze budget of a window.
BUDGET_SHARE = 0.9
#: Seconds a window ends before its dead-man switches are due.
SWITCH_MARGIN = 2.0

#: Options of every freezer (the modules' common options and the freeze options).
ENGINE_DEFAULTS = dict(
    run_as=None, username=None, password=None, timeout=_iris.DEFAULT_SESSION_TIMEOUT, text=None, log_file=None,
    switch_journal=None, external_freeze_timeout=None, wd_suspend_limit=None, deadman_timeout=None,
    stat_fallback=True, max_freeze_seconds=None,
)

#: Validity verdicts of one instance (see FreezeEngine.validate).
INVALID_FIRED = 'switch fired'
INVALID_RESUMED = 'resumed'
INVALID_REFROZEN = 'frozen again by someone else'
INVALID_UNKNOWN = 'unknown'


class SnapshotStepError(Exception):
    """Raised by a snapshot callback: ``str()`` says what failed."""


def engine_options(options):
    opts = dict(ENGINE_DEFAULTS)
    opts.update(dict((k, v) for k, v in (options or {}).items() if k in ENGINE_DEFAULTS))
    return opts


class FreezeEngine(object):
    """One freeze run over ``instances`` (discovered instance dicts) by ``caller``.

    The steps between freeze and thaw are the caller's (:meth:`window`); the freeze, the thaw, the switches, the
    lock, the signals, the validity check and the run record are the engine's.  Results are plain dicts, and no
    method raises for an IRIS or LVM failure: ``failed`` and ``msg`` say what happened.

    States (docs/architecture.md): lock -> check -> arm -> freeze -> [snapshot steps] -> validate -> thaw ->
    disarm -> record -> unlock (or lease); any failure after arm goes to rollback: thaw (stat -W fallback), remove
    what the steps created, keep the switch of whatever stays frozen, record the run as failed/invalid."""

    def __init__(self, instances, caller, options=None, run_id=None, token=None, runner=None, base=None,
                 clock=time.time, switch_cleanup=None):
        self.instances = list(instances)
        self.switch_cleanup = switch_cleanup  # what a firing switch removes (the snapshots of a window that died)
        self.by_name = dict((i['name'], i) for i in self.instances)
        self.caller = caller
        self.opts = engine_options(options)
        self.run_id = run_id or default_run_id(caller)
        self.runner = runner
        self.base = base
        self.clock = clock
        self.lock = FreezeLock(caller, token=token, run_id=self.run_id, directory=base)
        seconds = self.opts['deadman_timeout']
        self.deadman_seconds = default_deadman_timeout(self.opts['external_freeze_timeout']) if seconds is None \
            else seconds
        self.armed = {}            # name -> deadman_arm result (this run's switches)
        self.armed_since = None
        self.positions = {}        # name -> instance log position just before its freeze (validity, switch)
        self.switch_tokens = {}    # name -> token of this run's switch
        self.trace = []            # [{'t': epoch, 'event': ..., 'detail': ...}]
        self.results = dict((i['name'], {}) for i in self.instances)
        self.guard = None
        self._frozen = []
        self._frozen_at = {}
        self._thawed_now = {}
        self._pending_failure = None
        self.created = []          # what the snapshot steps of a window returned

    # -- small helpers ----------------------------------------------------------------------------------------
    @property
    def token(self):
        return self.lock.token

    def eft(self):
        return self.opts['external_freeze_timeout'] or _iris.DEFAULT_EXTERNAL_FREEZE_TIMEOUT

    def budget(self):
        return self.opts['max_freeze_seconds'] or int(self.eft() * BUDGET_SHARE)

    def user_for(self, inst):
        run_as = self.opts['run_as']
        if isinstance(run_as, dict):
            return run_as.get(inst['name'])
        return run_as

    def note(self, event, detail=''):
        self.trace.append({'t': round(self.clock(), 3), 'event': event, 'detail': detail})

    def _session_kwargs(self):
        return dict((k, self.opts[k]) for k in ('username', 'password', 'timeout'))

    def _base(self):
        if self.base is None:
            self.base = state_dir()
            self.lock.directory = self.base
        return self.base

    def window_budget(self, frozen_at):
        """(seconds, what) bounding the freeze of an instance frozen at ``frozen_at``: the freeze budget, capped at
        the time left until the switches fire (they were armed before the freeze)."""
        budget = self.budget()
        if self.deadman_seconds and self.armed_since is not None:
            # SWITCH_MARGIN before the switch is due: the engine's thaw (and its clean-up) comes first, the switch
            # never races it
            left = self.deadman_seconds - (frozen_at - self.armed_since) - SWITCH_MARGIN
            if left < budget:
                return left, 'deadman_timeout=%d (the dead-man switch thaws then)' % self.deadman_seconds
        return budget, 'budget max_freeze_seconds=%d (ExternalFreezeTimeOut %d)' % (budget, self.eft())

    def new_result(self, steps=()):
        return {'failed': False, 'valid': None, 'invalid': {}, 'msg': '', 'run_id': self.run_id, 'token': self.token,
                'caller': self.caller, 'steps': describe_steps(steps), 'trace': self.trace, 'created': [],
                'instance_results': self.results, 'still_frozen': [], 'went_down': [], 'thawed': [],
                'already_frozen': [], 'frozen_ms': {}, 'freeze_window_ms': None, 'signals': [], 'snapshot_ms': None}

    # -- building blocks --------------------------------------------------------------------------------------
    def take_lock(self, wait=LOCK_WAIT, force=False):
        """None, or the failure text when another freezer holds the lock (nothing was done then)."""
        try:
            self._base()
            self.lock.acquire(wait=wait, instances=[i['name'] for i in self.instances], force=force)
        except LockBusy as exc:
            return str(exc)
        except (IOError, OSError, StateDirError) as exc:
            return 'cannot take the host freeze lock in %s: %s' % (self.base or state_dir(create=False), exc)
        self.note('lock', self.lock.path)
        return None

    def query(self, instances):
        """IsWDSuspendedExt of each instance, concurrently: ``{name: is_frozen result}``."""
        states = {}

        def one(inst):
            states[inst['name']] = _iris.is_frozen(
                self.runner, inst, run_as=self.user_for(inst), username=self.opts['username'],
                password=self.opts['password'], timeout=min(self.opts['timeout'], _iris.DEFAULT_QUERY_TIMEOUT))

        _iris.run_concurrently(one, instances)
        return states

    def check_not_frozen(self, instances=None):
        """``(states, problems)``: IsWDSuspendedExt of each instance, and a text for every instance that is frozen
        already or cannot be asked.  Runs under the lock, so nobody of ours can freeze in between."""
        states = self.query(self.instances if instances is None else instances)
        problems = []
        for name in sorted(states):
            state = states[name]
            if state['failed']:
                problems.append(query_problem(state))
            elif state['frozen']:
                problems.append(
                    'instance %s is already frozen (IsWDSuspendedExt returned 5): another backup is running or a '
                    'freeze was left behind; find out which (messages.log, irisops-hook status), thaw it with '
                    'irisops.backup.iris_thaw, then retry' % name)
        self.note('checked', '; '.join(problems) or 'none frozen')
        return states, problems

    def arm(self, instances, guard=None):
        """Arm the switch of each instance before its freeze.  Returns a failure text (nothing frozen yet) or None."""
        if not self.deadman_seconds:
            return None
        if self.armed_since is None:
            self.armed_since = self.clock()
        for inst in instances:
            arm = deadman_arm(inst, self.deadman_seconds, run_as=self.user_for(inst), timeout=self.opts['timeout'],
                              runner=self.runner, base=self._base(), armed_by=self.caller, run_id=self.run_id,
                              lease_token=self.token, cleanup=self.switch_cleanup)
            self.results[inst['name']]['deadman'] = dict(
                (k, arm.get(k)) for k in ('armed', 'mechanism', 'fires_at', 'seconds', 'unit', 'pid', 'state_file'))
            if arm['failed']:
                return ('%s. Next: check that %s is writable and systemd-run works, or set deadman_timeout: 0 to run '
                        'without a switch' % (arm['msg'], deadman_dir(self.base)))
            self.armed[inst['name']] = arm
            self.switch_tokens[inst['name']] = arm['token']
            if guard is not None and guard.received:
                return 'received %s while arming the dead-man switches' % guard.names()
        self.note('armed', ', '.join(sorted(self.armed)))
        return None

    def freeze(self, instances):
        """ExternalFreeze ``instances`` concurrently, all or nothing (freeze_many rolls back with the stat -W
        fallback); records the freeze in each switch.  Returns freeze_many's result."""
        for inst in instances:
            self.positions[inst['name']] = _iris.log_position(inst)
        self.note('freeze', ', '.join(i['name'] for i in instances))
        run_as = self.opts['run_as']
        if not isinstance(run_as, dict) and run_as is not None:
            run_as = dict((i['name'], run_as) for i in instances)
        many = _iris.freeze_many(
            self.runner, instances, run_as=run_as, log_file=self.opts['log_file'], text=self.opts['text'],
            switch_journal=self.opts['switch_journal'], external_freeze_timeout=self.opts['external_freeze_timeout'],
            wd_suspend_limit=self.opts['wd_suspend_limit'], check_state=False, **self._session_kwargs())
        for name, r in many['results'].items():
            self.results[name]['freeze'] = r
            if r.get('changed') and name in self.armed:
                self.results[name].setdefault('deadman', {})['freeze_recorded'] = deadman_mark_frozen(
                    self.by_name[name], deadman_dir(self.base))
        self.note('frozen' if not many['failed'] else 'freeze failed', many['msg'])
        return many

    def validate(self, instances, states=None):
        """``{name: (verdict, text)}`` for each instance whose write daemon is no longer suspended by this run (empty:
        all valid).  Checked right before the thaw: IsWDSuspendedExt, the switch still this run's, and the log showing
        this run's freeze only since its position before the freeze."""
        states = states if states is not None else self.query(instances)
        verdicts = {}
        for inst in instances:
            name = inst['name']
            st = states[name]
            token = self.switch_tokens.get(name)
            if token is not None and not switch_is_ours(name, token, deadman_dir(self.base)):
                verdicts[name] = (INVALID_FIRED, 'its dead-man switch fired before the thaw (deadman_timeout=%s s): '
                                                 'the write daemon was resumed while the snapshot was taken'
                                  % self.deadman_seconds)
                continue
            if st['failed']:
                verdicts[name] = (INVALID_UNKNOWN, 'cannot tell whether it is still frozen by this run: %s' % st['msg'])
                continue
            events = _iris.log_events_since(self.positions.get(name))
            if events is not None and events.count('suspending') > 1:
                verdicts[name] = (INVALID_REFROZEN, 'the instance log shows this run\'s freeze ended and another one '
                                                    'began before the thaw (%s)' % ', '.join(events))
                continue
            if st['frozen'] is False or (events is not None and 'resumed' in events):
                verdicts[name] = (INVALID_RESUMED, 'the write daemon was no longer suspended before the thaw '
                                                   '(WDSuspendLimit, a thaw by someone else, or irisstat -W): the '
                                                   'snapshot may be torn')
        self.note('validated', '; '.join('%s: %s' % (n, v[0]) for n, v in sorted(verdicts.items())) or 'all valid')
        return verdicts

    def thaw(self, instances, check_state=False, stat_fallback=None):
        """Thaw ``instances`` concurrently, with the stat -W fallback (no login needed) unless the caller turned it
        off (a rollback always uses it: ``stat_fallback=True``).  ``{name: (result, ended_at)}``."""
        done = {}
        if not instances:
            return done
        fallback = self.opts['stat_fallback'] if stat_fallback is None else stat_fallback
        self.note('thaw', ', '.join(i['name'] for i in instances))

        def one(inst):
            r = _iris.thaw(self.runner, inst, run_as=self.user_for(inst), check_state=check_state,
                           stat_fallback=fallback, log_file=self.opts['log_file'], **self._session_kwargs())
            done[inst['name']] = (r, self.clock())

        _iris.run_concurrently(one, instances)
        self.note('thawed', ', '.join('%s%s' % (n, ' FAILED' if r['failed'] else '') for n, (r, _t) in
                                      sorted(done.items())))
        return done

    def disarm(self, names, keep=()):
        """Disarm this run's switches of ``names`` except ``keep`` (left frozen: the switch thaws them later).
        Returns the names whose switch was gone already: it fired."""
        fired = []
        for name in names:
            if name not in self.switch_tokens:
                continue
            entry = self.results.setdefault(name, {}).setdefault('deadman', {})
            if name in keep:
                entry['disarmed'] = False
                continue
            directory = deadman_dir(self.base)
            if not switch_is_ours(name, self.switch_tokens[name], directory):
                # gone (it fired) or re-armed by a later freezer: not ours to stop
                entry['disarmed'] = False
                fired.append(name)
                continue
            try:
                d = deadman_disarm(name, runner=self.runner, directory=directory)
            except Exception as exc:  # pylint: disable=broad-except
                entry['disarmed'] = False
                entry['disarm_error'] = '%s: %s' % (type(exc).__name__, exc)
                continue
            entry['disarmed'] = bool(d.get('disarmed'))
        return fired

    def record(self, state, valid=None, invalid=None, msg=''):
        """Write the run record (what ``iris_set_history run_id`` and the thaw of a held freeze read)."""
        rec = {'run_id': self.run_id, 'caller': self.caller, 'token': self.token, 'state': state, 'valid': valid,
               'invalid': invalid or {}, 'instances': [i['name'] for i in self.instances], 'msg': msg,
               'positions': self.positions, 'switch_tokens': self.switch_tokens,
               'deadman_seconds': self.deadman_seconds, 'updated': now_iso(), 'pid': os.getpid()}
        try:
            write_run_record(rec, self._base())
        except (IOError, OSError, StateDirError) as exc:
            self.note('run record not written', str(exc))

    def release_lock(self, res):
        """Drop the lock, or keep a lease while an instance of this run stays frozen (its switch is due later)."""
        if self.lock.fd is None:
            return
        still = res.get('still_frozen') or []
        if still:
            self.lock.lease(self.lease_until(still), still)
        else:
            self.lock.release()

    def lease_until(self, names):
        due = [self.armed[n].get('fires_at_epoch') or 0 for n in names if n in self.armed]
        return (max(due) if due else self.clock() + self.eft()) + LEASE_SLACK

    def finish(self, res, msg, frozen_any=True):
        res['failed'] = True
        res['msg'] = msg
        if frozen_any:
            res['valid'] = False
            self.record('failed', valid=False, invalid=dict((n, v[1]) for n, v in res['invalid'].items())
                        if isinstance(res.get('invalid'), dict) else None, msg=msg)
        return res

    def still_frozen_text(self, still_frozen, msgs=()):
        armed = [n for n in still_frozen if n in self.armed]
        note = ''
        if armed:
            note = '; the dead-man switch of %s stays armed and tries again at %s' % (
                ', '.join(armed), ', '.join(self.armed[n]['fires_at'] for n in armed))
        return ('THAW FAILED, STILL FROZEN: %s - run irisops.backup.iris_thaw or `iris stat <instance> -W` now (%s)%s'
                % (', '.join(still_frozen), ' | '.join(m for m in msgs if m) or 'the rollback thaw failed', note))

    # -- freeze, snapshot, thaw in one process ----------------------------------------------------------------
    def window(self, steps, snapshot=None, cleanup=None, lock_wait=LOCK_WAIT):
        """Run ``steps``: ('freeze', [instances]), ('snap', payload), ('thaw', [instances]).

        ``snapshot(payload, ctl)`` takes one snapshot inside the window (``ctl`` is this engine: ``time_left()``,
        ``thaw_now(reason)``, ``interrupted()``); it returns a description or raises SnapshotStepError.
        ``cleanup()`` is called when the run failed or is invalid, to remove whatever the snapshot steps created;
        it returns ``(removed, errors)``.  Returns the result dict (never raises for IRIS/LVM failures)."""
        res = self.new_result(steps)
        failure = self.take_lock(wait=lock_wait)
        if failure:
            return self.finish(res, 'nothing frozen: ' + failure, frozen_any=False)
        try:
            _states, problems = self.check_not_frozen()
            if problems:
                return self.finish(res, 'nothing frozen: ' + ' | '.join(problems), frozen_any=False)
            with SignalGuard() as guard:
                self.guard = guard
                failure = self.arm(self.instances, guard)
                if failure:
                    self.disarm(list(self.armed))
                    return self.finish(res, 'nothing frozen: ' + failure, frozen_any=False)
                self.record('frozen')
                outcome = self._run_steps(steps, snapshot)
                res['signals'] = [signal_name(s) for s in guard.received]
            return self._after_window(res, outcome, cleanup)
        finally:
            self.guard = None
            self.release_lock(res)

    def interrupted(self):
        return self.guard.interrupted() if self.guard is not None else None

    def time_left(self):
        """Seconds before a frozen instance of this window runs out of budget (None when nothing is frozen)."""
        now = self.clock()
        left = None
        for inst in self._frozen:
            budget, _what = self.window_budget(self._frozen_at[inst['name']])
            remaining = budget - (now - self._frozen_at[inst['name']])
            left = remaining if left is None else min(left, remaining)
        return left

    def thaw_now(self, reason):
        """Thaw every instance frozen in this window at once: a snapshot step ran past its deadline or was
        interrupted, and the thaw comes before the clean-up of that step.  The window then ends with ``reason``."""
        self._pending_failure = self._pending_failure or reason
        done = self.thaw(list(self._frozen), stat_fallback=True)
        self._thawed_now.update(done)
        self._frozen = [i for i in self._frozen if i['name'] not in done]
        return done

    def _run_steps(self, steps, snapshot):
        froze, thawed, invalid = {}, {}, {}
        frozen_at = self._frozen_at = {}
        self._frozen = []
        self._thawed_now = {}
        rollback_failed, unknown = [], []
        failure = None
        longest = 0.0
        snap_started = snap_ended = None
        guard = self.guard
        try:
            for kind, arg in steps:
                failure = guard.interrupted() or self._pending_failure
                if failure:
                    break
                if kind == 'freeze':
                    started = self.clock()
                    frozen_at.update((i['name'], started) for i in arg)
                    unknown = list(arg)
                    many = self.freeze(arg)
                    unknown = []
                    froze.update(many['results'])
                    rollback_failed.extend(many['still_frozen'])
                    self._frozen.extend(i for i in arg if (many['results'].get(i['name']) or {}).get('changed'))
                    if many['failed']:
                        failure = many['msg']
                        break
                elif kind == 'snap':
                    failure = self._over_budget(arg, longest)
                    if failure:
                        break
                    started = self.clock()
                    snap_started = snap_started or started
                    self.note('snapshot', _payload_name(arg))
                    try:
                        created = snapshot(arg, self)
                    except SnapshotStepError as exc:
                        failure = str(exc)
                        break
                    snap_ended = self.clock()
                    longest = max(longest, snap_ended - started)
                    self.note('snapshot done', _payload_name(arg))
                    self.created.append(created)
                    failure = self._pending_failure
                    if failure:
                        break
                else:
                    targets = [i for i in arg if i in self._frozen]
                    verdicts = self.validate(targets)
                    invalid.update(verdicts)
                    good = [i for i in targets if i['name'] not in verdicts]
                    # not frozen by us any more: thaw only if still frozen; frozen again by someone else: theirs
                    gone = [i for i in targets if verdicts.get(i['name'], ('',))[0] in (INVALID_RESUMED,
                                                                                        INVALID_UNKNOWN)]
                    done = self.thaw(good, check_state=False)
                    done.update(self.thaw(gone, check_state=True))
                    thawed.update(done)
                    self._frozen = [i for i in self._frozen if i not in targets]
                    failed_thaws = sorted(n for n, (tr, _e) in done.items() if tr['failed'])
                    if failed_thaws:
                        failure = 'stopped after the failed thaw of %s' % ', '.join(failed_thaws)
                        break
            failure = failure or guard.interrupted() or self._pending_failure
        except Exception as exc:  # pylint: disable=broad-except  # a bug must not leave instances frozen
            failure = 'unexpected %s in the freeze window: %s' % (type(exc).__name__, exc)
        finally:
            # what this run froze and has not thawed yet, and the instances whose freeze call did not return
            thawed.update(self._thawed_now)
            # (a rollback: with the stat -W fallback whatever the caller chose)
            thawed.update(self.thaw([i for i in self._frozen if i['name'] not in thawed], stat_fallback=True))
            thawed.update(self.thaw([i for i in unknown if i['name'] not in thawed], check_state=True,
                                    stat_fallback=True))
            self._frozen = []
        if guard.received and not failure:
            failure = 'received %s during the thaw' % guard.names()
        return dict(froze=froze, frozen_at=frozen_at, thawed=thawed, invalid=invalid, rollback_failed=rollback_failed,
                    failure=failure, snap_started=snap_started, snap_ended=snap_ended)

    def _over_budget(self, payload, longest):
        now = self.clock()
        for inst in self._frozen:
            elapsed = now - self._frozen_at[inst['name']]
            budget, bound = self.window_budget(self._frozen_at[inst['name']])
            if elapsed + longest > budget:
                who = '' if len(self.instances) == 1 else ' (%s)' % inst['name']
                return ('freeze budget exceeded: %.1f s frozen%s, the next snapshot may take %.1f s, %s; stopped '
                        'before snapshot %s. Make the snapshots faster (fewer volumes, less I/O) or raise '
                        'external_freeze_timeout / deadman_timeout' % (elapsed, who, longest, bound, getattr(
                            payload, 'step_label', None) or _payload_name(payload)))
        return None

    def _after_window(self, res, out, cleanup):
        froze, thawed, invalid = out['froze'], out['thawed'], out['invalid']
        failure = out['failure']
        res['created'] = list(self.created)
        still_frozen, went_down = [], []
        for name, (tr, t_end) in thawed.items():
            self.results[name]['thaw'] = tr
            r = froze.get(name) or {}
            if r.get('changed') or tr.get('thawed_by'):
                res['frozen_ms'][name] = int(round((t_end - out['frozen_at'][name]) * 1000))
            if tr['failed']:
                (went_down if tr.get('down') else still_frozen).append(name)
            elif tr.get('changed'):
                res['thawed'].append(name)
        still_frozen += [n for n in out['rollback_failed'] if n not in still_frozen and n not in thawed]
        for name in went_down:
            # its state query failed because it was down: "went down" below says more than "cannot tell"
            if invalid.get(name, (None,))[0] == INVALID_UNKNOWN:
                del invalid[name]
        fired = self.disarm(list(self.switch_tokens), keep=still_frozen)
        for name in fired:
            if name not in still_frozen and name not in invalid and (froze.get(name) or {}).get('changed'):
                invalid[name] = (INVALID_FIRED, 'its dead-man switch fired inside the freeze window (deadman_timeout=%s '
                                                's): the snapshot may be torn' % self.deadman_seconds)
        res['invalid'] = dict((n, v[1]) for n, v in invalid.items())
        res['still_frozen'] = sorted(still_frozen)
        res['went_down'] = sorted(went_down)
        res['thawed'] = sorted(res['thawed'])
        res['freeze_window_ms'] = max(res['frozen_ms'].values()) if res['frozen_ms'] else None
        if out['snap_started'] is not None and out['snap_ended'] is not None:
            res['snapshot_ms'] = int(round((out['snap_ended'] - out['snap_started']) * 1000))
        parts = [failure] if failure else []
        if invalid:
            parts.append('BACKUP INVALID: %s. Next: find out what resumed the write daemon (WDSuspendLimit, a manual '
                         'thaw, a hook, the dead-man switch: raise deadman_timeout or make the snapshots faster); this '
                         'window must not be recorded' % '; '.join('%s: %s' % (n, v[1]) for n, v in
                                                                   sorted(invalid.items())))
        if went_down:
            parts.append('%s went down inside the freeze window: not frozen (a stopped instance holds no freeze), '
                         'but not backed up either (%s)' % (', '.join(went_down),
                                                            ' | '.join(thawed[n][0]['msg'] for n in went_down)))
        if still_frozen:
            parts.append(self.still_frozen_text(still_frozen, [thawed[n][0]['msg'] for n in still_frozen
                                                               if n in thawed]))
        if not parts:
            res['valid'] = True
            self.record('thawed', valid=True)
            res['msg'] = 'froze %s for at most %s ms, %d snapshot step(s), thawed' % (
                ', '.join(i['name'] for i in self.instances), res['freeze_window_ms'], len(res['created']))
            return res
        removed, errors = cleanup() if cleanup is not None else ([], [])
        res['cleaned_up'] = dict(thawed=res['thawed'], still_frozen=res['still_frozen'], went_down=res['went_down'],
                                 removed=removed, removal_errors=errors)
        msg = '. '.join(parts)
        msg += '. Thawed: %s. Removed: %s' % (', '.join(res['thawed']) or 'none', ', '.join(removed) or 'none')
        if errors:
            msg += '. COULD NOT REMOVE: %s' % '; '.join(errors)
        elif not still_frozen and not invalid:
            msg += ('. Next: fix the cause above and run again; nothing of run %s is left frozen or in place'
                    % self.run_id)
        res['failed'] = True
        res['msg'] = msg
        res['valid'] = False
        self.record('failed', valid=False, invalid=res['invalid'], msg=msg)
        return res

    # -- freeze and hold (iris_freeze, irisops-hook freeze) ---------------------------------------------------
    def hold(self, lock_wait=LOCK_WAIT):
        """Freeze every instance that is not frozen yet and keep them frozen after this process: the lock becomes a
        lease (``res['lease']``: token, until, run id) until the switches are due.  Instances frozen already are
        left as they are (``already_frozen``).  Interrupted before it returns (a signal): thaws again and fails."""
        res = self.new_result([('freeze', self.instances)])
        failure = self.take_lock(wait=lock_wait)
        if failure:
            return self.finish(res, 'nothing frozen: ' + failure, frozen_any=False)
        states = self.query(self.instances)
        problems = [query_problem(states[n]) for n in sorted(states) if states[n]['failed']]
        if problems:
            self.lock.release()
            return self.finish(res, 'nothing frozen: ' + ' | '.join(sorted(problems)), frozen_any=False)
        res['already_frozen'] = sorted(n for n, s in states.items() if s['frozen'])
        for name in res['already_frozen']:
            self.results[name].update(already_frozen=True, frozen=True, changed=False,
                                      msg='instance %s is already frozen; nothing done' % name)
        todo = [i for i in self.instances if not states[i['name']]['frozen']]
        if not todo:
            self.lock.release()
            res['frozen'] = []
            res['msg'] = 'nothing to freeze: %s already frozen' % ', '.join(res['already_frozen'])
            return res
        with SignalGuard() as guard:
            failure = self.arm(todo, guard)
            if failure:
                self.disarm(list(self.armed))
                self.lock.release()
                return self.finish(res, 'nothing frozen: ' + failure, frozen_any=False)
            self.record('freezing')
            many = self.freeze(todo)
            frozen = [i for i in todo if (many['results'].get(i['name']) or {}).get('changed')]
            res['rolled_back'] = many['rolled_back']
            if many['failed'] or guard.received:
                return self._hold_failed(res, many, frozen, guard)
            res['signals'] = []
        self.lock.lease(self.lease_until([i['name'] for i in frozen]), [i['name'] for i in frozen])
        self.record('held', msg='frozen by %s, waiting for the thaw' % self.caller)
        res['frozen'] = sorted(i['name'] for i in frozen)
        until = self.lease_until(res['frozen'])
        res['lease'] = {'token': self.token, 'until': now_iso(until), 'run_id': self.run_id}
        res['msg'] = 'frozen: %s' % (', '.join(res['frozen']) or 'none')
        return res

    def _hold_failed(self, res, many, frozen, guard):
        res['signals'] = [signal_name(s) for s in guard.received]
        failure = many['msg'] if many['failed'] else guard.interrupted()
        still = list(many['still_frozen'])
        msgs = []
        if not many['failed']:
            done = self.thaw(frozen, stat_fallback=True)
        else:
            # freeze_many's rollback already used the stat -W fallback; one more try for what stayed frozen
            done = self.thaw([self.by_name[n] for n in still], check_state=True, stat_fallback=True)
        for name, (r, _t) in done.items():
            if r['failed'] and not r.get('down'):
                msgs.append(r['msg'])
            elif name in still:
                still.remove(name)
        still = sorted(set(still) | set(n for n, (r, _t) in done.items() if r['failed'] and not r.get('down')))
        self.disarm(list(self.switch_tokens), keep=still)
        res['still_frozen'] = still
        if still:
            failure += '. ' + self.still_frozen_text(still, msgs)
        else:
            failure += '. Nothing of this run is left frozen'
        self.release_lock(res)
        return self.finish(res, failure)


def query_problem(state):
    """The text of an IsWDSuspendedExt query that failed, with its command."""
    return '%s (command: %s)' % (state['msg'], ' '.join(state['command']))


def _payload_name(payload):
    return getattr(payload, 'step_name', None) or getattr(payload, 'name', None) or str(payload)


def describe_steps(steps):
    return [('snapshot %s' % _payload_name(arg)) if kind == 'snap'
            else '%s %s' % (kind, ', '.join(i['name'] for i in arg)) for kind, arg in steps]


# ---------------------------------------------------------------------------------------------------------------
# Thaw of a held freeze (iris_thaw, irisops-hook thaw/freezeFail)
# ---------------------------------------------------------------------------------------------------------------

def thaw_held(instances, caller, options=None, token=None, force=False, runner=None, base=None, lock_wait=LOCK_WAIT,
              check_validity=True):
    """See _thaw_held.  A signal (a cancelled job, a dropped connection) does not cut the thaw short: it is
    recorded and the thaw, the disarming, the verdict and the release of the lease all still happen."""
    with SignalGuard() as guard:
        out = _thaw_held(instances, caller, options, token, force, runner, base, lock_wait, check_validity)
    if guard.received:
        out['signals'] = guard.unique()
        if not out['failed']:
            # the thaw is done, but the job that asked for it was stopped: its caller must not take the stop for
            # a normal end (what came after the thaw in that job did not run)
            out['failed'] = True
            out['msg'] = ('%s; the thaw was finished first: %s. Next: nothing is left frozen by this run; find out '
                          'why the job was stopped and run the rest of it again' % (guard.interrupted(), out['msg']))
    return out


def _thaw_held(instances, caller, options=None, token=None, force=False, runner=None, base=None, lock_wait=LOCK_WAIT,
               check_validity=True):
    """Thaw ``instances`` best effort and, with the ``token`` of the freeze that holds them, say whether that
    freeze was still intact (``valid``; the run record gets the verdict).

    Instances under a live lease of another token, or inside another process's freeze window, are refused unless
    ``force``.  Every other instance that can be reached is thawed (a hung query is treated as frozen: the freeze ran
    past ExternalFreezeTimeOut, and the stat -W fallback handles it); down ones are reported, not failed.  Returns
    ``dict(failed, msg, results={name: thaw result}, thawed, refused, still_frozen, went_down, invalid, valid,
    run_id, forced)``."""
    base = base or state_dir()
    lock = FreezeLock(caller, token=token or new_token(), directory=base)
    out = {'failed': False, 'msg': '', 'results': {}, 'thawed': [], 'refused': {}, 'still_frozen': [],
           'went_down': [], 'invalid': {}, 'valid': None, 'run_id': None, 'forced': None, 'unknown': {}}
    busy = None
    try:
        lock.acquire(wait=lock_wait, force=force, write=False)
    except LockBusy as exc:
        busy = exc
    except (IOError, OSError) as exc:
        busy = LockBusy('cannot open the host freeze lock in %s: %s' % (base, exc))
    record = (lock.previous or {}) if busy is None else (busy.holder or {})
    if lock.taken_over:
        out['forced'] = describe_holder(lock.taken_over)
    leased = set(record.get('instances') or [])
    ours = bool(token) and record.get('token') == token
    run = read_run_record(record['run_id'], base) if ours and record.get('run_id') else None
    targets = []
    for inst in instances:
        if busy is not None and (inst['name'] in leased or not leased):
            out['refused'][inst['name']] = str(busy)
        else:
            targets.append(inst)
    engine = FreezeEngine(targets, caller, options, run_id=(run or {}).get('run_id'), token=lock.token,
                          runner=runner, base=base)
    if run:
        out['run_id'] = run['run_id']
        engine.positions = dict(run.get('positions') or {})
        # an instance an earlier (partial) thaw of this run already thawed has no switch of the run any more
        engine.switch_tokens = dict((n, t) for n, t in (run.get('switch_tokens') or {}).items()
                                    if n in engine.by_name and n not in (run.get('thawed') or []))
        leased -= set(run.get('thawed') or [])
    states = engine.query(targets)
    verdicts = {}
    if run and check_validity:
        held = [i for i in targets if i['name'] in leased]
        verdicts = engine.validate(held, states)
        out['invalid'] = dict((n, v[1]) for n, v in verdicts.items())
    frozen, unknown = [], []
    for inst in targets:
        st = states[inst['name']]
        if st['frozen'] is False:
            out['results'][inst['name']] = dict(_iris.brief(st), changed=False, frozen=False,
                                                msg='instance %s is not frozen; nothing to do' % inst['name'])
        elif run and verdicts.get(inst['name'], ('',))[0] == INVALID_REFROZEN:
            out['refused'][inst['name']] = 'frozen again by someone else after this freeze ended; left to them'
        elif st['frozen']:
            frozen.append(inst)
        elif st.get('timed_out'):
            unknown.append(inst)   # a hung query: frozen past ExternalFreezeTimeOut, or down (thaw() tells)
        else:
            # login refused, an error: a thaw session would fail the same way.  Down (qlist) holds no freeze;
            # otherwise it is unknown, not "still frozen"
            res = _iris.base_result(inst, 'thaw')
            if _iris.went_down(runner, inst, res, st['msg']):
                out['went_down'].append(inst['name'])
                out['results'][inst['name']] = res
            else:
                out['unknown'][inst['name']] = st['msg']
                out['results'][inst['name']] = dict(_iris.brief(st), changed=False, frozen=None, msg=st['msg'])
    done = engine.thaw(frozen, check_state=False)
    done.update(engine.thaw(unknown, check_state=True))
    for name, (r, _t) in done.items():
        out['results'][name] = r
        if r.get('down'):
            out['went_down'].append(name)
        elif r['failed']:
            out['still_frozen'].append(name)
        elif r.get('changed'):
            out['thawed'].append(name)
    # switches: this freeze's own (tokens from the run record) are disarmed; without the token, the switch of an
    # instance that is no longer frozen has nothing left to do
    for inst in targets:
        name = inst['name']
        if name in out['still_frozen'] or name in out['refused'] or name in out['unknown']:
            continue
        if name in engine.switch_tokens:
            fired = engine.disarm([name])
            if fired and check_validity and name not in out['invalid']:
                out['invalid'][name] = 'its dead-man switch fired before this thaw'
            out['results'].setdefault(name, {})['deadman'] = dict(engine.results[name].get('deadman') or {},
                                                                  was_armed=not fired)
        elif not leased or name not in leased or force:
            out['results'].setdefault(name, {})['deadman'] = deadman_disarm(name, runner=runner,
                                                                            directory=deadman_dir(base))
    # what of the lease is left: its instances this thaw did not reach, or left frozen
    done_names = set(n for n in out['thawed'] + out['went_down'])
    done_names |= set(n for n, r in out['results'].items() if r.get('frozen') is False)
    remaining = sorted(n for n in leased if n not in done_names) if ours else []
    if run and check_validity:
        update_run_record(run, base, caller, out, remaining)
        out['valid'] = (None if remaining else not out['invalid'] and not out['still_frozen'])
    if lock.fd is not None:
        if ours and remaining:
            lock.keep_lease(record, remaining)     # the rest stays held, by the freeze that holds it
        elif ours or force or not lease_live(record, directory=base):
            lock.release(force=force)   # the freeze is over (or was abandoned): its record goes
        else:
            lock._unlock()        # another owner's lease: its instances were not touched
    out['thawed'].sort()
    out['msg'] = thaw_summary(out)
    out['failed'] = bool(out['still_frozen'] or out['refused'] or out['invalid'] or out['unknown'])
    return out


def held_by_another(token=None, force=False, base=None):
    """Read only (check mode): ``dict(instances, msg)`` of a live lease of another token that a thaw without
    ``force`` would refuse to touch, or None."""
    if force:
        return None
    try:
        base = base or state_dir(create=False)
    except StateDirError:
        return None
    lock = FreezeLock('check', token=token or new_token(), directory=base)
    rec = lock.record()
    if not rec or rec.get('token') == token or not lease_live(rec, directory=base):
        return None
    return {'instances': list(rec.get('instances') or []), 'msg': 'leased to %s' % describe_holder(rec)}


def update_run_record(run, base, caller, out, remaining):
    """Add this thaw's verdict to the record of the held run (its caller, instances and tokens stay as the freeze
    wrote them): valid only once every instance of the run was thawed intact."""
    rec = dict(run)
    invalid = dict(rec.get('invalid') or {})
    invalid.update(out['invalid'])
    thawed = sorted(set(rec.get('thawed') or []) | set(out['thawed']))
    rec.update(invalid=invalid, thawed=thawed, updated=now_iso(),
               msg='thawed by %s%s' % (caller, (' (%s still held)' % ', '.join(remaining)) if remaining else ''))
    if invalid or out['still_frozen']:
        rec.update(state='thawed' if not remaining else 'partly thawed', valid=False)
    elif remaining:
        rec.update(state='partly thawed', valid=None)
    else:
        rec.update(state='thawed', valid=True)
    try:
        write_run_record(rec, base)
    except (IOError, OSError, StateDirError):
        pass


def thaw_summary(out):
    parts = ['thawed: %s' % (', '.join(out['thawed']) or 'nothing')]
    if out['invalid']:
        parts.append('BACKUP INVALID (the freeze ended before this thaw, so a snapshot taken under it may be torn: do '
                     'not record it): %s' % '; '.join('%s: %s' % kv for kv in sorted(out['invalid'].items())))
    if out['refused']:
        parts.append('not thawed, frozen by another owner: %s' % '; '.join(
            '%s: %s' % kv for kv in sorted(out['refused'].items())))
    if out['went_down']:
        parts.append('down (not frozen: a stopped instance holds no freeze): %s' % ', '.join(sorted(out['went_down'])))
    if out.get('unknown'):
        unknown = '; '.join('%s: %s' % kv for kv in sorted(out['unknown'].items()))
        parts.append('cannot tell whether these are frozen, nothing done to them: %s. Next: fix the cause (run_as, '
                     'the login) and run the thaw again' % unknown)
    if out['still_frozen']:
        parts.append('STILL FROZEN: %s (%s). Next: run `iris stat <instance> -W` as root now; users are blocked '
                     'while it stays frozen' % (', '.join(out['still_frozen']), ' | '.join(
                         out['results'][n]['msg'] for n in out['still_frozen'])))
    return '; '.join(parts)


if __name__ == '__main__':
    raise SystemExit(_deadman_main(sys.argv[1:]))
