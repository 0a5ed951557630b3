# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""kill -9 of the whole service in the middle of a burst of writes: after a
restart the database opens, passes integrity_check, and holds every write
that was acknowledged with a 2xx. Also: schema versioning."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import time

import requests

from apitest import ADMIN_TOKEN, SERVICE_DIR, SERVICE_PYTHON, Service

SEED = {'vdisk': 'node01', 'mounts': {'0': 'data'},
        'overlayfs': {'enabled': True, 'upper': '/data/overlayfs', 'work': '/data/workdir'}}


def test_kill_9_during_write_burst_loses_no_acknowledged_write(tmp_path, pki):
    service = Service(str(tmp_path), pki, workers=2).start()
    acked_tokens = {}
    acked_revisions = []
    failures = []
    lock = threading.Lock()
    stop = threading.Event()

    def tokens(worker):
        session = service.session()
        n = 0
        while not stop.is_set():
            n += 1
            try:
                response = session.post(service.url + '/api/v1/tokens',
                                        json={'device': 'node%02d' % worker, 'name': 't%d' % n}, timeout=5)
            except requests.RequestException as exc:
                failures.append(exc)
                return
            if response.status_code == 201:
                with lock:
                    acked_tokens[response.json()['token']['id']] = response.json()['token']

    def assignments():
        # Alternating updates of one assignment: each 2xx carries the revision it made durable.
        session = service.session()
        frozen = False
        while not stop.is_set():
            frozen = not frozen
            try:
                response = session.put(service.url + '/api/v1/assignments/node01', json=dict(SEED, frozen=frozen),
                                       timeout=5)
            except requests.RequestException as exc:
                failures.append(exc)
                return
            if response.status_code in (200, 201):
                with lock:
                    acked_revisions.append((response.json()['assignment']['revision'], frozen))

    threads = [threading.Thread(target=tokens, args=(i,)) for i in range(6)] + [threading.Thread(target=assignments)]
    for thread in threads:
        thread.start()
    # Kill as soon as 200 writes are acknowledged; the deadline only bounds a
    # machine so loaded (lab VMs booting) that fsyncs crawl.
    deadline = time.monotonic() + 60
    while len(acked_tokens) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    service.kill()  # SIGKILL to parent and workers, writes in flight
    stop.set()
    for thread in threads:
        thread.join(10)
    assert len(acked_tokens) >= 200, service.read_log()
    assert acked_revisions

    conn = sqlite3.connect(service.db)
    try:
        assert conn.execute('PRAGMA integrity_check').fetchone()[0] == 'ok'
    finally:
        conn.close()

    service.start()  # same database, same port
    try:
        admin = service.session()
        stored = {t['id']: t for t in admin.get(service.url + '/api/v1/tokens').json()['tokens']}
        missing = set(acked_tokens) - set(stored)
        assert not missing, 'acknowledged tokens lost: %s' % sorted(missing)
        for token_id, meta in acked_tokens.items():
            assert stored[token_id] == meta
        assignment = admin.get(service.url + '/api/v1/assignments/node01').json()['assignment']
        last_revision, last_frozen = max(acked_revisions)
        # At least the last acknowledged revision (one more if a write committed as the kill landed).
        assert assignment['revision'] in (last_revision, last_revision + 1)
        if assignment['revision'] == last_revision:
            assert assignment['frozen'] is last_frozen
        assert admin.get(service.url + '/healthz').status_code == 200
    finally:
        service.stop()


def test_schema_version_and_refusal_of_newer_database(tmp_path, pki):
    service = Service(str(tmp_path), pki, workers=1).start()
    service.stop()
    conn = sqlite3.connect(service.db)
    try:
        assert conn.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'
        assert conn.execute('SELECT MAX(version) FROM schema_version').fetchone()[0] == 2
        conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (99, 'future')")
        conn.commit()
    finally:
        conn.close()
    result = subprocess.run([SERVICE_PYTHON, '-m', 'vdisk_api', '--config', service.config], capture_output=True,
                            text=True, timeout=30, env={'PYTHONPATH': SERVICE_DIR}, check=False)
    assert result.returncode == 1
    assert 'newer than this service' in result.stderr


def test_service_refuses_world_readable_admin_tokens(tmp_path, pki):
    service = Service(str(tmp_path), pki, workers=1)
    os.chmod(service.admin_file, 0o644)
    result = subprocess.run([SERVICE_PYTHON, '-m', 'vdisk_api', '--config', service.config], capture_output=True,
                            text=True, timeout=30, env={'PYTHONPATH': SERVICE_DIR}, check=False)
    assert result.returncode == 1
    assert 'chmod 0600' in result.stderr
    assert ADMIN_TOKEN not in result.stderr
