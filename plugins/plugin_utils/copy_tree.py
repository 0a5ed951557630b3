# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""copy_tree's controller side: the source tree as the module's ``files`` option (standard library only)."""

from __future__ import annotations

import base64
import fnmatch
import os
import stat


class TreeSourceError(Exception):
    pass


DEFAULT_EXCLUDE = ['__pycache__', '*.pyc']


def collect_files(src, exclude):
    """The files under src (links followed), sorted, as the module's ``files`` option.

    A name matching an exclude pattern is left out, and so is everything under
    a directory whose name matches.
    """
    def excluded(name):
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude)

    files = []
    for root, dirs, names in os.walk(src, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not excluded(d))
        for name in sorted(names):
            if excluded(name):
                continue
            path = os.path.join(root, name)
            st = os.stat(path)  # follows links: their targets' content and mode
            if not stat.S_ISREG(st.st_mode):
                raise TreeSourceError("%s is not a regular file (a broken link, a socket or a device)" % path)
            with open(path, 'rb') as f:
                content = f.read()
            files.append({
                'path': os.path.relpath(path, src).replace(os.sep, '/'),
                'content': base64.b64encode(content).decode('ascii'),
                'executable': bool(st.st_mode & 0o111),
            })
    files.sort(key=lambda f: f['path'])
    return files
