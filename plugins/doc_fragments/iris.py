# -*- coding: utf-8 -*-
# Copyright (c) irisops.backup contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # Options shared by every module that opens an IRIS/Cache session.
    DOCUMENTATION = r"""
options:
  run_as:
    description:
      - OS user the C(iris session) / C(csession) command runs as.
      - Defaults to the instance's manager user (C(security_settings.manager_user) in C(parameters.isc)),
        falling back to the instance owner (C(security_settings.iris_user) or C(security_settings.cache_user)).
      - When the module runs as root it switches with C(runuser -u USER --); as any other user it uses
        C(sudo -n -u USER --) (non-interactive, fails instead of prompting); as that user it runs the command directly.
      - With OS authentication (the recommended setup) this OS user must also exist as an IRIS user with the
        C(%Manager) role (the C(irisops.backup.backup_user) role sets that up).
    type: str
  username:
    description:
      - IRIS user name for instances that require password login on C(%Service_Terminal).
      - Fed to the session on standard input together with O(password); it never appears on a command line,
        in C(ps) output or in the returned C(command).
    type: str
  password:
    description:
      - Password of O(username). Fed on standard input only.
    type: str
  timeout:
    description:
      - Seconds to wait for each session before its whole process group is killed (the C(stat -W) fallback of
        M(irisops.backup.iris_thaw) gets at least 30 seconds).
      - A session against an instance that stayed frozen past its ExternalFreezeTimeOut hangs at login,
        so every call is bounded.
    type: int
    default: 60
notes:
  - Instances are found with C(iris qlist) and C(ccontrol qlist) (looked up on E(PATH), C(/usr/bin) and C(/usr/local/bin));
    IRIS and Cache instances on the same host are handled alike.
  - The exit status of C(ExternalFreeze), C(ExternalThaw) and C(IsWDSuspendedExt) called from the OS is V(5) for
    success or frozen and V(3) for failure or not frozen; any other status (login refused, wrong namespace, instance down,
    timeout) is treated as an error.
requirements:
  - InterSystems IRIS or Cache on the managed host, with C(iris)/C(ccontrol) on the path.
"""

    # Selection of instances (iris_freeze, iris_thaw, iris_set_history).
    INSTANCES = r"""
options:
  instances:
    description:
      - Instance name, list of instance names, or V(all) for every running instance on the host
        (as listed by C(iris qlist) and C(ccontrol qlist)). Names are matched case-insensitively.
    type: list
    elements: str
    required: true
    aliases: [instance, name]
"""

    # The dead-man switch of the modules that freeze (iris_freeze, iris_lvm_snapshot); docs/deadman.md.
    DEADMAN = r"""
options:
  deadman_timeout:
    description:
      - Seconds after arming at which the dead-man switch thaws an instance that is still frozen by this freeze
        (armed just before the freeze, so that even an C(ExternalFreeze) that completes after the module was killed
        is covered) (C(ExternalThaw) as O(run_as), falling back to C(iris stat INSTANCE -W)), logging at priority
        C(crit) to syslog and to C(/var/log/irisops-deadman.log).
      - On hosts running systemd (as root) it is a transient timer C(irisops-deadman-<INSTANCE>.timer); elsewhere a
        detached sleeper process. State lives in C(/run/irisops/deadman/) (root) or a verified private directory of
        the user.
      - Default C(min(300, ExternalFreezeTimeOut - 60)) with O(external_freeze_timeout) (IRIS default 600), half of
        it for freeze timeouts of 120 s or less. Keep it below O(external_freeze_timeout) and above the time your
        snapshot needs; a switch that fires before the thaw makes that backup invalid.
      - V(0) disables the switch (with a warning). If a switch cannot be armed, nothing is frozen; a freeze is never
        left without its switch.
    type: int
"""

    # Standard attributes: state-changing modules with full check mode and diff support.
    ATTRIBUTES = r"""
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
"""

    # Modules of the action group "iris" (meta/runtime.yml), next to ATTRIBUTES or INFO_MODULE.
    ACTION_GROUP = r"""
attributes:
  action_group:
    description: Use C(group/irisops.backup.iris) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - irisops.backup.iris
"""

    # For info modules: never change anything.
    INFO_MODULE = r"""
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: N/A
    details:
      - This action does not modify state.
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
"""
