# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Issue 10, item 1: slow and hostile clients cannot keep a device from its
boot record. The real API behind the role's nginx front, on loopback; the
attackers come from many 127.x addresses (all loopback on Linux), the device
from 127.0.0.1, as on a storage network.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import ssl
import threading
import time

import pytest
import requests

from apitest import ADMIN_TOKEN, Service

# Issue 10's numbers.
STALLED_MID_REQUEST = 1000
TLS_THEN_NOTHING = 1000
NEVER_TLS = 2000
TRICKLING_BODIES = 64
DEVICE_DEADLINE = 2.0


def _attacker_address(i):
    # 127.1.0.0/16, 8 connections per address: under the per-client limit
    # (16 requests in progress), so the front cannot simply turn them away.
    return '127.1.%d.%d' % (i // 8 // 250, i // 8 % 250 + 1)


def _rss_kib(pids):
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            with open('/proc/%d/status' % pid, encoding='ascii') as handle:
                for line in handle:
                    if line.startswith('VmRSS:'):
                        total += int(line.split()[1])
    return total


def _process_tree(pid):
    out = []
    with contextlib.suppress(OSError):
        with open('/proc/%d/task/%d/children' % (pid, pid), encoding='ascii') as handle:
            for child in handle.read().split():
                out += _process_tree(int(child))
    return [pid] + out


@pytest.fixture(scope='module')
def front_service(tmp_path_factory, pki):
    # A longer head timeout than the role's 10 s: every attacker is still
    # connected while the device asks, which is harder for the server.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 8192:
        pytest.fail('the hostile-client tests need 8192 open files (ulimit -Hn is %d)' % hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    svc = Service(str(tmp_path_factory.mktemp('hostile')), pki, storage_api_front_client_timeout=60).start()
    yield svc
    svc.stop()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope='module')
def device(front_service):
    admin = front_service.session()
    url = front_service.url
    assert admin.put(url + '/api/v1/assignments/node01', json={'vdisk': 'node01'}).status_code in (200, 201)
    token = admin.post(url + '/api/v1/tokens', json={'device': 'node01', 'name': 'hostile'}).json()['secret']
    return token


class Attack:
    """Thousands of hostile connections held open on an asyncio loop in a thread."""

    def __init__(self, port, ca):
        self.port, self.ca = port, ca
        self.loop = asyncio.new_event_loop()
        self.writers = []
        self.counts = {}
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout=600):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _open(self, i, use_tls):
        context = ssl.create_default_context(cafile=self.ca) if use_tls else None
        sock = socket.socket()
        sock.setblocking(False)
        sock.bind((_attacker_address(i), 0))
        await self.loop.sock_connect(sock, ('127.0.0.1', self.port))
        reader, writer = await asyncio.open_connection(sock=sock, ssl=context,
                                                       server_hostname='127.0.0.1' if use_tls else None)
        self.writers.append(writer)
        return reader, writer

    async def _many(self, kind, start, count, use_tls, after=None):
        sem = asyncio.Semaphore(64)  # handshakes in flight from the attacker

        async def one(i):
            async with sem:
                try:
                    reader, writer = await self._open(i, use_tls)
                    if after is not None:
                        await after(reader, writer)
                    self.counts[kind] = self.counts.get(kind, 0) + 1
                except (OSError, ssl.SSLError, asyncio.TimeoutError) as exc:
                    self.counts[kind + ' failed'] = self.counts.get(kind + ' failed', 0) + 1
                    self.counts['last error'] = repr(exc)
        await asyncio.gather(*(one(start + i) for i in range(count)))

    async def _half_request(self, _reader, writer):
        writer.write(b'GET /api/v1/boot/node01 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthoriz')
        await writer.drain()

    async def _trickle(self, _reader, writer):
        writer.write(b'PUT /api/v1/assignments/node09 HTTP/1.1\r\nHost: 127.0.0.1\r\n'
                     b'Authorization: Bearer ' + ADMIN_TOKEN.encode() + b'\r\n'
                     b'Content-Type: application/json\r\nContent-Length: 4096\r\n\r\n{')
        await writer.drain()
        self.loop.create_task(self._keep_trickling(writer))

    async def _keep_trickling(self, writer):
        with contextlib.suppress(OSError, ConnectionError):
            while not writer.is_closing():
                await asyncio.sleep(2)
                writer.write(b' ')
                await writer.drain()

    def open_all(self):
        n = 0
        self.run(self._many('never TLS', n, NEVER_TLS, False))
        n += NEVER_TLS
        self.run(self._many('TLS then nothing', n, TLS_THEN_NOTHING, True))
        n += TLS_THEN_NOTHING
        self.run(self._many('stalled mid-request', n, STALLED_MID_REQUEST, True, self._half_request))
        n += STALLED_MID_REQUEST
        self.run(self._many('trickling a body', n, TRICKLING_BODIES, True, self._trickle))

    def close(self):
        async def close_all():
            for writer in self.writers:
                writer.transport.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self.run(close_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _fetch_record(service, token):
    start = time.monotonic()
    # A new TCP and TLS connection each time, as a booting device makes.
    response = requests.get(service.url + '/api/v1/boot/node01', headers={'Authorization': 'Bearer ' + token,
                                                                          'Connection': 'close'},
                            verify=service.ca, timeout=30)
    return response.status_code, time.monotonic() - start


def test_devices_get_their_records_under_4064_hostile_connections(front_service, device):
    pids = _process_tree(front_service.proc.pid) + _process_tree(front_service.front.proc.pid)
    before = _rss_kib(pids)
    attack = Attack(front_service.port, front_service.ca)
    try:
        t0 = time.monotonic()
        attack.open_all()
        opened = time.monotonic() - t0
        held = {k: v for k, v in attack.counts.items() if not k.endswith('failed') and k != 'last error'}
        assert held == {'never TLS': NEVER_TLS, 'TLS then nothing': TLS_THEN_NOTHING,
                        'stalled mid-request': STALLED_MID_REQUEST, 'trickling a body': TRICKLING_BODIES}, attack.counts
        times = []
        for _attempt in range(40):
            status, seconds = _fetch_record(front_service, device)
            assert status == 200
            times.append(seconds)
        during = _rss_kib(pids)
    finally:
        attack.close()
    times.sort()
    print('\n%d hostile connections opened in %.1f s; device record x40: median %.0f ms, max %.0f ms; '
          'front + API RSS %.1f MiB before, %.1f MiB with them (%d processes)'
          % (sum(held.values()), opened, times[20] * 1000, times[-1] * 1000, before / 1024.0, during / 1024.0,
             len(pids)))
    assert times[-1] < DEVICE_DEADLINE, times
    # Bounded: the connections cost the front a few KiB each; the API sees none of them.
    assert during - before < 160 * 1024, (before, during)


def test_the_per_client_limit_answers_429(front_service):
    """A client address gets at most storage_api_max_connections_per_client (16)
    requests in progress; the 17th is refused, and other addresses are not."""
    attack = Attack(front_service.port, front_service.ca)
    try:
        async def trickle_from(address, count):
            context = ssl.create_default_context(cafile=front_service.ca)
            answers = []
            for _attempt in range(count):
                sock = socket.socket()
                sock.setblocking(False)
                sock.bind((address, 0))
                await attack.loop.sock_connect(sock, ('127.0.0.1', front_service.port))
                reader, writer = await asyncio.open_connection(sock=sock, ssl=context, server_hostname='127.0.0.1')
                attack.writers.append(writer)
                writer.write(b'PUT /api/v1/assignments/node09 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n'
                             b'Content-Type: application/json\r\n\r\n{')
                await writer.drain()
                answers.append(reader)
            await asyncio.sleep(1)
            refused = 0
            for reader in answers:
                with contextlib.suppress(asyncio.TimeoutError):
                    line = await asyncio.wait_for(reader.readline(), 0.2)
                    refused += line.startswith(b'HTTP/1.1 429')
            return refused
        assert attack.run(trickle_from('127.2.0.1', 20)) == 4
    finally:
        attack.close()
    # Another client is served meanwhile, and the first one again once its requests end.
    assert requests.get(front_service.url + '/healthz', verify=front_service.ca, timeout=5).status_code == 200


def test_pipelined_requests_never_read_keep_memory_bounded(front_service):
    """2 MB of pipelined requests from a client that never reads its answers."""
    pids = _process_tree(front_service.proc.pid) + _process_tree(front_service.front.proc.pid)
    before = _rss_kib(pids)
    context = ssl.create_default_context(cafile=front_service.ca)
    request = ('GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n' % ADMIN_TOKEN).encode()
    sent = 0
    with socket.create_connection(('127.0.0.1', front_service.port)) as raw:
        with context.wrap_socket(raw, server_hostname='127.0.0.1') as conn:
            conn.settimeout(5)
            try:
                while sent < 2 << 20:
                    conn.sendall(request * 64)
                    sent += len(request) * 64
            except (socket.timeout, OSError):
                pass  # the front stopped reading: back-pressure, as it should
            time.sleep(2)
            during = _rss_kib(pids)
    print('\npipelined %d KiB unread; front + API RSS %.1f MiB before, %.1f MiB during'
          % (sent // 1024, before / 1024.0, during / 1024.0))
    assert during - before < 32 * 1024, (before, during)
    assert requests.get(front_service.url + '/healthz', verify=front_service.ca, timeout=5).status_code == 200


def test_idle_keep_alive_connections_are_closed(front_service):
    context = ssl.create_default_context(cafile=front_service.ca)
    with socket.create_connection(('127.0.0.1', front_service.port)) as raw:
        with context.wrap_socket(raw, server_hostname='127.0.0.1') as conn:
            conn.sendall(b'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')
            conn.settimeout(30)
            start = time.monotonic()
            data = b''
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            idle = time.monotonic() - start
    assert data.startswith(b'HTTP/1.1 200')
    # storage_api_front_keepalive_timeout (5 s); the answer itself takes milliseconds.
    assert 4 < idle < 8, idle


def test_the_api_socket_is_the_fronts_alone(front_service):
    mode = os.stat(front_service.socket).st_mode & 0o777
    assert mode == 0o660, oct(mode)


def test_socket_activation_serves_the_socket_systemd_passes(tmp_path, pki):
    """Under systemd the socket is vdisk-api.socket's: the service takes fd 3
    (LISTEN_FDS) and refuses one that is not its configured unix_socket."""
    import json  # pylint: disable=import-outside-toplevel
    import subprocess  # pylint: disable=import-outside-toplevel
    from apitest import SERVICE_DIR, SERVICE_PYTHON  # pylint: disable=import-outside-toplevel
    activate = '/usr/bin/systemd-socket-activate'
    if not os.path.exists(activate):
        pytest.fail('systemd-socket-activate (Debian package systemd) is needed')
    service = Service(str(tmp_path), pki, workers=1)

    def run(socket_path):
        # systemd-socket-activate passes on only the environment it is told to (-E).
        proc = subprocess.Popen([activate, '-l', socket_path, '-E', 'PYTHONPATH=' + SERVICE_DIR,
                                 '-E', 'PYTHONDONTWRITEBYTECODE=1', SERVICE_PYTHON, '-m', 'vdisk_api', '--config',
                                 service.config], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        deadline = time.monotonic() + 10
        while not os.path.exists(socket_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        return proc
    proc = run(service.socket)
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(10)
            conn.connect(service.socket)
            conn.sendall(b'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
            answer = b''
            with contextlib.suppress(OSError):
                answer = conn.recv(100)
    finally:
        os.killpg(proc.pid, 15)
        log = proc.communicate(timeout=10)[0].decode()
    assert answer.startswith(b'HTTP/1.1 200'), log
    other = str(tmp_path / 'other.sock')
    proc = run(other)
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(other)  # the activation starts the service, which refuses the socket
        out, _err = proc.communicate(timeout=20)
        assert proc.returncode == 1
        assert 'not unix_socket' in out.decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
    with open(service.config, encoding='utf-8') as handle:
        assert json.load(handle)['unix_socket'] == service.socket
