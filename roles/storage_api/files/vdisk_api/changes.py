# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Has anything changed in the directories the boot path reads? (inotify)

The boot path's caches (token rows, boot records) are checked against their
sources - the database's commit counter, the LIO save file's and each
vdisk.json's stamp - only after an event in one of their directories. Asking
costs one non-blocking poll; the checks it replaces cost a stat per file and
an SQLite read with two lock calls per request, which was a third of the
API's CPU per boot record in a storm (benchmarks/README.md).

Why it is exact: the kernel queues an event inside the writer's own write,
rename or unlink, before that call returns, so before the writer's commit or
save is done; a request that comes after a change finds the event. Where a
watch cannot be set (no inotify, no permission, the limit of watches) or is
lost (the directory was removed), ``changed()`` says yes on every call and
every request checks, as it did before.

The standard library has no inotify; the three calls are made through ctypes
(Debian's python3-pyinotify is unmaintained, and every binding is this).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import struct

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_MASK_ADD = 0x20000000

# In a directory: a file replaced (rename), written and closed, made or
# removed, its permissions changed; the directory itself removed or moved.
REPLACED = (IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
            | IN_DELETE_SELF | IN_MOVE_SELF)
# ... and every write: SQLite commits by writing into its open WAL file.
WRITTEN = REPLACED | IN_MODIFY
# A file: written, its permissions or links changed (a rename over it), removed.
FILE = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF

_EVENT = struct.Struct('iIII')  # struct inotify_event: wd, mask, cookie, len (then the name)

log = logging.getLogger('vdisk_api')


class ChangeWatch:
    """``changed()`` tells whether any watched file or directory changed since its last call.

    ``directories`` (every write in them counts) and ``files`` must be watched
    for ``changed()`` ever to say no. ``watch_directory()`` adds one more
    directory (files replaced or removed in it count, writes into open files
    do not) and says whether it is watched.

    A file is watched by its inode, which a rename over it leaves behind, so
    the watch of a file is dropped at its first event and set again, by name,
    at the next call.
    """

    def __init__(self, directories=(), files=()):
        self._fd = None
        self._poll = None
        self._libc = None
        self._watches = {}  # watch descriptor -> [(path, is a file)]
        self._paths = {}  # path -> watch descriptor
        self._required = tuple((d, WRITTEN | IN_ONLYDIR, False) for d in directories) + tuple(
            (f, FILE, True) for f in files)
        self._said = set()  # what was logged, so that it is logged once
        self._complete = False  # every required path watched (kept, not computed per request)
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            error = os.strerror(ctypes.get_errno()) if fd < 0 else None
        except (OSError, AttributeError) as exc:
            error = exc
        if error is not None:
            log.warning('no inotify (%s): the boot path checks its sources on every request', error)
            return
        libc.inotify_add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        libc.inotify_rm_watch.argtypes = (ctypes.c_int, ctypes.c_int)
        self._fd, self._libc = fd, libc
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    @property
    def active(self):
        """Whether inotify works and every required path is watched."""
        return self._fd is not None and all(path in self._paths for path, _mask, _file in self._required)

    def watch_directory(self, directory):
        """Watch a directory (again, after it was removed); True if it is watched."""
        return self._add(directory, REPLACED | IN_ONLYDIR, False, required=False)

    def _add(self, path, mask, is_file, required=True):
        if self._fd is None:
            return False
        if path in self._paths:
            return True
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(path), mask | IN_MASK_ADD)
        if wd < 0:
            error = ctypes.get_errno()
            # A vDisk's directory that does not exist is no news (its record is a 503).
            if (path, error) not in self._said and (required or error != errno.ENOENT):
                self._said.add((path, error))
                log.warning('cannot watch %s (%s): it is checked on every request until it can be',
                            path, os.strerror(error))
            return False
        self._watches.setdefault(wd, []).append((path, is_file))
        self._paths[path] = wd
        return True

    def _forget(self, wd, remove=False):
        self._complete = False  # set again by the next changed() if nothing required was lost
        for path, _is_file in self._watches.pop(wd, ()):
            if self._paths.get(path) == wd:
                del self._paths[path]
        if remove:
            self._libc.inotify_rm_watch(self._fd, wd)

    def changed(self):
        """True if anything changed since the last call, or if that cannot be known."""
        if self._fd is None:
            return True
        if self._poll.poll(0):
            self._drain()
            return True
        if self._complete:
            return False
        # A required path is not watched (yet, or any more): try again, and
        # say "changed", since nothing tells what happened meanwhile.
        for path, mask, is_file in self._required:
            self._add(path, mask, is_file)
        self._complete = self.active
        if self._complete and 'active' not in self._said:
            self._said.add('active')
            log.info('boot path: watching %s for changes (inotify)',
                     ', '.join(path for path, _mask, _file in self._required))
        return True

    def _drain(self):
        while True:
            try:
                data = os.read(self._fd, 65536)
            except BlockingIOError:
                return
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size + length
                if mask & IN_Q_OVERFLOW:
                    # Events were lost (one of them may have been a watch's
                    # end): start again, every watch set anew.
                    for lost in list(self._watches):
                        self._forget(lost, remove=True)
                    continue
                entries = self._watches.get(wd)
                if entries is None:
                    continue  # a watch dropped before its last events were read
                if any(is_file for _path, is_file in entries):
                    self._forget(wd, remove=not mask & IN_IGNORED)
                elif mask & (IN_IGNORED | IN_MOVE_SELF):
                    # Removed or moved away: a directory made again by that
                    # name gets a new watch when next asked for.
                    self._forget(wd, remove=not mask & IN_IGNORED)

    def close(self):
        if getattr(self, '_fd', None) is not None:
            os.close(self._fd)
            self._fd = None

    __del__ = close  # an inotify instance is a scarce thing (128 per user by default)
