# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Device-mapper calls through libdevmapper (the library dmsetup and LVM use), in-process.

A snapshot round suspends, messages and resumes hundreds of devices: one
``dmsetup`` process per call cost 130 ms each in the TCG lab, the same three
calls in-process 14 ms for all three. Standard library only (ctypes), so the
snapshot round on the storage host uses this file as it is.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import struct
import threading

LIBRARY = 'libdevmapper.so.1.02.1'
# enum in libdevmapper.h
DM_DEVICE_CREATE = 0
DM_DEVICE_RELOAD = 1
DM_DEVICE_REMOVE = 2
DM_DEVICE_SUSPEND = 4
DM_DEVICE_INFO = 6
DM_DEVICE_STATUS = 10
DM_DEVICE_TABLE = 11
DM_DEVICE_TARGET_MSG = 17


BLKFLSBUF = 0x1261  # linux/fs.h: _IO(0x12, 97)

# linux/dm-ioctl.h, for the one call made without libdevmapper (``resume``)
CONTROL = '/dev/mapper/control'
DM_IOCTL_SIZE = 312  # sizeof(struct dm_ioctl)
DM_NAME_OFFSET = 48  # its name field, DM_NAME_LEN bytes
DM_NAME_LEN = 128
DM_DEV_SUSPEND = (3 << 30) | (DM_IOCTL_SIZE << 16) | (0xfd << 8) | 6  # _IOWR(DM_IOCTL, DM_DEV_SUSPEND_CMD, ...)


class DeviceMapperError(OSError):
    """A device-mapper call failed; ``errno`` is the kernel's answer."""


def dm_name(vg, lv):
    """The device-mapper name LVM gives VG/LV: each '-' inside a name doubled, joined by '-'."""
    return '%s-%s' % (vg.replace('-', '--'), lv.replace('-', '--'))


