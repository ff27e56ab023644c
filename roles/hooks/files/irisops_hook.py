# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# Installed by the irisops.backup.hooks role as /usr/local/lib/irisops/irisops_hook.py next to a verbatim copy of
# the collection's plugins/module_utils/_iris.py, and run through /usr/local/sbin/irisops-hook
# (`python3 -I -B .../irisops_hook.py "$@"`).  Standard library only, Python 3.6+.
"""irisops-hook: freeze and thaw the InterSystems IRIS / Cache instances of this host around a snapshot.

Called by VMware Tools (pre-freeze-script, post-thaw-script, backupScripts.d), Azure Backup (ScriptRunner
pre/post scripts), AWS Data Lifecycle Manager (an SSM command document's pre-script/post-script), the Compute
Engine guest agent (/etc/google/snapshots/pre.sh and post.sh of a guest-flush snapshot) or any backup tool
(generic pre/post pair):

    irisops-hook [options] freeze      [scriptArg]   freeze all selected running instances, all or nothing
    irisops-hook [options] thaw        [scriptArg]   thaw what the matching freeze froze (+ ExternalSetHistory)
    irisops-hook [options] freezeFail  [scriptArg]   thaw what the matching freeze froze, record nothing
    irisops-hook [options] status                    IsWDSuspendedExt of every instance and the saved state
    irisops-hook [options] check                     configuration and library self-test; freezes nothing

Exit status: 0 success, 1 failure (for ``freeze``: nothing is left frozen), the warning status (option
--warning-rc, 0 unless set; the Azure scripts use 2) when the run succeeded with a warning.  --exit-codes NAME
replaces these by the codes a framework expects for each outcome (EXIT_CODES; the AWS DLM entry point uses
aws-dlm).

``freeze`` and ``thaw`` are the collection's freeze engine (_freeze.py, installed next to this file): the freeze
takes the host freeze lock and keeps it as a lease until the thaw (another freezer is refused meanwhile; a VMware
legacy/backupScripts.d pair nests), arms the on-host dead-man switch of every instance BEFORE freezing it (see
docs/deadman.md: if the matching ``thaw``/``freezeFail`` never comes - the backup product died, the snapshot hung,
the post script was never configured - the switch thaws the instance after ``deadman_timeout`` seconds), and the
thaw checks that the freeze was still intact (the write daemon still suspended by it, its switch not fired) before
it thaws and disarms; a thaw that finds it was not reports BACKUP INVALID and exits 1.
"""

from __future__ import absolute_import, division, print_function

import argparse
import calendar
import concurrent.futures
import configparser
import errno
import fcntl
import json
import os
import socket
import sys
import time

__metaclass__ = type

VERSION = '1.0.0'
#: The engine API this program was written against (API_VERSION of module_utils/_iris.py and _freeze.py).
REQUIRED_API_VERSION = 2

DEFAULT_CONFIG = '/etc/irisops/hook.conf'
#: _iris.py is looked up next to this file unless lib_dir says otherwise.
DEFAULT_LIB_DIR = os.path.dirname(os.path.abspath(__file__))
CONFIG_SECTION = 'irisops-hook'

DEFAULTS = {
    'lib_dir': DEFAULT_LIB_DIR,
    'instances': 'all',
    'run_as': '',
    'log_file': '/var/log/irisops-hook.log',
    'state_dir': '/var/lib/irisops-hook',
    'syslog': 'true',
    'syslog_facility': 'user',
    'time_budget': '300',
    'session_timeout': '120',
    'external_freeze_timeout': '0',
    'wd_suspend_limit': '0',
    'switch_journal': '',
    'freeze_text': '',
    'set_history': 'false',
    'stat_fallback': 'true',
    'warning_rc': '0',
    'caller': 'manual',
    'deadman_timeout': '',
}

#: Seconds kept back from the budget for discovery, locking and logging.
BUDGET_RESERVE = 10
#: Smallest session timeout ever used (a budget below this is refused).
MIN_SESSION_TIMEOUT = 5

RC_OK = 0
RC_ERROR = 1

ACTIONS = ('freeze', 'thaw', 'freezeFail', 'status', 'check')

#: Callers whose freeze may find another one's lease and nest inside it: VMware Tools runs the legacy
#: pre-freeze-script and the backupScripts.d entries for the same quiesce, and thaws in reverse order, so the first
#: one's thaw comes last.  Any other overlap is refused by the host freeze lock.
NESTABLE = {'vmware-backupscripts': ('vmware-legacy',), 'vmware-legacy': ('vmware-backupscripts',)}


#: --exit-codes NAME: the exit status a framework expects for each outcome of freeze/thaw/freezeFail.  An outcome
#: that is not listed keeps the usual status (0, 1 or --warning-rc).  Outcomes: not_ready = freeze: nothing was
#: attempted (an instance down or unknown, a session user missing, the state of an instance cannot be asked, another
#: freezer holds the host freeze lock, the switch cannot be armed, a broken installation); freeze_failed = freeze:
#: ExternalFreeze was attempted and failed (what this run froze is thawed again); thaw_failed = thaw: an instance
#: not thawed or down, or the backup is invalid; switch_fired = thaw: a dead-man switch of the freeze was due before
#: the thaw started (the instances were thawed under the snapshot); no_freeze = thaw: no state file (no freeze of
#: this caller, or its state was lost).
#: aws-dlm: the codes of AWS's sample SSM documents for Data Lifecycle Manager pre/post scripts ("Error codes will
#: inform Data Lifecycle Manager of the type of error ... emitted via EventBridge events in the 'cause' field":
#: 201 pre-script failed, 202 post-script failed, 203 auto thaw occurred before the post-script, 204 pre-script
#: while a post-script was expected, 205 post-script while a pre-script was expected, 206 application not ready).
#: 204 is not used: a freeze that finds its own earlier freeze never thawed carries it (warning, docs/hooks.md).
EXIT_CODES = {
    'aws-dlm': {'not_ready': 206, 'freeze_failed': 201, 'thaw_failed': 202, 'switch_fired': 203, 'no_freeze': 205},
}


