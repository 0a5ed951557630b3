# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One writer at a time on a storage host.

Every module that changes LIO or the pool holds this lock for its whole run:
concurrent rtslib writers race (rtslib-fb #179), and a plan made before
another run's changes would be wrong after them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time

LOCK_PATH = '/run/lock/clusterducks-vdisk.lock'


class LockTimeout(Exception):
    pass


@contextlib.contextmanager
def host_lock(path=None, timeout=600):
    path = path or LOCK_PATH  # read at call time, so tests can move it
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.time() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except (IOError, OSError) as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.time() > deadline:
                    raise LockTimeout('another clusterducks.vdisk run has held %s for %d s' % (path, timeout))
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # closing releases the flock