class DeviceMapper(object):
    """The device-mapper calls the snapshots need."""

    def __init__(self, library=LIBRARY):
        lib = ctypes.CDLL(library, use_errno=True)
        p, s, u64 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint64
        for name, restype, argtypes in (
                ('dm_task_create', p, [ctypes.c_int]),
                ('dm_task_set_name', ctypes.c_int, [p, s]),
                ('dm_task_set_message', ctypes.c_int, [p, s]),
                ('dm_task_set_sector', ctypes.c_int, [p, u64]),
                ('dm_task_set_ro', ctypes.c_int, [p]),
                ('dm_task_add_target', ctypes.c_int, [p, u64, u64, s, s]),
                ('dm_task_run', ctypes.c_int, [p]),
                ('dm_task_destroy', None, [p]),
                ('dm_lib_release', None, []),
                ('dm_udev_set_sync_support', None, [ctypes.c_int]),
                ('dm_task_get_message_response', s, [p]),
                ('dm_task_get_info', ctypes.c_int, [p, p]),
                ('dm_get_next_target', p, [p, p, ctypes.POINTER(u64), ctypes.POINTER(u64),
                                           ctypes.POINTER(s), ctypes.POINTER(s)])):
            func = getattr(lib, name)
            func.restype, func.argtypes = restype, argtypes
        self.lib = lib
        # Udev sync off: nothing waits for udev. With it on, the caller waits
        # for the dmsetup processes udev runs for each event: 1.5 s per 20
        # vDisks in the TCG lab, against 0.1 s for the ioctls; and a resume
        # without a cookie then has LVM's rules turned off, and udev drops
        # /dev/VG/LV (seen in the lab). Resumes bypass the library (resume).
        lib.dm_udev_set_sync_support(0)
        self._control_fd = None
        self._control_lock = threading.Lock()

    def _run(self, kind, name, what, setup=None, read=None):
        task = self.lib.dm_task_create(kind)
        if not task:
            raise DeviceMapperError(errno.ENOMEM, 'device-mapper: cannot create a task')
        try:
            self.lib.dm_task_set_name(task, name.encode())
            if setup is not None:
                setup(task)
            ctypes.set_errno(0)
            if not self.lib.dm_task_run(task):
                code = ctypes.get_errno() or errno.EIO
                raise DeviceMapperError(code, '%s on %s: %s' % (what, name, os.strerror(code)))
            return read(task) if read is not None else None
        finally:
            self.lib.dm_task_destroy(task)

    def suspend(self, name):
        """Suspend ``name``: returns once its in-flight I/O is complete; new I/O waits for resume."""
        self._run(DM_DEVICE_SUSPEND, name, 'suspend')

    def resume(self, name):
        """Resume ``name``: held and new I/O goes on (to its next table, if one was loaded).

        The ioctl itself, not libdevmapper's: with udev sync off libdevmapper
        still marks a resume's change event with a cookie (DM_COOKIE, the
        primary-source flag), and for each such event the device-mapper and
        LVM rules run three dmsetup processes (udevflags, splitname,
        udevcomplete). Without one, udev takes the event as it takes
        ``udevadm trigger``'s: the device's flags and links (/dev/VG/LV) come
        from its database, and one process runs (none with the storage_host
        role's rules). 200 resumes in the TCG lab, udev's CPU: 36.9-37.1 s with
        the cookie, 17.9-18.8 s without; 1.1-1.5 s with the rules (docs/snapshots.md).
        """
        encoded = name.encode()
        if not encoded or len(encoded) >= DM_NAME_LEN:
            raise DeviceMapperError(errno.EINVAL, 'resume on %s: not a device-mapper name' % name)
        buf = bytearray(DM_IOCTL_SIZE)
        # version 4.0.0, data size and start; flags 0 (not DM_SUSPEND_FLAG: resume); event_nr 0 (no cookie)
        struct.pack_into('=5I', buf, 0, 4, 0, 0, DM_IOCTL_SIZE, DM_IOCTL_SIZE)
        buf[DM_NAME_OFFSET:DM_NAME_OFFSET + len(encoded)] = encoded
        try:
            fcntl.ioctl(self._control(), DM_DEV_SUSPEND, buf)
        except OSError as exc:
            raise DeviceMapperError(exc.errno, 'resume on %s: %s' % (name, exc.strerror))

    def _control(self):
        with self._control_lock:  # the round's workers resume at once
            if self._control_fd is None:
                try:
                    self._control_fd = os.open(CONTROL, os.O_RDWR | os.O_CLOEXEC)
                except OSError as exc:
                    raise DeviceMapperError(exc.errno, 'device-mapper: %s: %s' % (CONTROL, exc.strerror))
            return self._control_fd

    def message(self, name, text):
        def setup(task):
            self.lib.dm_task_set_sector(task, 0)
            self.lib.dm_task_set_message(task, text.encode())
        return self._run(DM_DEVICE_TARGET_MSG, name, 'message %r' % text, setup,
                         lambda task: (self.lib.dm_task_get_message_response(task) or b'').decode())

    def _first_target(self, kind, name, what):
        def read(task):
            start, length = ctypes.c_uint64(), ctypes.c_uint64()
            ttype, params = ctypes.c_char_p(), ctypes.c_char_p()
            self.lib.dm_get_next_target(task, None, ctypes.byref(start), ctypes.byref(length),
                                        ctypes.byref(ttype), ctypes.byref(params))
            return ((ttype.value or b'').decode(), (params.value or b'').decode(), length.value)
        return self._run(kind, name, what, read=read)

    def status(self, name):
        """(target type, status line, length in sectors) of the device's first target."""
        return self._first_target(DM_DEVICE_STATUS, name, 'status')

    def table(self, name):
        return self._first_target(DM_DEVICE_TABLE, name, 'table')

    def info(self, name):
        """{'exists', 'suspended', 'open_count', 'major', 'minor'} (struct dm_info: these ints, in this order)."""
        def read(task):
            buf = (ctypes.c_int32 * 16)()
            if not self.lib.dm_task_get_info(task, ctypes.cast(buf, ctypes.c_void_p)):
                raise DeviceMapperError(errno.EIO, 'device-mapper: no info for %s' % name)
            # exists, suspended, live_table, inactive_table, open_count, event_nr, major, minor
            return {'exists': bool(buf[0]), 'suspended': bool(buf[1]), 'open_count': buf[4],
                    'major': buf[6], 'minor': buf[7]}
        return self._run(DM_DEVICE_INFO, name, 'info', read=read)

    def exists(self, name):
        # libdevmapper answers INFO for a missing device with success and exists = 0.
        return self.info(name)['exists']

    def create(self, name, sectors, target, params, read_only=False):
        def setup(task):
            if read_only:
                self.lib.dm_task_set_ro(task)
            self.lib.dm_task_add_target(task, 0, sectors, target.encode(), params.encode())
        self._run(DM_DEVICE_CREATE, name, 'create', setup)
        self.lib.dm_lib_release()  # makes /dev/mapper/NAME now (udev is not waited for)

    def reload(self, name, sectors, target, params):
        """Load ``name``'s next table; the next resume makes it live (I/O held by a suspend then goes to it)."""
        def setup(task):
            self.lib.dm_task_add_target(task, 0, sectors, target.encode(), params.encode())
        self._run(DM_DEVICE_RELOAD, name, 'reload', setup)

    def remove(self, name):
        self._run(DM_DEVICE_REMOVE, name, 'remove')
        self.lib.dm_lib_release()

    def drop_cache(self, name):
        """Write back and drop this host's page cache of device ``name`` (BLKFLSBUF, as blockdev --flushbufs)."""
        try:
            fd = os.open('/dev/mapper/' + name, os.O_RDONLY | os.O_CLOEXEC)
            try:
                fcntl.ioctl(fd, BLKFLSBUF, 0)
            finally:
                os.close(fd)
        except OSError as exc:
            raise DeviceMapperError(exc.errno, 'dropping the cached blocks of %s: %s' % (name, exc.strerror))