class HookError(Exception):
    """A failure that ends the run with RC_ERROR after logging ``str(exc)``."""


# ---------------------------------------------------------------------------------------------------------------
# Logging: one line per step and instance, `date` timestamps as in the InterSystems sample scripts, to a file,
# to syslog and to stdout (VMware Tools and the Azure agent keep the script's output in their own logs).
# ---------------------------------------------------------------------------------------------------------------

class Logger(object):
    LEVELS = {'info': 'LOG_INFO', 'warning': 'LOG_WARNING', 'error': 'LOG_ERR'}

    def __init__(self, path, caller, use_syslog=True, facility='user', quiet=False):
        self.path = path
        self.caller = caller
        self.quiet = quiet
        self.syslog = None
        self.file_error = None
        self.pid = os.getpid()
        if use_syslog:
            try:
                import syslog
                fac = getattr(syslog, 'LOG_' + facility.upper(), syslog.LOG_USER)
                syslog.openlog('irisops-hook', syslog.LOG_PID, fac)
                self.syslog = syslog
            except (ImportError, AttributeError):  # pragma: no cover - syslog exists on every Linux Python
                self.syslog = None
        self.fh = None
        if path:
            try:
                d = os.path.dirname(path)
                if d and not os.path.isdir(d):
                    os.makedirs(d, 0o755)
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                self.fh = os.fdopen(fd, 'a')
            except OSError as exc:
                self.file_error = '%s: %s' % (path, exc)

    @staticmethod
    def stamp():
        # Same shape as `date` in the InterSystems sample freeze/thaw scripts: "Mon Nov 23 10:51:26 UTC 2026".
        return time.strftime('%a %b %d %H:%M:%S %Z %Y')

    def _emit(self, level, msg, to_syslog=True):
        prefix = {'error': 'ERROR: ', 'warning': 'WARNING: '}.get(level, '')
        line = '%s: [%s %d] %s%s' % (self.stamp(), self.caller, self.pid, prefix, msg)
        if self.fh is not None:
            try:
                self.fh.write(line + '\n')
                self.fh.flush()
            except (IOError, OSError):
                pass
        if not self.quiet:
            stream = sys.stderr if level == 'error' else sys.stdout
            try:
                stream.write(line + '\n')
                stream.flush()
            except (IOError, OSError):
                pass
        if to_syslog and self.syslog is not None:
            try:
                self.syslog.syslog(getattr(self.syslog, self.LEVELS[level]),
                                   '[%s] %s%s' % (self.caller, {'error': 'ERROR: ', 'warning': 'WARNING: '}.get(
                                       level, ''), msg))
            except Exception:  # never let syslog break a freeze/thaw
                pass

    def info(self, msg):
        self._emit('info', msg)

    def warning(self, msg):
        self._emit('warning', msg)

    def error(self, msg):
        self._emit('error', msg)

    def detail(self, prefix, text):
        """Output captured from IRIS (ExternalFreeze LogFile etc.): the log file only, indented."""
        if self.fh is None or not text:
            return
        for raw in text.replace('\r\n', '\n').split('\n'):
            if raw.strip():
                try:
                    self.fh.write('%s%s\n' % (prefix, raw.rstrip()))
                except (IOError, OSError):
                    return
        try:
            self.fh.flush()
        except (IOError, OSError):
            pass

    def blank(self):
        if self.fh is not None:
            try:
                self.fh.write('\n')
                self.fh.flush()
            except (IOError, OSError):
                pass

    def close(self):
        if self.fh is not None:
            try:
                self.fh.close()
            except (IOError, OSError):
                pass
            self.fh = None


# ---------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------

def _bool(value, name):
    text = str(value).strip().lower()
    if text in ('1', 'true', 'yes', 'on'):
        return True
    if text in ('0', 'false', 'no', 'off', ''):
        return False
    raise HookError('%s: expected true/false, got %r' % (name, value))


def _int(value, name, minimum=0, maximum=None):
    try:
        ivalue = int(str(value).strip())
    except ValueError:
        raise HookError('%s: expected an integer, got %r' % (name, value))
    if ivalue < minimum or (maximum is not None and ivalue > maximum):
        raise HookError('%s: %d is out of range (%s..%s)' % (name, ivalue, minimum, maximum if maximum else 'any'))
    return ivalue


def parse_run_as(text):
    """'' -> None (each instance's manager user); 'user' -> 'user'; 'IRIS:u1,CACHE:u2' -> dict (upper-case names)."""
    text = (text or '').strip()
    if not text:
        return None
    if ':' not in text and '=' not in text:
        return text
    mapping = {}
    for part in text.split(','):
        part = part.strip()
        if not part:
            continue
        sep = ':' if ':' in part else '='
        name, _s, user = part.partition(sep)
        if not name.strip() or not user.strip():
            raise HookError('run_as: cannot parse %r (use USER or INSTANCE:USER,INSTANCE:USER)' % part)
        mapping[name.strip().upper()] = user.strip()
    return mapping


