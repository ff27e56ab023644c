# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A fake *runner* for unit tests of _iris.py and the modules.

It stands in for the command line of a host with IRIS/Cache instances: ``iris qlist``, ``ccontrol qlist``,
``iris session``/``csession`` running the Backup.General expressions _iris.py builds, and ``iris stat -W``.
It keeps per-instance state (frozen or not, journal files) and records every call, so tests can check what was
run, in which order, with which stdin.  Failure modes are switched per instance.  The end-to-end behaviour
against the IRIS emulator is covered by the molecule scenario extensions/molecule/iris_modules.
"""

from __future__ import absolute_import, division, print_function

import os
import re
import threading
import time

__metaclass__ = type

FREEZE_LOG = (
    "{ts}: Backup.General.ExternalFreeze: Suspending system\n"
    "{ts}: Backup.General.ExternalFreeze: Warning, {inst_dir}/mgr/irislocaldata/ is not being journalled\n"
    "{ts}: Backup.General.ExternalFreeze: Warning, 1 databases are not journalled, data will be lost in them "
    "if system crashes while suspended\n"
    "\n"
    "Journal file switched to:\n"
    "{jrn}\n"
    "{ts}: Backup.General.ExternalFreeze: Start a journal restore for this backup with journal file: {jrn}\n"
    "\n"
    "Journal marker set at\n"
    "offset {offset} of {jrn}\n"
    "{ts}: Backup.General.ExternalFreeze: System suspended\n"
)
THAW_LOG = (
    "{ts}: Backup.General.ExternalThaw: Resuming system\n"
    "{ts}: Backup.General.ExternalThaw: System resumed\n"
)

_STR_ARG = r'"((?:[^"]|"")*)"'


class FakeInstance(object):
    def __init__(self, name, flavour='iris', install_dir=None, status='running, since Mon Nov 23 10:00:00 2026',
                 manager_user='root', owner_user='irisusr', version=None, mirror=('', ''), data_dir=''):
        self.name = name
        self.flavour = flavour
        self.install_dir = install_dir or ('/usr/irissys' if flavour == 'iris' else '/usr/cachesys/')
        self.status = status
        self.manager_user = manager_user
        self.owner_user = owner_user
        self.version = version or ('2024.1.0.267.2' if flavour == 'iris' else '2018.1.5.659.0')
        self.mirror = mirror
        self.data_dir = data_dir
        self.frozen = False
        self.jrn_seq = 1
        self.history = []
        self.purge_files = []          # files ExternalSetHistory deletes (journal purge)
        # failure switches
        self.freeze_rc = None          # force this exit status for ExternalFreeze
        self.freeze_suspends_anyway = False   # with freeze_rc: the write daemon is suspended nevertheless
        self.freeze_hang = False       # ExternalFreeze never returns (runner timeout)
        self.thaw_rc = None            # force this exit status for ExternalThaw (state unchanged)
        self.thaw_hang = False
        self.login_refused = False     # every session: Access Denied, rc 1
        self.require_password = None   # (username, password) expected on stdin
        self.freeze_delay = 0.0

    @property
    def dir(self):
        return self.install_dir.rstrip('/')

    def qlist_line(self):
        cpf = 'iris.cpf' if self.flavour == 'iris' else 'cache.cpf'
        product = 'IRIS' if self.flavour == 'iris' else ''
        return '^'.join([self.name, self.install_dir, self.version, self.status, cpf, '1972', '52773', '53773',
                         'ok', product, self.mirror[0], self.mirror[1], self.data_dir])

    def parameters_isc(self):
        key = 'iris' if self.flavour == 'iris' else 'cache'
        return ('security_settings.%s_user: %s\nsecurity_settings.%s_group: %s\n'
                'security_settings.manager_user: %s\nsecurity_settings.manager_group: %s\n'
                % (key, self.owner_user, key, self.owner_user, self.manager_user, self.manager_user))

    def cpf(self):
        d = self.dir
        return ('[ConfigFile]\nVersion=%s\n\n[Databases]\nIRISSYS=%s/mgr/\nUSER=%s/mgr/user/\n'
                'IRISLOCALDATA=%s/mgr/irislocaldata/\n\n[Journal]\nAlternateDirectory=%s/mgr/journal2/\n'
                'BackupsBeforePurge=2\nCurrentDirectory=%s/mgr/journal/\nDaysBeforePurge=2\n'
                % (self.version, d, d, d, d, d))

    def next_journal(self):
        self.jrn_seq += 1
        return '%s/mgr/journal/20261123.%03d' % (self.dir, self.jrn_seq)


class FakeHost(object):
    """Callable runner: ``host(argv, data=None, timeout=None) -> (rc, stdout, stderr)``."""

    def __init__(self, instances, user='root', has_iris=True, has_ccontrol=True):
        self.instances = dict((i.name.upper(), i) for i in instances)
        self.user = user
        self.calls = []
        self.lock = threading.Lock()
        self.bins = {}
        if has_iris:
            self.bins['iris'] = '/usr/bin/iris'
        if has_ccontrol:
            self.bins['ccontrol'] = '/usr/bin/ccontrol'
            self.bins['csession'] = '/usr/bin/csession'

    # helpers to plug into _iris.discover_instances
    def which(self, name):
        return self.bins.get(name)

    def read_file(self, path):
        for inst in self.instances.values():
            if path == inst.dir + '/parameters.isc':
                return inst.parameters_isc()
            if path in (inst.dir + '/iris.cpf', inst.dir + '/cache.cpf'):
                return inst.cpf()
        raise IOError(2, 'No such file or directory', path)

    def __call__(self, argv, data=None, timeout=None):
        argv = list(argv)
        with self.lock:
            self.calls.append({'argv': argv, 'data': data, 'timeout': timeout})
        run_as = self.user
        if argv[0].endswith('runuser'):
            assert self.user == 'root', 'runuser used by a non-root caller'
            run_as = argv[2]
            argv = argv[4:]
        elif argv[0].endswith('sudo'):
            assert argv[1] == '-n'
            run_as = argv[3]
            argv = argv[5:]
        prog = argv[0].rsplit('/', 1)[-1]
        if prog in ('systemd-run', 'systemctl'):
            # dead-man switch timers: recorded only; systemd_run_rc makes arming fail
            if prog == 'systemd-run' and getattr(self, 'systemd_run_rc', 0):
                return self.systemd_run_rc, '', 'Failed to start transient timer unit: Access denied\n'
            return 0, '', ''
        if prog in ('iris', 'ccontrol') and argv[1:2] == ['qlist']:
            flavour = 'iris' if prog == 'iris' else 'cache'
            lines = [i.qlist_line() for i in self.instances.values() if i.flavour == flavour]
            return 0, '\n'.join(lines) + '\n', ''
        if prog == 'iris' and argv[1:2] == ['session']:
            return self._session(argv[2], argv[3:], data, timeout, run_as, 'iris')
        if prog == 'csession':
            return self._session(argv[1], argv[2:], data, timeout, run_as, 'cache')
        if prog in ('iris', 'ccontrol') and argv[1:2] == ['stat']:
            inst = self.instances.get(argv[2].upper())
            if inst is None:
                return 1, '', 'no such instance'
            if '-W' in argv:
                inst.frozen = False
                return 0, 'Write daemon resumed\n', ''
            return 0, 'WDSUSPD %d\n' % int(inst.frozen), ''
        return 127, '', '%s: command not found' % argv[0]

    def _session(self, name, rest, data, timeout, run_as, flavour):
        inst = self.instances.get(name.upper())
        if inst is None or inst.flavour != flavour:
            return 1, '', 'Instance %s not found\n' % name
        assert rest[:2] == ['-U', '%SYS'], rest
        expr = rest[2]
        if not inst.status.startswith('running'):
            return 1, '<IRIS Startup Error>: instance %s is not running\n' % inst.name, ''
        if inst.login_refused:
            return 1, 'Access Denied\n', ''
        if inst.require_password is not None:
            expected = '%s\n%s\n' % inst.require_password
            if data != expected:
                return 1, 'Username: \nPassword: \nAccess Denied\n', ''
        ts = time.strftime('%m/%d/%Y %H:%M:%S')
        if 'IsWDSuspendedExt()' in expr:
            return (5 if inst.frozen else 3), '', ''
        if 'ExternalFreeze(' in expr:
            if inst.freeze_delay:
                time.sleep(inst.freeze_delay)
            if inst.freeze_hang:
                inst.frozen = True
                return None, '', ''
            if inst.freeze_rc is not None:
                if inst.freeze_suspends_anyway:
                    inst.frozen = True
                return inst.freeze_rc, '', ''
            if inst.frozen:
                return 3, '', ''
            m = re.search(r'ExternalFreeze\(' + _STR_ARG, expr)
            jrn = inst.next_journal()
            text = FREEZE_LOG.format(ts=ts, inst_dir=inst.dir, jrn=jrn, offset=262272)
            if m:
                with open(m.group(1).replace('""', '"'), 'a') as f:
                    f.write(text)
            inst.frozen = True
            return 5, '', ''
        if 'ExternalThaw(' in expr:
            if inst.thaw_hang:
                return None, '', ''
            if inst.thaw_rc is not None:
                return inst.thaw_rc, '', ''
            m = re.search(r'ExternalThaw\(' + _STR_ARG, expr)
            if m:
                with open(m.group(1).replace('""', '"'), 'a') as f:
                    f.write(THAW_LOG.format(ts=ts))
            inst.frozen = False
            return 5, '', ''
        if 'ExternalSetHistory(' in expr:
            m = re.search(r'ExternalSetHistory\(' + _STR_ARG + r'(?:,' + _STR_ARG + r')?\)', expr)
            inst.history.append(m.group(2).replace('""', '"') if m and m.group(2) is not None else '')
            for path in inst.purge_files:
                if os.path.exists(path):
                    os.unlink(path)
            return 5, '', ''
        return 1, '<SYNTAX>\n', ''

    def session_calls(self, name=None, method=None):
        out = []
        for c in self.calls:
            expr = c['argv'][-1]
            if '-U' not in c['argv']:
                continue
            if name is not None and name not in c['argv']:
                continue
            if method is not None and method not in expr:
                continue
            out.append(c)
        return out