# --- what the kernel counted of a device's writes ---------------------------

BOOT_ID = '/proc/sys/kernel/random/boot_id'
SYS_DEV_BLOCK = '/sys/dev/block'
PROBE_BYTES = 4096


def _read(path):
    # os.read, not open(): a round reads four of these per vDisk (a third of its time in the TCG lab went to
    # building Python file objects).
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096).decode('ascii', 'replace').strip()
    finally:
        os.close(fd)


_BOOT = []  # the boot id, read once per process


def _probe(path):
    """Read one block past the page cache: the read is counted if the device's I/O is."""
    fd = os.open(path, os.O_RDONLY | getattr(os, 'O_DIRECT', 0))
    try:
        buf = mmap.mmap(-1, PROBE_BYTES)  # page-aligned, as O_DIRECT wants
        try:
            os.readv(fd, [buf])
        finally:
            buf.close()
    finally:
        os.close(fd)


# Whether this kernel counts a device's I/O with its queue/iostats flag off:
# one probe per process tells, for every device of the same driver.
_COUNTS_WITHOUT_FLAG = {}


def write_marker(major, minor, node, sys_dev_block=SYS_DEV_BLOCK, boot_id=BOOT_ID):
    """(marker, writes in flight) of block device ``major:minor`` (device node ``node``), or None.

    The marker names the boot, the device (its disk sequence number: a device
    made again is a new one, Linux 5.15+) and the kernel's counts of the
    writes and discards started or done on it, with their sectors. Two equal
    markers with no write in flight at the second mean that no write reached
    the device in between. None when that cannot be told: no disk sequence,
    or the device's I/O is not counted (``queue/iostats`` 0 and a read of it
    not counted either; Linux 6.1's bio-based device-mapper counts whatever
    that flag says, later kernels follow it). Whether the flag is followed is
    the kernel's (its driver's), not the device's: the first device found
    with the flag off is probed, once per process, for all (where the flag is
    followed, a device with it off counts nothing, so a probe can not be
    counted by mistake).
    """
    base = '%s/%d:%d/' % (sys_dev_block, major, minor)
    try:
        if not _BOOT or _BOOT[0][0] != boot_id:
            _BOOT[:] = [(boot_id, _read(boot_id))]
        boot, seq = _BOOT[0][1], _read(base + 'diskseq')
        counted = _read(base + 'queue/iostats') == '1'
        # In flight first, then the counts (the order of the kernel's own stat
        # file): a write done before the first read is counted (at its start on
        # 6.1, at its end on later kernels), one still running is in flight.
        inflight = _read(base + 'inflight').split()
        stat = _read(base + 'stat').split()
        if not counted:
            if major not in _COUNTS_WITHOUT_FLAG:
                _probe(node)
                _COUNTS_WITHOUT_FLAG[major] = int(_read(base + 'stat').split()[0]) > int(stat[0])
            counted = _COUNTS_WITHOUT_FLAG[major]
    except (OSError, ValueError, IndexError):
        return None
    if not counted or len(inflight) != 2 or len(stat) < 14 or not seq:
        return None
    # stat fields: 4 writes, 6 sectors written, 11 discards, 13 sectors discarded
    return ' '.join([boot, seq, stat[4], stat[6], stat[11], stat[13]]), int(inflight[1])
