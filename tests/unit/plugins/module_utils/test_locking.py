# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""locking.host_lock: one writer per storage host."""

from __future__ import annotations

import os
import stat
import threading
import time

import pytest

from ansible_collections.clusterducks.vdisk.plugins.module_utils import locking


@pytest.fixture
def lock_path(tmp_path, monkeypatch):
    path = str(tmp_path / 'run' / 'lock' / 'clusterducks-vdisk.lock')
    monkeypatch.setattr(locking, 'LOCK_PATH', path)
    return path


def test_the_default_path_is_created_private(lock_path):
    with locking.host_lock():
        assert stat.S_IMODE(os.stat(lock_path).st_mode) == 0o600


def test_a_second_locker_times_out(lock_path):
    with locking.host_lock():
        start = time.time()
        with pytest.raises(locking.LockTimeout, match='another clusterducks.vdisk run has held'):
            with locking.host_lock(timeout=0.3):
                pytest.fail('got a lock that is held')
        assert time.time() - start >= 0.3


def test_a_second_locker_waits_for_the_first(lock_path):
    held, released = threading.Event(), threading.Event()

    def first():
        with locking.host_lock():
            held.set()
            time.sleep(0.3)
            released.set()

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert held.wait(5)
        with locking.host_lock(timeout=10):
            assert released.is_set()
    finally:
        thread.join()


def test_the_lock_is_released_when_the_run_fails(lock_path):
    with pytest.raises(RuntimeError):
        with locking.host_lock():
            raise RuntimeError('module failed')
    with locking.host_lock(timeout=0):
        pass