def load_settings(args):
    """Defaults < config file < command-line options."""
    settings = dict(DEFAULTS)
    path = args.config
    if path and os.path.exists(path):
        parser = configparser.ConfigParser(interpolation=None)
        try:
            with open(path) as f:
                parser.read_file(f)
        except (IOError, OSError, configparser.Error) as exc:
            raise HookError('cannot read configuration %s: %s' % (path, exc))
        if parser.has_section(CONFIG_SECTION):
            for key, value in parser.items(CONFIG_SECTION):
                if key not in DEFAULTS:
                    raise HookError('unknown setting %r in %s [%s]' % (key, path, CONFIG_SECTION))
                settings[key] = value
    elif path and path != DEFAULT_CONFIG:
        raise HookError('configuration file %s does not exist' % path)
    for key in DEFAULTS:
        value = getattr(args, key, None)
        if value is not None:
            settings[key] = value
    s = {
        'lib_dir': settings['lib_dir'],
        'instances': [x.strip() for x in str(settings['instances']).replace(' ', ',').split(',') if x.strip()],
        'run_as': parse_run_as(settings['run_as']),
        'log_file': settings['log_file'],
        'state_dir': settings['state_dir'],
        'syslog': _bool(settings['syslog'], 'syslog'),
        'syslog_facility': settings['syslog_facility'] or 'user',
        'time_budget': _int(settings['time_budget'], 'time_budget', minimum=BUDGET_RESERVE + MIN_SESSION_TIMEOUT),
        'session_timeout': _int(settings['session_timeout'], 'session_timeout', minimum=MIN_SESSION_TIMEOUT),
        'external_freeze_timeout': _int(settings['external_freeze_timeout'], 'external_freeze_timeout'),
        'wd_suspend_limit': _int(settings['wd_suspend_limit'], 'wd_suspend_limit'),
        'switch_journal': (None if str(settings['switch_journal']).strip() == ''
                           else _bool(settings['switch_journal'], 'switch_journal')),
        'freeze_text': settings['freeze_text'] or None,
        'set_history': _bool(settings['set_history'], 'set_history'),
        'stat_fallback': _bool(settings['stat_fallback'], 'stat_fallback'),
        'warning_rc': _int(settings['warning_rc'], 'warning_rc', maximum=255),
        'caller': settings['caller'] or 'manual',
        # '' = the collection default (_freeze.default_deadman_timeout of external_freeze_timeout); 0 = no switch
        'deadman_timeout': (None if str(settings['deadman_timeout']).strip() == ''
                            else _int(settings['deadman_timeout'], 'deadman_timeout')),
    }
    if not s['instances']:
        s['instances'] = ['all']
    if not all(c.isalnum() or c in '-_.' for c in s['caller']):
        raise HookError('caller %r: use letters, digits, - _ . only (it names the state file)' % s['caller'])
    return s


def session_timeout_for(settings):
    """Per-session timeout so that the worst case of one freeze stays inside the time budget.

    Worst case per instance (all instances run in parallel): state query + ExternalFreeze + query after a
    failure + thaw of the failed instance + rollback thaw = 2 queries + 3 sessions, with a query bounded by
    min(timeout, 30 s).  With the reserve for discovery this is budget >= reserve + 2*min(t,30) + 3*t.
    """
    budget = settings['time_budget'] - BUDGET_RESERVE
    t = min(settings['session_timeout'], budget // 3)
    while t > MIN_SESSION_TIMEOUT and 2 * min(t, 30) + 3 * t > budget:
        t -= 1
    return max(MIN_SESSION_TIMEOUT, t)


# ---------------------------------------------------------------------------------------------------------------
# State files: <state_dir>/<caller>.json records what `freeze` froze, so that `thaw`/`freezeFail` of the same
# caller thaw exactly those instances.  One file per caller makes nested hooks work: with both the legacy
# pre-freeze-script and a backupScripts.d entry installed the first freezes, the second finds the instances
# already frozen and records nothing, and the instances are thawed by the last thaw script (post-thaw-script).
# ---------------------------------------------------------------------------------------------------------------

class StateStore(object):
    def __init__(self, state_dir, caller):
        self.dir = state_dir
        self.caller = caller
        self.path = os.path.join(state_dir, '%s.json' % caller)
        self.lock_path = os.path.join(state_dir, 'lock')
        self.lock_fd = None

    def ensure_dir(self):
        if not os.path.isdir(self.dir):
            os.makedirs(self.dir, 0o700)

    def lock(self, wait):
        self.ensure_dir()
        self.lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.time() + wait
        while True:
            try:
                fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except (IOError, OSError) as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
            if time.time() >= deadline:
                raise HookError('another irisops-hook run holds %s for more than %d s; nothing done' % (
                    self.lock_path, wait))
            time.sleep(0.2)

    def unlock(self):
        if self.lock_fd is not None:
            try:
                fcntl.flock(self.lock_fd, fcntl.LOCK_UN)
                os.close(self.lock_fd)
            except OSError:
                pass
            self.lock_fd = None

    def read(self):
        """The saved state dict, None when there is no state file, or raise HookError when it is unreadable."""
        try:
            with open(self.path) as f:
                data = json.load(f)
        except (IOError, OSError) as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise HookError('cannot read state file %s: %s' % (self.path, exc))
        except ValueError as exc:
            return {'corrupt': str(exc), 'frozen': None}
        if not isinstance(data, dict) or not isinstance(data.get('frozen'), list):
            return {'corrupt': 'unexpected content', 'frozen': None}
        return data

    def write(self, data):
        self.ensure_dir()
        tmp = '%s.%d.tmp' % (self.path, os.getpid())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write('\n')
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, self.path)

    def remove(self):
        try:
            os.unlink(self.path)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise

    def all_states(self):
        res = {}
        try:
            names = sorted(os.listdir(self.dir))
        except OSError:
            return res
        for n in names:
            if n.endswith('.json'):
                try:
                    with open(os.path.join(self.dir, n)) as f:
                        res[n[:-5]] = json.load(f)
                except (IOError, OSError, ValueError) as exc:
                    res[n[:-5]] = {'corrupt': str(exc)}
        return res


# ---------------------------------------------------------------------------------------------------------------
# The library
# ---------------------------------------------------------------------------------------------------------------

def import_engine(lib_dir):
    """The collection's on-host engine (_iris, _freeze and _run, installed by the hooks role next to this file)."""
    if lib_dir and lib_dir not in sys.path:
        sys.path.insert(0, lib_dir)
    try:
        import _iris  # noqa: E402 pylint: disable=import-error
        import _freeze  # noqa: E402 pylint: disable=import-error
    except ImportError as exc:
        raise HookError('cannot import the engine (_iris, _freeze, _run) from %s (%s): reinstall with the '
                        'irisops.backup.hooks role' % (lib_dir, exc))
    for mod in (_iris, _freeze):
        api = getattr(mod, 'API_VERSION', None)
        if api != REQUIRED_API_VERSION:
            raise HookError('%s has API_VERSION %r, this program needs %r: install both from the same '
                            'irisops.backup collection' % (getattr(mod, '__file__', mod.__name__), api,
                                                           REQUIRED_API_VERSION))
    return _iris, _freeze


