# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Note that this module util is **PRIVATE** to the collection. It can have breaking changes at any time.
# Do not use this from other collections or standalone plugins/modules!
#
# Standard library only, no ansible import: the on-host programs (irisops-hook, irisops-backup, the dead-man
# switch) run verbatim copies of the module_utils files side by side.
"""The one command runner of the collection: how every external command is started, bounded and killed.

Every other file (``_iris`` for IRIS sessions, ``_lvm`` for LVM and util-linux, ``_restic`` for the repository)
runs its commands through :func:`run`, so the decisions below are made once:

* argv is a list, never a shell; stdin is ``data`` or /dev/null (a command that asks a question reads end-of-file
  instead of waiting forever: ``iris session`` prompting for a username, ``lvcreate`` asking to wipe a signature);
* the child runs in a new session and process group, so that a signal sent to the caller's group (a Ctrl-C, the
  SIGHUP of a dropped SSH connection) does not cut an IRIS session or an ``lvcreate`` in half: the freeze engine
  decides what happens next, and a child finishing on its own is covered by the dead-man switch armed before it;
* after ``timeout`` seconds the whole group gets SIGTERM, then SIGKILL after :data:`KILL_GRACE`, and ``rc`` is
  ``None`` (callers say "timed out", never a made-up exit status);
* the environment per command family (:func:`command_env`): C locale for commands whose output is parsed (LVM,
  util-linux, restic); IRIS sessions keep the caller's locale, because the terminal's I/O translation follows it.
"""

from __future__ import absolute_import, division, print_function

import os
import signal
import subprocess
import time

__metaclass__ = type

#: Seconds between SIGTERM and SIGKILL of a timed-out process group.
KILL_GRACE = 2.0

#: Command families whose output is parsed: run them in the C locale.
C_LOCALE_FAMILIES = ('lvm', 'util', 'restic')


def command_env(family=None, extra=None):
    """The environment for a command of ``family`` ('iris', 'lvm', 'util', 'restic'; None = inherit).

    C locale where output is parsed; ``LVM_SUPPRESS_FD_WARNINGS`` because LVM warns on stderr about every file
    descriptor it inherits.  ``extra`` (a dict) is added last: restic's repository settings, for example.
    """
    if family not in C_LOCALE_FAMILIES and not extra:
        return None
    env = dict(os.environ)
    if family in C_LOCALE_FAMILIES:
        env['LC_ALL'] = 'C'
        env['LANG'] = 'C'
    if family == 'lvm':
        env['LVM_SUPPRESS_FD_WARNINGS'] = '1'
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def _text(value):
    if value is None:
        return ''
    if isinstance(value, bytes):
        return value.decode('utf-8', 'replace')
    return value


def start(argv, data=None, env=None, stdout=subprocess.PIPE, stderr=subprocess.PIPE):
    """Start ``argv`` in its own session (see the module docstring).  Returns the Popen object, or raises OSError."""
    if not isinstance(argv, (list, tuple)) or not argv:
        raise ValueError('argv must be a non-empty list')
    # Popen, not AnsibleModule.run_command: this runner also runs standalone on hosts (hook program, dead-man switch,
    # irisops-backup), and it needs the process group for its timeouts
    return subprocess.Popen(  # pylint: disable=ansible-bad-function
        [str(a) for a in argv],
        stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
        stdout=stdout, stderr=stderr, env=env, start_new_session=True, close_fds=True,
    )


def kill_group(proc, grace=KILL_GRACE):
    """SIGTERM the process group of ``proc``, SIGKILL after ``grace`` seconds, then the child itself."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 1.0)):
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            pass
        deadline = time.time() + wait
        while time.time() < deadline:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    # A child that moved to a session of its own (sudo with use_pty) got SIGTERM relayed by its parent; make sure
    # the direct child is gone in any case.
    try:
        proc.kill()
    except OSError:
        pass


def finish(proc, data=None, timeout=None):
    """Feed ``data``, wait up to ``timeout`` seconds and collect ``(rc, stdout, stderr)``; on timeout the group is
    killed and rc is None."""
    payload = data.encode('utf-8') if isinstance(data, str) else data
    try:
        out, err = proc.communicate(input=payload, timeout=timeout)
        return proc.returncode, _text(out), _text(err)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        try:
            out, err = proc.communicate(timeout=KILL_GRACE + 3)
        except (subprocess.TimeoutExpired, ValueError):
            out, err = b'', b''
        return None, _text(out), _text(err) + '\n[timed out after %s s and killed]' % timeout


def run(argv, data=None, timeout=None, env=None):
    """Run ``argv`` and return ``(rc, stdout, stderr)`` as text; rc 127 when it cannot be started, None on timeout."""
    try:
        proc = start(argv, data=data, env=env)
    except OSError as exc:
        return 127, '', '%s: %s' % (argv[0], exc)
    return finish(proc, data=data, timeout=timeout)


class CommandLog(object):
    """A runner that records every command it ran (argv, rc, seconds): the ``commands`` of a module's result and
    the step trace of a report.  ``runner`` is the function that really runs them (:func:`run` by default)."""

    def __init__(self, runner=None, env=None):
        self.runner = runner
        self.env = env
        self.entries = []

    def __call__(self, argv, data=None, timeout=None):
        started = time.time()
        if self.runner is not None:
            rc, out, err = self.runner(argv, data, timeout)
        else:
            rc, out, err = run(argv, data=data, timeout=timeout, env=self.env)
        self.entries.append({'cmd': list(argv), 'rc': rc, 'seconds': round(time.time() - started, 3)})
        return rc, out, err
