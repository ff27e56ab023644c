# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make ``ansible_collections.irisops.backup`` importable for a plain ``pytest tests/unit``.

The unit tests import the collection by its full name, as Ansible and ansible-test do.  Three ways to run them:

* ``ansible-test units`` (in the copy made by tests/setup.sh): ansible-test installs Ansible's collection loader
  before this file is read; nothing is done here.
* ``pytest tests/unit`` inside a tree that already has the ``ansible_collections/<namespace>/<name>`` layout (the
  ansible-test copy, as tests/run-all.sh runs it, or a clone made into such a path): the directory above
  ``ansible_collections`` goes on ``sys.path`` if it is not there yet.
* ``pytest tests/unit`` from the root of a plain clone: a symlink ``.cache/pytest/ansible_collections/<namespace>/
  <name>`` -> the repository root is made (once; ``.cache/`` is git-ignored) and ``.cache/pytest`` goes on
  ``sys.path``.

Nothing from ``ansible_collections`` is imported here, so that no other import machinery is bypassed.

The module tests feed arguments with ``ansible.module_utils.testing.patch_module_args``, which ansible-core has
only since 2.19; for older ansible-core (tests/compat/run.sh runs the unit tests under every version the
collection claims) an equivalent is registered under that name, setting ``basic._ANSIBLE_ARGS`` as unit tests did
before 2.19.
"""

from __future__ import absolute_import, division, print_function

import contextlib
import importlib.util
import json
import os
import re
import sys
import types

__metaclass__ = type

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))


def _galaxy_name(repo):
    """(namespace, name) from galaxy.yml; irisops.backup if it cannot be read."""
    found = {}
    try:
        with open(os.path.join(repo, 'galaxy.yml')) as f:
            for line in f:
                m = re.match(r'^(namespace|name):\s*([A-Za-z0-9_]+)\s*$', line)
                if m:
                    found[m.group(1)] = m.group(2)
    except (IOError, OSError):
        pass
    return found.get('namespace', 'irisops'), found.get('name', 'backup')


def _collections_root(repo):
    """The directory that must be on sys.path so that ansible_collections.<ns>.<name> is this repository."""
    namespace, name = _galaxy_name(repo)
    parts = os.path.realpath(repo).split(os.sep)
    if len(parts) > 3 and parts[-3:] == ['ansible_collections', namespace, name]:
        return os.sep.join(parts[:-3]) or os.sep
    root = os.path.join(repo, '.cache', 'pytest')
    link = os.path.join(root, 'ansible_collections', namespace, name)
    if not (os.path.islink(link) and os.path.realpath(link) == os.path.realpath(repo)):
        if not os.path.isdir(os.path.dirname(link)):
            os.makedirs(os.path.dirname(link))
        if os.path.lexists(link):
            os.remove(link)
        # relative: .cache/pytest/ansible_collections/<ns>/<name> -> ../../../.. is the repository root
        os.symlink(os.path.join(*(['..'] * 4)), link)
    return root


def _setup():
    # ansible-test units sets ANSIBLE_CONTROLLER_MIN_PYTHON_VERSION for its pytest plugins and has already
    # installed the collection loader
    if os.environ.get('ANSIBLE_CONTROLLER_MIN_PYTHON_VERSION'):
        return
    root = _collections_root(REPO)
    if not any(os.path.realpath(p or os.curdir) == os.path.realpath(root) for p in sys.path):
        sys.path.insert(0, root)


@contextlib.contextmanager
def _patch_module_args(args=None):
    """ansible.module_utils.testing.patch_module_args of ansible-core 2.19, for ansible-core 2.16 to 2.18."""
    from ansible.module_utils import basic
    from ansible.module_utils.common.text.converters import to_bytes

    if not isinstance(args, (dict, type(None))):
        raise TypeError('The `args` arg must be a dict or None.')
    saved = basic._ANSIBLE_ARGS
    basic._ANSIBLE_ARGS = to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': args or {}}))
    try:
        yield
    finally:
        basic._ANSIBLE_ARGS = saved


def _testing_shim():
    try:
        missing = importlib.util.find_spec('ansible.module_utils.testing') is None
    except ImportError:  # no ansible at all: the tests say so themselves
        return
    if missing:
        import ansible.module_utils

        shim = types.ModuleType('ansible.module_utils.testing')
        shim.__doc__ = 'tests/unit/conftest.py: patch_module_args for ansible-core before 2.19'
        shim.patch_module_args = _patch_module_args
        sys.modules[shim.__name__] = shim
        ansible.module_utils.testing = shim


_setup()
_testing_shim()
