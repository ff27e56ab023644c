# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Stand-alone scripts of the repository (a role's files/, tests/faults/) loaded as modules for unit tests.

They are not Python packages and run on their own on the host or the control node, so the tests load them from
their path instead of importing them.
"""

from __future__ import absolute_import, division, print_function

import importlib.util
import os

__metaclass__ = type

#: the repository (collection) root
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))


def script_path(relative):
    """Absolute path of ``relative`` (slash-separated, from the repository root)."""
    return os.path.join(REPO, *relative.split('/'))


def load_script(module_name, relative):
    """The script at ``relative`` (from the repository root), executed as a module named ``module_name``."""
    spec = importlib.util.spec_from_file_location(module_name, script_path(relative))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
