# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""clusterducks vDisk snapshots on the storage host: the scheduled round, the guard, the check.

Runs with the Debian 12 python3 (standard library only). The snapshot code
itself is the collection's (plugins/module_utils, linked here), so the
modules and the schedule cannot disagree.
"""
