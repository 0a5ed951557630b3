# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""clusterducks vDisk storage API: assignments and device boot discovery.

Runs on the storage host with the Debian 12 python3 (standard library only).
"""

from __future__ import annotations

__version__ = '0.1.0'
API_VERSION = 1
