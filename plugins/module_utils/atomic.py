# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Writing a file so that a crash leaves either the old or the new content.

The one helper for every file the collection writes on a managed host (LIO's
save file, a vDisk's metadata, a device token): a temporary file in the same
directory, created with its final mode (never briefly world-readable), written
and fsynced, renamed over the old one, then the directory fsynced so the
rename itself survives a power cut.
"""

from __future__ import annotations

import json
import os


def write_atomic(path, data, mode=0o600, gid=-1):
    """Replace ``path`` with ``data`` (bytes or str) atomically and durably.

    ``gid`` (not -1): the file's group, set before the rename like the mode,
    so no reader ever sees the new file with the wrong access.
    """
    if isinstance(data, str):
        data = data.encode('utf-8')
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, '.%s.%d.tmp' % (os.path.basename(path), os.getpid()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, mode)
    try:
        try:
            if gid != -1:
                os.fchown(fd, -1, gid)
            os.fchmod(fd, mode)  # O_CREAT's mode is filtered by the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dirfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)
    return path


def write_json_atomic(path, data, mode=0o600, indent=2):
    separators = None if indent else (',', ':')
    return write_atomic(path, json.dumps(data, indent=indent, sort_keys=True, separators=separators) + '\n', mode)