class Hook(object):
    def __init__(self, iris, freeze, settings, log, extra_arg=None, force=False):
        self.iris = iris
        self.force = force
        self.engine = freeze
        self.s = settings
        self.log = log
        self.extra_arg = extra_arg
        self.started = time.time()
        self.session_timeout = session_timeout_for(settings)
        self.store = StateStore(settings['state_dir'], settings['caller'])
        self.warnings = 0
        #: the outcome of a freeze/thaw for --exit-codes (None: the usual exit status), see EXIT_CODES
        self.outcome = None

    # -- helpers ----------------------------------------------------------------------------------------------

    def warn(self, msg):
        self.warnings += 1
        self.log.warning(msg)

    def rc_ok(self):
        return self.s['warning_rc'] if self.warnings else RC_OK

    def elapsed(self):
        return time.time() - self.started

    def run_as_for(self, inst):
        ra = self.s['run_as']
        if isinstance(ra, dict):
            return ra.get(inst['name'].upper()) or None
        return ra

    def run_as_arg(self, instances):
        """run_as for the freeze engine: None, one user, or a dict keyed by the instance names as discovered."""
        ra = self.s['run_as']
        if isinstance(ra, dict):
            return dict((i['name'], self.run_as_for(i)) for i in instances)
        return ra

    def user_of(self, inst):
        return self.run_as_for(inst) or self.iris.default_run_as(inst) or self.iris.current_username()

    def deadman_seconds(self):
        """Seconds after the freeze at which the dead-man switch thaws (0 = no switch)."""
        if self.s['deadman_timeout'] is not None:
            return self.s['deadman_timeout']
        return self.engine.default_deadman_timeout(self.s['external_freeze_timeout'] or None)

    def discover(self):
        instances, errors = self.iris.discover_instances(timeout=min(30, self.session_timeout))
        for e in errors:
            self.warn('discovery: %s' % e)
        return instances

    def select(self, instances, names=None, require_ready=True):
        """Resolve the configured selection (or ``names``); returns (selected, errors)."""
        wanted = names if names is not None else self.s['instances']
        if not instances:
            return [], []
        selected, errors = self.iris.select_instances(instances, wanted)
        if any(str(w).lower() == 'all' for w in wanted):
            for inst in instances:
                if inst not in selected:
                    self.log.info('%s is %s (%s); skipped'
                                  % (inst['name'], inst.get('status'), inst.get('status_raw')))
        elif require_ready:
            for inst in selected:
                err = self.iris.instance_not_ready_error(inst)
                if err:
                    errors.append(err)
        for inst in selected:
            user = self.user_of(inst)
            err = self.iris.check_run_as(user)
            if err:
                errors.append('instance %s: cannot run sessions as %s (%s); set run_as in %s' % (
                    inst['name'], user, err, DEFAULT_CONFIG))
        return selected, errors

    def _run_parallel(self, fn, instances):
        results = {}
        if not instances:
            return results
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(instances)) as pool:
            futs = dict((pool.submit(fn, inst), inst['name']) for inst in instances)
            for fut in concurrent.futures.as_completed(futs):
                name = futs[fut]
                try:
                    results[name] = fut.result()
                except Exception as exc:  # a bug must not stop the other thaws
                    results[name] = {'failed': True, 'changed': False,
                                     'msg': 'internal error %s: %s' % (type(exc).__name__, exc)}
        return results

    # -- freeze -----------------------------------------------------------------------------------------------

    def caller_id(self):
        """How the freeze engine names this hook (in the host lock, the run records and the switches' log)."""
        return 'irisops-hook:%s' % self.s['caller']

    def engine_options(self):
        opts = dict(timeout=self.session_timeout, stat_fallback=self.s['stat_fallback'],
                    deadman_timeout=self.s['deadman_timeout'])
        for key in ('external_freeze_timeout', 'wd_suspend_limit'):
            if self.s[key]:
                opts[key] = self.s[key]
        if self.s['switch_journal'] is not None:
            opts['switch_journal'] = self.s['switch_journal']
        if self.s['freeze_text']:
            opts['text'] = self.s['freeze_text']
        return opts

    def nested_in(self):
        """The live lease of another caller this freeze nests inside (VMware runs the legacy pre-freeze script and
        the backupScripts.d entries for one quiesce), or None."""
        lock = self.engine.FreezeLock(self.caller_id())
        try:
            lock.directory = self.engine.state_dir()
        except self.engine.StateDirError:
            return None
        rec = lock.record()
        if not self.engine.lease_live(rec):
            return None
        holder = str(rec.get('caller') or '')
        if holder.startswith('irisops-hook:') and holder.split(':', 1)[1] in NESTABLE.get(self.s['caller'], ()):
            return rec
        return None

    def freeze(self):
        log = self.log
        log.blank()
        log.info('Freeze started (irisops-hook %s on %s; instances: %s; time budget %d s, session timeout %d s%s)'
                 % (VERSION, socket.gethostname(), ','.join(self.s['instances']), self.s['time_budget'],
                    self.session_timeout, '; script argument %r' % self.extra_arg if self.extra_arg else ''))
        self.store.lock(min(30, max(5, self.s['time_budget'] // 10)))
        previous = self.store.read()
        carried, token = [], None
        if previous is not None:
            if previous.get('frozen') is None:
                self.warn('state file %s is unreadable (%s); it is replaced' % (self.store.path,
                                                                                previous.get('corrupt')))
            elif previous.get('frozen'):
                carried = list(previous['frozen'])
                token = previous.get('lease')
                self.warn('state file %s from %s still lists %s as frozen by an earlier freeze that was never '
                          'thawed; they stay on the list for the next thaw' % (
                              self.store.path, previous.get('time', '?'), ', '.join(carried)))
        nest = None if token else self.nested_in()
        if nest is not None:
            self._save_freeze_state([], 'nested', nested_in=nest.get('caller'))
            log.info('Freeze finished: nested inside the freeze of %s (run %s), which holds %s frozen and thaws them '
                     'with its own thaw script; nothing more to do; exit %d' % (
                         nest.get('caller'), nest.get('run_id'), ', '.join(nest.get('instances') or []), self.rc_ok()))
            return self.rc_ok()
        instances = self.discover()
        selected, errors = self.select(instances)
        if errors:
            for e in errors:
                log.error(e)
            self._save_freeze_state(carried, 'refused', lease=token)
            self.outcome = 'not_ready'
            log.error('Freeze finished: nothing was frozen (%d problem(s) above); exit %d' % (len(errors), RC_ERROR))
            return RC_ERROR
        if not selected:
            self._save_freeze_state(carried, 'nothing to freeze', lease=token)
            self.warn('no running IRIS or Cache instance found (iris qlist / ccontrol qlist); nothing to freeze')
            log.info('Freeze finished: nothing frozen; exit %d' % self.rc_ok())
            return self.rc_ok()
        for inst in selected:
            log.info('Attempting to freeze %s (%s, sessions as %s)' % (inst['name'], inst.get('flavour'),
                                                                       self.user_of(inst)))
        if self.deadman_seconds() <= 0:
            self.warn('deadman_timeout=0: no dead-man switch; if the thaw never comes, the instances stay frozen and '
                      'block users after ExternalFreezeTimeOut')
        opts = self.engine_options()
        opts['run_as'] = self.run_as_arg(selected)
        engine = self.engine.FreezeEngine(selected, self.caller_id(), opts, token=token)
        # Record the intent before freezing: if this process is killed (framework timeout) the thaw/freezeFail
        # that follows still knows which instances may be frozen and under which lease.
        self._save_freeze_state(carried + [i['name'] for i in selected if i['name'] not in carried], 'in progress',
                                lease=engine.token, run_id=engine.run_id)
        res = engine.hold()
        frozen_now = list(res.get('frozen') or [])
        for inst in selected:
            name = inst['name']
            got = engine.results.get(name) or {}
            r = got.get('freeze') or {}
            self.log.detail('    %s | ' % name, r.get('log') or '')
            if name in res.get('already_frozen', []):
                self.warn('  %s was already frozen before this run (IsWDSuspendedExt=5); it is left to whoever '
                          'froze it and not recorded for thaw' % name)
            elif r.get('failed'):
                log.error('  %s FREEZE FAILED: %s' % (name, r.get('msg')))
            elif r.get('rolled_back') or name in (res.get('rolled_back') or {}):
                log.info('  %s was frozen, then THAWED AGAIN because another instance failed' % name)
            elif name in frozen_now:
                extra = []
                if r.get('journal_file'):
                    extra.append('journal restore starts at %s' % r['journal_file'])
                if r.get('duration_ms') is not None:
                    extra.append('%.1f s' % (r['duration_ms'] / 1000.0))
                log.info('  %s IS FROZEN (ExternalFreeze exit %s%s)' % (name, r.get('rc'), '; ' + ', '.join(extra)
                                                                        if extra else ''))
                for w in r.get('warnings') or []:
                    log.info('  %s: %s' % (name, w))
                dm = got.get('deadman') or {}
                if dm.get('armed'):
                    log.info('  %s: dead-man switch armed (%s, %s s): thaws it at %s UTC unless the thaw comes first'
                             % (name, dm.get('mechanism'), dm.get('seconds'), dm.get('fires_at')))
                # The line the legacy VMware scripts print, kept for log parsers: only for what this run froze
                log.info('  Completed freeze of %s' % name)
        if res['failed']:
            # ExternalFreeze attempted on any instance (the lock, a state query or the switch can stop a run before)
            attempted = any((engine.results.get(i['name']) or {}).get('freeze') for i in selected)
            self.outcome = 'freeze_failed' if attempted else 'not_ready'
            still = list(res.get('still_frozen') or [])
            self._save_freeze_state(carried + [n for n in still if n not in carried], 'failed',
                                    lease=engine.token if still else token, run_id=engine.run_id)
            if still:
                log.error('Freeze finished: FAILED and %s could not be thawed again (%s) - run `irisops-hook --caller %s '
                          'freezeFail` or `iris stat <instance> -W` now; exit %d' % (
                              ', '.join(still), res['msg'], self.s['caller'], RC_ERROR))
            else:
                log.error('Freeze finished: FAILED (%s); no instance is left frozen by this run; exit %d' % (
                    res['msg'], RC_ERROR))
            return RC_ERROR
        deadman = dict((n, (engine.results[n].get('deadman') or {}).get('fires_at')) for n in frozen_now
                       if (engine.results[n].get('deadman') or {}).get('armed'))
        self._save_freeze_state(carried + [n for n in frozen_now if n not in carried], 'frozen', deadman=deadman,
                                lease=engine.token, run_id=engine.run_id)
        log.info('Freeze finished: frozen %s in %.1f s (run %s); exit %d'
                 % (', '.join(frozen_now) or 'nothing new', self.elapsed(), engine.run_id, self.rc_ok()))
        return self.rc_ok()

    @staticmethod
    def _switch_was_due(state, now=None):
        """True when a dead-man switch armed by the freeze of ``state`` was due before now (the thaw's start)."""
        now = time.time() if now is None else now
        for fires_at in ((state or {}).get('deadman') or {}).values():
            try:
                due = calendar.timegm(time.strptime(str(fires_at), '%Y-%m-%dT%H:%M:%SZ'))
            except ValueError:
                continue
            if due <= now:
                return True
        return False

    def _failed(self, switch_due):
        """The outcome of a failed thaw: the switch fired under the snapshot, or the thaw itself failed."""
        if self.outcome is None:
            self.outcome = 'switch_fired' if switch_due else 'thaw_failed'
        return RC_ERROR

    def _save_freeze_state(self, names, result, deadman=None, lease=None, run_id=None, nested_in=None):
        data = {
            'caller': self.s['caller'], 'frozen': list(names), 'result': result, 'pid': os.getpid(),
            'time': time.strftime('%Y-%m-%dT%H:%M:%S%z'), 'version': VERSION,
        }
        if deadman:
            data['deadman'] = dict(deadman)  # name -> fires_at (UTC) of the switch armed by this freeze
        if lease:
            data['lease'] = lease            # the token of the freeze engine's lease: the thaw carries it
        if run_id:
            data['run_id'] = run_id
        if nested_in:
            data['nested_in'] = nested_in
        self.store.write(data)

    # -- thaw / freezeFail ------------------------------------------------------------------------------------

    def thaw(self, action):
        log = self.log
        iris = self.iris
        what = 'Thaw' if action == 'thaw' else 'FreezeFail'
        record = action == 'thaw' and self.s['set_history']
        log.blank()
        log.info('%s started (irisops-hook %s on %s; time budget %d s, session timeout %d s%s)' % (
            'Thaw' if action == 'thaw' else 'FreezeFail (backup aborted)', VERSION, socket.gethostname(),
            self.s['time_budget'], self.session_timeout,
            '; script argument %r' % self.extra_arg if self.extra_arg else ''))
        self.store.lock(min(30, max(5, self.s['time_budget'] // 10)))
        state = self.store.read()
        switch_due = self._switch_was_due(state)
        if state is None or state.get('frozen') is None:
            self.outcome = 'no_freeze'
        if state is not None and state.get('nested_in'):
            self.store.remove()
            log.info('%s finished: the freeze of this caller was nested inside the one of %s, whose thaw script '
                     'thaws; nothing to do; exit %d' % (what, state['nested_in'], self.rc_ok()))
            return self.rc_ok()
        instances = self.discover()
        token = None
        if state is not None and state.get('frozen') is not None:
            names = list(state['frozen'])
            token = state.get('lease')
            from_state = True
            if not names:
                log.info('state file %s: the freeze of this caller froze nothing (%s); nothing to thaw' % (
                    self.store.path, state.get('result')))
        else:
            from_state = False
            if state is None:
                self.warn('no state file %s (no freeze by caller %s, or the state was lost): thawing every frozen '
                          'instance of the selection (%s) that no other freezer holds'
                          % (self.store.path, self.s['caller'], ','.join(self.s['instances'])))
            else:
                self.warn('state file %s is unreadable (%s): thawing every frozen instance of the selection that no '
                          'other freezer holds' % (self.store.path, state.get('corrupt')))
            sel, errs = self.select(instances, require_ready=False)
            for e in errs:
                log.error(e)
            names = [i['name'] for i in sel]
        targets = []
        errors = []
        for name in names:
            inst = iris.find_instance(instances, name)
            if inst is None:
                errors.append('%s: listed as frozen in %s but not found by iris/ccontrol qlist' % (
                    name, self.store.path))
                continue
            user = self.user_of(inst)
            err = iris.check_run_as(user)
            if err:
                errors.append('%s: cannot run sessions as %s (%s)' % (name, user, err))
                continue
            targets.append(inst)
        for e in errors:
            log.error(e)
        for inst in targets:
            log.info('Attempting to thaw %s (%s, sessions as %s)' % (inst['name'], inst.get('flavour'),
                                                                     self.user_of(inst)))
        opts = self.engine_options()
        opts['run_as'] = self.run_as_arg(targets)
        out = self.engine.thaw_held(targets, self.caller_id(), opts, token=token,
                                    force=self.force) if targets else dict(
            results={}, thawed=[], refused={}, still_frozen=[], went_down=[], invalid={}, valid=None, msg='',
            run_id=None)
        failed = list(errors)
        for inst in targets:
            name = inst['name']
            r = out['results'].get(name) or {}
            self.log.detail('    %s | ' % name, r.get('log') or '')
            if name in out['refused']:
                if from_state:
                    log.error('  %s NOT THAWED: %s' % (name, out['refused'][name]))
                    failed.append(name)
                else:
                    self.warn('  %s is frozen by another freezer and left to it: %s' % (name, out['refused'][name]))
            elif name in out['went_down']:
                log.error('  %s IS DOWN, not frozen: %s' % (name, r.get('msg')))
            elif name in out['still_frozen']:
                log.error('  %s THAW FAILED: %s' % (name, r.get('msg')))
                st = self.engine.deadman_status(name)
                if st.get('armed'):
                    log.error('  %s: its dead-man switch stays armed and tries again at %s UTC (ExternalThaw, then '
                              '`stat -W`)' % (name, st.get('fires_at')))
                failed.append(name)
            elif name in out['thawed']:
                log.info('  %s IS THAWED (%s exit %s; %.1f s)' % (name, r.get('thawed_by'), r.get('rc'),
                                                                  (r.get('duration_ms') or 0) / 1000.0))
            elif from_state:
                log.info('  %s was no longer frozen' % name)
            else:
                log.info('  %s was not frozen; nothing to do' % name)
            if name in out['invalid']:
                log.error('  %s: BACKUP INVALID: %s - the snapshot taken under this freeze may be torn; do not use it'
                          % (name, out['invalid'][name]))
            dm = r.get('deadman') or {}
            if dm.get('disarmed') or dm.get('was_armed'):
                log.info('  %s: dead-man switch disarmed' % name)
            log.info('  Completed thaw of %s' % name)
        interrupted = out.get('signals') and not out['invalid'] and not out['still_frozen']
        if interrupted:
            # the engine finished the thaw under the signal; whoever sent it gave up on this backup, so it is not
            # recorded (ExternalSetHistory may purge journals) and the exit status says the hook did not complete
            log.error('  %s' % out['msg'])
        if record and out['thawed'] and interrupted:
            self.warn('  backup NOT recorded (ExternalSetHistory): the thaw was interrupted by %s' % ', '.join(
                out['signals']))
        elif record and out['thawed']:
            if out['invalid']:
                self.warn('  backup NOT recorded (ExternalSetHistory): the freeze was not intact (%s)' % ', '.join(
                    sorted(out['invalid'])))
            else:
                for inst in [i for i in targets if i['name'] in out['thawed']]:
                    h = iris.set_history(None, inst, run_as=self.run_as_for(inst), timeout=self.session_timeout,
                                         check_state=False)
                    self.log.detail('    %s | ' % inst['name'], h.get('log') or '')
                    if h['failed']:
                        self.warn('  %s: backup NOT recorded: %s' % (inst['name'], h['msg']))
                    else:
                        log.info('  %s: backup recorded in the backup history (ExternalSetHistory)' % inst['name'])
        still = [n for n in out['still_frozen'] if n in names]
        if still:
            self._save_freeze_state(still, 'thaw failed', deadman=dict(
                (n, v) for n, v in ((state or {}).get('deadman') or {}).items() if n in still), lease=token,
                run_id=(state or {}).get('run_id'))
        else:
            self.store.remove()
        if failed:
            log.error('%s finished: FAILED for %s - users are blocked while an instance stays frozen: run '
                      '`irisops-hook --caller %s thaw` again or `iris stat <instance> -W`; exit %d' % (
                          what, ', '.join(failed), self.s['caller'], RC_ERROR))
            return self._failed(switch_due)
        if out['went_down']:
            # the better explanation first: a stopped instance also makes its freeze "not intact"
            log.error('%s finished: FAILED - %s went down during the backup: not frozen (a stopped instance holds no '
                      'freeze), but not in this backup either; start it and take the backup again; exit %d' % (
                          what, ', '.join(out['went_down']), RC_ERROR))
            return self._failed(switch_due)
        if interrupted:
            log.error('%s finished: INTERRUPTED by %s after thawing %s; exit %d' % (
                what, ', '.join(out['signals']), ', '.join(out['thawed']) or 'nothing', RC_ERROR))
            return self._failed(switch_due)
        if out['invalid'] and action == 'thaw':
            log.error('%s finished: BACKUP INVALID for %s (%s); thawed %s; exit %d' % (
                what, ', '.join(sorted(out['invalid'])), '; '.join('%s: %s' % kv for kv in sorted(
                    out['invalid'].items())), ', '.join(out['thawed']) or 'nothing', RC_ERROR))
            return self._failed(switch_due)
        log.info('%s finished: thawed %s in %.1f s; exit %d' % (
            what, ', '.join(out['thawed']) or 'nothing', self.elapsed(), self.rc_ok()))
        return self.rc_ok()

    # -- status / check ---------------------------------------------------------------------------------------

    def status(self, as_json=False):
        iris = self.iris
        instances = self.discover()
        out = {'instances': [], 'states': self.store.all_states()}
        rc = RC_OK
        for inst in instances:
            entry = {'name': inst['name'], 'flavour': inst.get('flavour'), 'status': inst.get('status'),
                     'run_as': self.user_of(inst), 'frozen': None, 'deadman': self.engine.deadman_status(inst['name'])}
            if inst.get('ready'):
                q = iris.is_frozen(None, inst, run_as=self.run_as_for(inst),
                                   timeout=min(30, self.session_timeout))
                entry['frozen'] = q['frozen']
                entry['rc'] = q['rc']
                if q['failed']:
                    entry['error'] = q['msg']
                    rc = RC_ERROR
            out['instances'].append(entry)
        if as_json:
            print(json.dumps(out, indent=2, sort_keys=True))
        else:
            if not instances:
                print('no IRIS or Cache instance found (iris qlist / ccontrol qlist)')
            for e in out['instances']:
                if e.get('error'):
                    what = 'ERROR: %s' % e['error']
                elif e['frozen'] is None:
                    what = 'not queried (%s)' % e['status']
                else:
                    what = 'FROZEN (IsWDSuspendedExt=%s)' % e['rc'] if e['frozen'] else 'not frozen (IsWDSuspendedExt=%s)' % e['rc']
                if e['deadman'].get('armed'):
                    dm = e['deadman']
                    what += ', dead-man switch armed (%s, fires at %s UTC)' % (dm.get('mechanism'), dm.get('fires_at'))
                print('%-12s %-6s %-18s %s' % (e['name'], e['flavour'], e['status'], what))
            for caller, st in sorted(out['states'].items()):
                frozen = ','.join(st.get('frozen') or []) or '-'
                print('state %s: frozen=%s result=%s time=%s' % (caller, frozen, st.get('result'), st.get('time')))
        return rc

    def check(self):
        """Self-test without freezing: library, configuration, log file, and one IsWDSuspendedExt session per
        running instance of the selection as the user the hooks will use (catches a missing OS-authentication
        user before the first snapshot does)."""
        iris = self.iris
        instances = self.discover()
        print('irisops-hook %s, _iris API %s from %s' % (VERSION, iris.API_VERSION, iris.__file__))
        print('caller %s, instances %s, time budget %d s -> session timeout %d s, log %s, state %s' % (
            self.s['caller'], ','.join(self.s['instances']), self.s['time_budget'], self.session_timeout,
            self.s['log_file'] or '-', self.store.path))
        seconds = self.deadman_seconds()
        eft = self.s['external_freeze_timeout'] or iris.DEFAULT_EXTERNAL_FREEZE_TIMEOUT
        if seconds > 0:
            print('dead-man switch: thaws %d s after a freeze unless the thaw comes first (%s, state in %s)%s' % (
                seconds, 'systemd timer' if self.engine.use_systemd() else 'detached sleeper process', self.engine.deadman_dir(),
                '; WARNING: not below ExternalFreezeTimeOut (%d s), users may hang first' % eft
                if seconds >= eft else ''))
        else:
            print('dead-man switch: disabled (deadman_timeout = 0)')
        rc = RC_OK
        if self.s['log_file']:
            err = _check_writable(self.s['log_file'])
            if err:
                print('ERROR: log file %s is not writable: %s' % (self.s['log_file'], err))
                rc = RC_ERROR
        if not instances:
            print('no IRIS or Cache instance found (iris qlist / ccontrol qlist); the hooks will freeze nothing')
            return rc
        selected, errors = self.select(instances, require_ready=False)
        for e in errors:
            print('ERROR: %s' % e)
            rc = RC_ERROR
        for inst in instances:
            line = 'instance %s (%s, %s) sessions as %s' % (inst['name'], inst.get('flavour'), inst.get('status'),
                                                            self.user_of(inst))
            if inst not in selected:
                print(line + ': not selected')
                continue
            if not inst.get('ready'):
                print(line + ': not running, not checked')
                continue
            q = iris.is_frozen(None, inst, run_as=self.run_as_for(inst), timeout=min(30, self.session_timeout))
            if q['failed']:
                print(line + ': ERROR: %s' % q['msg'])
                rc = RC_ERROR
            else:
                print(line + ': session ok, %s' % ('FROZEN' if q['frozen'] else 'not frozen'))
        return rc


def _check_writable(path):
    """None when ``path`` can be appended to (created if missing, as the hook would), else the reason."""
    try:
        d = os.path.dirname(path)
        if d and not os.path.isdir(d):
            return 'directory %s does not exist' % d
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        os.close(fd)
    except OSError as exc:
        return str(exc)
    return None


# ---------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # Exit 1 instead of argparse's 2: for Azure Backup 2 means "warning", a usage error is an error.
        self.print_usage(sys.stderr)
        sys.stderr.write('%s: error: %s\n' % (self.prog, message))
        sys.exit(RC_ERROR)


def build_parser():
    p = _Parser(prog='irisops-hook', description=__doc__.split('\n\n', maxsplit=1)[0],
                formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog='Settings come from %s [%s] and can be overridden by the options.'
                % (DEFAULT_CONFIG, CONFIG_SECTION))
    p.add_argument('action', choices=ACTIONS, help='what to do')
    p.add_argument('script_arg', nargs='?', default=None,
                   help='optional argument passed on by the framework (VMware scriptArg); logged only')
    p.add_argument('--config', default=DEFAULT_CONFIG, help='configuration file (default %(default)s)')
    p.add_argument('--caller', dest='caller', help='name of the calling hook; names the state file')
    p.add_argument('--instances', help="comma-separated instance names, or 'all' running instances")
    p.add_argument('--run-as', dest='run_as', help='OS user for the sessions, or INSTANCE:USER,...')
    p.add_argument('--log-file', dest='log_file', help="log file ('' for none)")
    p.add_argument('--state-dir', dest='state_dir')
    p.add_argument('--lib-dir', dest='lib_dir', help='directory holding _iris.py')
    p.add_argument('--time-budget', dest='time_budget', help='seconds the whole run may take')
    p.add_argument('--session-timeout', dest='session_timeout', help='upper bound of one IRIS session, seconds')
    p.add_argument('--external-freeze-timeout', dest='external_freeze_timeout',
                   help='ExternalFreezeTimeOut in seconds (0 = IRIS default)')
    p.add_argument('--set-history', dest='set_history', action='store_const', const='true',
                   help='record the backup with ExternalSetHistory after a successful thaw')
    p.add_argument('--no-set-history', dest='set_history', action='store_const', const='false')
    p.add_argument('--warning-rc', dest='warning_rc', help='exit status for success with warnings')
    p.add_argument('--exit-codes', dest='exit_codes', choices=sorted(EXIT_CODES),
                   help='exit status of each outcome as the calling framework expects it (freeze/thaw/freezeFail)')
    p.add_argument('--deadman-timeout', dest='deadman_timeout',
                   help='seconds after which the dead-man switch thaws a freeze that got no thaw (0 = none)')
    p.add_argument('--no-syslog', dest='syslog', action='store_const', const='false')
    p.add_argument('--json', action='store_true', help='status: JSON output')
    p.add_argument('--force', action='store_true',
                   help='thaw/freezeFail: thaw even what another freezer holds (a live lease); only when that freezer '
                        'is known to be gone')
    p.add_argument('--quiet', action='store_true', help='no output on stdout/stderr (log file and syslog only)')
    p.add_argument('--version', action='version', version='%(prog)s ' + VERSION)
    return p


def exit_status(table, action, rc, outcome):
    """The exit status of ``action`` under --exit-codes ``table`` (None: ``rc`` unchanged), see EXIT_CODES.  A run
    that failed without an outcome of its own (a configuration or installation error, an unexpected exception) is
    ``not_ready`` for a freeze and ``thaw_failed`` for a thaw."""
    codes = EXIT_CODES.get(table or '')
    if not codes or action not in ('freeze', 'thaw', 'freezeFail'):
        return rc
    if outcome is None and rc == RC_ERROR:
        outcome = 'not_ready' if action == 'freeze' else 'thaw_failed'
    return codes.get(outcome, rc) if outcome else rc


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args)
    except HookError as exc:
        sys.stderr.write('irisops-hook: %s\n' % exc)
        return exit_status(args.exit_codes, args.action, RC_ERROR, None)
    quiet = args.quiet or args.action in ('status', 'check')
    log = Logger(settings['log_file'] if args.action in ('freeze', 'thaw', 'freezeFail') else None,
                 settings['caller'], use_syslog=settings['syslog'] and args.action in ('freeze', 'thaw', 'freezeFail'),
                 facility=settings['syslog_facility'], quiet=quiet)
    if log.file_error:
        sys.stderr.write('irisops-hook: cannot write the log file %s; logging to syslog/stdout only\n'
                         % log.file_error)
    hook = None
    rc, outcome = RC_ERROR, None
    try:
        iris, freeze = import_engine(settings['lib_dir'])
        hook = Hook(iris, freeze, settings, log, extra_arg=args.script_arg, force=args.force)
        if args.action == 'freeze':
            rc = hook.freeze()
        elif args.action in ('thaw', 'freezeFail'):
            rc = hook.thaw(args.action)
        elif args.action == 'status':
            rc = hook.status(as_json=args.json)
        else:
            rc = hook.check()
        outcome = hook.outcome
    except HookError as exc:
        log.error('%s: %s; exit %d' % (args.action, exc, RC_ERROR))
        if args.action in ('status', 'check'):
            sys.stderr.write('irisops-hook: %s\n' % exc)
        outcome = 'not_ready' if args.action == 'freeze' else None
    except Exception as exc:  # pragma: no cover - last line of defence: a hook must not die silently
        log.error('%s: unexpected %s: %s; exit %d' % (args.action, type(exc).__name__, exc, RC_ERROR))
        outcome = 'freeze_failed' if args.action == 'freeze' else None
    finally:
        if hook is not None:
            hook.store.unlock()
    status = exit_status(args.exit_codes, args.action, rc, outcome)
    if status != rc:
        log.info('exit status %d for %s (outcome %s)' % (status, args.exit_codes, outcome or 'failed'))
    log.close()
    return status


if __name__ == '__main__':
    sys.exit(main())
