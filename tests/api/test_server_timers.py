# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The API's connection timers: a head, a body and an idle keep-alive each end
at their deadline, with one timer per connection that is moved, not replaced,
per request (the real HttpProtocol on a real event loop, timeouts shortened)."""

from __future__ import annotations

import asyncio
import socket
import sys
import time

import pytest

from apitest import SERVICE_DIR

sys.path.insert(0, SERVICE_DIR)

from vdisk_api import app as app_mod, server as server_mod  # noqa: E402  (the service's own package)

HEAD, BODY, KEEPALIVE = 0.4, 0.3, 1.2


class _Metrics:
    def connection(self):
        pass

    def observe(self, *_args):
        pass


class _App:
    max_body = 1024

    @staticmethod
    def handle(request):
        return app_mod.Response(200, b'{"ok":true}\n', route='healthz') if request.target == '/ok' else \
            app_mod.error_response(404, 'not_found', 'no')


class _Server:
    def __init__(self, loop):
        self.loop, self.app, self.metrics = loop, _App(), _Metrics()
        self.released = 0

    def release(self):
        self.released += 1


@pytest.fixture
def timeouts(monkeypatch):
    monkeypatch.setattr(server_mod, 'HEADER_TIMEOUT', HEAD)
    monkeypatch.setattr(server_mod, 'BODY_TIMEOUT', BODY)
    monkeypatch.setattr(server_mod, 'KEEPALIVE_TIMEOUT', KEEPALIVE)


def _session(script):
    """Run script(reader, writer, loop, server) against one HttpProtocol over a socketpair."""
    async def main():
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        server = _Server(loop)
        await loop.connect_accepted_socket(lambda: server_mod.HttpProtocol(server), theirs)
        reader, writer = await asyncio.open_connection(sock=ours)
        try:
            return await script(reader, writer, loop, server)
        finally:
            writer.close()
    return asyncio.run(main())


async def _answer(reader):
    head = await reader.readuntil(b'\r\n\r\n')
    length = int(head.split(b'Content-Length: ')[1].split(b'\r\n')[0])
    return head, await reader.readexactly(length)


async def _closed_after(reader, started):
    assert await asyncio.wait_for(reader.read(), 5) == b''  # EOF: the server closed
    return time.monotonic() - started


def test_idle_keep_alive_closes_at_its_deadline_not_at_each_request(timeouts):
    async def script(reader, writer, _loop, server):
        # Requests spaced by 2/3 of the keep-alive time for longer than the
        # head timeout: each one moves the deadline, none is cut off.
        for _i in range(4):
            writer.write(b'GET /ok HTTP/1.1\r\n\r\n')
            head, _body = await _answer(reader)
            assert head.startswith(b'HTTP/1.1 200') and b'Connection: keep-alive' in head
            await asyncio.sleep(KEEPALIVE * 2 / 3)
        last = time.monotonic() - KEEPALIVE * 2 / 3
        idle = await _closed_after(reader, last)
        assert server.released == 1
        return idle
    idle = _session(script)
    assert KEEPALIVE - 0.05 <= idle <= KEEPALIVE + 0.5, idle


def _waited_for_408(before, stall, pause=0.0):
    """Answer the requests in ``before``, wait ``pause``, send ``stall``: how long until its 408."""
    async def script(reader, writer, _loop, _server):
        for request in before:
            writer.write(request)
            await _answer(reader)
        await asyncio.sleep(pause)
        started = time.monotonic()
        writer.write(stall)
        head, body = await asyncio.wait_for(_answer(reader), 5)
        assert head.startswith(b'HTTP/1.1 408') and b'Connection: close' in head, head
        assert b'"timeout"' in body
        return time.monotonic() - started
    return _session(script)


GET = b'GET /ok HTTP/1.1\r\n\r\n'
HALF_BODY = b'PUT /ok HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345'


def test_a_head_that_never_ends_gets_408_at_the_head_deadline(timeouts):
    waited = _waited_for_408((), b'GET /ok HTTP/1.1\r\nHost: x\r\n')
    assert HEAD - 0.05 <= waited <= HEAD + 0.5, waited


def test_a_head_after_keep_alive_gets_the_keep_alive_deadline_not_more(timeouts):
    """The head of a second request started on a kept-alive connection is
    bounded by the keep-alive deadline: the later, unused, timer of the first
    wait never extends it."""
    waited = _waited_for_408((GET,), b'GET /ok HTTP/1.1\r\n')  # half a head, then nothing
    assert KEEPALIVE - 0.05 <= waited <= KEEPALIVE + 0.5, waited


def test_a_body_that_stops_gets_408_at_the_body_deadline(timeouts):
    waited = _waited_for_408((), HALF_BODY)
    assert BODY - 0.05 <= waited <= BODY + 0.5, waited


def test_a_body_deadline_earlier_than_the_pending_timer_moves_the_timer(timeouts):
    # Past the head timer, which then moved itself to the keep-alive
    # deadline; a body deadline before that one must move the timer back.
    waited = _waited_for_408((GET,), HALF_BODY, pause=HEAD + 0.05)
    assert BODY - 0.05 <= waited <= BODY + 0.2, waited
