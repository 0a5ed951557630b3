# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:

    # Standard documentation: descriptions of the common attributes.
    # Use together with one of the fragments below, which set the support levels.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in C(check_mode) and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in C(check_mode)), when in diff mode.
"""

    # The description of the idempotent attribute. A module that extends this
    # fragment sets the support level itself (attributes: idempotent: support:
    # full / partial with details), or also extends IDEMPOTENT_NOT_MODIFY_STATE.
    # Not part of DOCUMENTATION above: every module extending that one would then
    # need a support level for it (ansible-test sanity requires one per attribute).
    IDEMPOTENT = r"""
options: {}
attributes:
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
      - This assumes that the system controlled/queried by the module has not changed in a relevant way.
"""

    # Should be used together with the IDEMPOTENT fragment.
    IDEMPOTENT_NOT_MODIFY_STATE = r"""
options: {}
attributes:
  idempotent:
    support: full
    details:
      - This action does not modify state.
"""

    # Modules that only run on Linux hosts (LIO, configfs, dracut).
    PLATFORM = r"""
options: {}
attributes:
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: linux
"""

    # The storage API modules (meta/runtime.yml action_groups: api).
    ACTIONGROUP_API = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/clusterducks.vdisk.api) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - clusterducks.vdisk.api
"""

    # Should be used together with the standard fragment.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
"""
