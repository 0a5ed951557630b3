# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The resume ioctl devmapper builds itself (the lab's snapshot rounds make the real ones)."""

from __future__ import annotations

import errno
import struct
import threading

import pytest

from ansible_collections.clusterducks.vdisk.plugins.module_utils import devmapper


def bare(fd=7):
    """A DeviceMapper without libdevmapper (resume does not use it), its control device already open."""
    dm = object.__new__(devmapper.DeviceMapper)
    dm._control_fd = fd
    dm._control_lock = threading.Lock()
    return dm


def test_resume_is_dm_dev_suspend_without_suspend_flag_or_cookie(monkeypatch):
    calls = []
    monkeypatch.setattr(devmapper.fcntl, 'ioctl', lambda fd, request, buf: calls.append((fd, request, bytes(buf))))
    bare().resume('vdisks-vdisk--node01')
    [(fd, request, buf)] = calls
    assert fd == 7
    # _IOWR(0xfd, DM_DEV_SUSPEND_CMD = 6, struct dm_ioctl of 312 bytes)
    assert request == 0xC138FD06
    assert len(buf) == 312
    assert struct.unpack_from('=5I', buf, 0) == (4, 0, 0, 312, 312)  # version 4.0.0, data size and start
    flags, event_nr = struct.unpack_from('=2I', buf, 28)
    assert flags == 0  # not DM_SUSPEND_FLAG (1 << 1): a resume
    assert event_nr == 0  # no udev cookie: no DM_COOKIE in the change event
    assert buf[48:48 + 128].rstrip(b'\0') == b'vdisks-vdisk--node01'
    assert buf[48 + len('vdisks-vdisk--node01')] == 0


@pytest.mark.parametrize('name', ['', 'x' * 128])
def test_resume_refuses_a_name_the_kernel_cannot_take(monkeypatch, name):
    monkeypatch.setattr(devmapper.fcntl, 'ioctl', lambda *a: pytest.fail('no ioctl for a bad name'))
    with pytest.raises(devmapper.DeviceMapperError) as err:
        bare().resume(name)
    assert err.value.errno == errno.EINVAL


def test_resume_reports_the_kernels_error(monkeypatch):
    def ioctl(fd, request, buf):
        raise OSError(errno.ENXIO, 'No such device or address')
    monkeypatch.setattr(devmapper.fcntl, 'ioctl', ioctl)
    with pytest.raises(devmapper.DeviceMapperError) as err:
        bare().resume('gone')
    assert err.value.errno == errno.ENXIO
    assert 'resume on gone' in str(err.value)


def test_the_control_device_is_opened_once_for_all_threads(monkeypatch):
    opened = []

    def fake_open(path, flags):
        opened.append(path)
        return 42
    monkeypatch.setattr(devmapper.os, 'open', fake_open)
    seen = []
    monkeypatch.setattr(devmapper.fcntl, 'ioctl', lambda fd, request, buf: seen.append(fd))
    dm = bare(fd=None)
    threads = [threading.Thread(target=dm.resume, args=('d%d' % i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert opened == [devmapper.CONTROL]
    assert seen == [42] * 8
