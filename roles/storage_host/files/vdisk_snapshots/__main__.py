# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import sys

from vdisk_snapshots.cli import main

sys.exit(main())
