# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

import json
import os

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.irisops.backup.plugins.module_utils import _freeze
from ansible_collections.irisops.backup.plugins.module_utils import _iris
from ansible_collections.irisops.backup.tests.unit.plugins.iris_fakes import FakeHost

__metaclass__ = type


@pytest.fixture(autouse=True)
def deadman_sandbox(monkeypatch, tmp_path):
    """Keep the freeze engine's state (lock, switches, run records) of module tests in tmp_path and the switches on
    the (fake) systemd path: no real timers or sleepers on the test machine.  Returns the switches' directory."""
    base = str(tmp_path / 'state')
    monkeypatch.setattr(_freeze, 'state_dir', lambda create=True: _freeze.secure_dir(base) if create else base)
    monkeypatch.setattr(_freeze, 'use_systemd', lambda *a, **k: True)
    return os.path.join(base, _freeze.DEADMAN_SUBDIR)


@pytest.fixture
def fake_host(monkeypatch):
    """Install a FakeHost as the host's command line for _iris (runner, PATH look-ups, file reads)."""
    holder = {}

    def make(*instances, **kwargs):
        host = FakeHost(list(instances), **kwargs)
        monkeypatch.setattr(_iris, 'subprocess_runner', host)
        monkeypatch.setattr(_iris, 'find_executable', lambda name, which=None, extra_dirs=None: host.which(name))
        monkeypatch.setattr(_iris, '_read_text', host.read_file)
        holder['host'] = host
        return host
    return make


@pytest.fixture
def run_module(capsys):
    """Run a module's main() with args; return (failed, result dict)."""
    def run(module, args, check_mode=False, diff=False):
        args = dict(args)
        if check_mode:
            args['_ansible_check_mode'] = True
        if diff:
            args['_ansible_diff'] = True
        with patch_module_args(args):
            with pytest.raises(SystemExit) as exc:
                module.main()
        out = capsys.readouterr().out
        result = json.loads(out.strip().splitlines()[-1])
        assert (exc.value.code != 0) == bool(result.get('failed')), result
        return bool(result.get('failed')), result
    return run
