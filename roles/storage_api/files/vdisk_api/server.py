# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""HTTPS transport: asyncio, TLS in the event loop, N worker processes.

Why: at a boot storm every device opens one new TLS connection. A threaded
server doing handshakes in its accept loop collapses (hundreds of req/s,
thousands of errors). Here each worker runs its own event loop with TLS done
in non-blocking memory BIOs, every worker binds the same port with
SO_REUSEPORT so the kernel spreads connections across CPUs, and the key is
ECDSA P-256 (cheap handshakes). The parent only migrates the database,
forks the workers and restarts any that die.
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.sslproto
import concurrent.futures
import logging
import os
import signal
import socket
import ssl
import sys
import time

from vdisk_api import __version__, app as app_mod, config as config_mod, metrics as metrics_mod, store

log = logging.getLogger('vdisk_api')

MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 100
HEADER_TIMEOUT = 10.0  # a whole request head must arrive within this
BODY_TIMEOUT = 10.0
KEEPALIVE_TIMEOUT = 15.0
HANDSHAKE_TIMEOUT = 5.0
UNIX_CONNECTION_LIMIT = 16384  # per worker, behind the front (see WorkerServer)
LINGER_TIMEOUT = 1.0  # after an early 413, wait this long for more of the body

# CPython 3.11's SSLProtocol allocates (and zeroes) a 256 KiB read buffer per
# connection: measured here as ~0.2 ms CPU per handshake, a large share of a
# boot-storm request. A TLS record carries at most 16 KiB of plaintext, and
# our requests are smaller still.
if getattr(asyncio.sslproto.SSLProtocol, 'max_size', 0) > 32 * 1024:
    asyncio.sslproto.SSLProtocol.max_size = 32 * 1024

# Client-side failures during a handshake (resets, scanners, timeouts) are
# normal under a storm: count them, do not log a traceback for each.
_QUIET_ERRORS = (ConnectionError, ssl.SSLError, TimeoutError, asyncio.TimeoutError)

REASONS = {200: 'OK', 201: 'Created', 204: 'No Content', 400: 'Bad Request', 401: 'Unauthorized',
           403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 408: 'Request Timeout',
           409: 'Conflict', 411: 'Length Required', 413: 'Content Too Large', 415: 'Unsupported Media Type',
           422: 'Unprocessable Content', 431: 'Request Header Fields Too Large', 500: 'Internal Server Error',
           501: 'Not Implemented', 503: 'Service Unavailable', 505: 'HTTP Version Not Supported'}


class HttpProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive, no pipelining surprises: one request at a time."""

    def __init__(self, server):
        self.server = server
        self.transport = None
        self.buffer = bytearray()
        self.pending = None  # (method, target, headers, version, keep_alive, length, started)
        self.busy = False
        self.timer = None
        self.deadline = 0.0  # when the current wait (head, body, keep-alive) ends
        self.closed = False
        self.discard = 0  # body bytes still to swallow after an early 413

    def connection_made(self, transport):
        self.transport = transport
        self.server.metrics.connection()
        self._arm(HEADER_TIMEOUT)

    def connection_lost(self, exc):
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        self.server.release()

    def _linger(self):
        # Like nginx's lingering close: stop waiting once the client pauses.
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.server.loop.call_later(LINGER_TIMEOUT, self.transport.close)

    def _arm(self, seconds):
        # A timer is re-scheduled only when the new deadline is earlier than
        # the pending one; a later deadline is picked up when the timer fires.
        # Re-arming per request (cancel + new timer) cost a heap insert per
        # request on the boot path.
        loop = self.server.loop
        self.deadline = loop.time() + seconds
        if self.timer is not None and self.timer.when() > self.deadline:
            self.timer.cancel()
            self.timer = None
        if self.timer is None:
            self.timer = loop.call_at(self.deadline, self._timeout)

    def _timeout(self):
        self.timer = None
        if self.busy or self.closed:
            return  # a request in progress; its answer arms the next wait
        if self.server.loop.time() < self.deadline:
            self.timer = self.server.loop.call_at(self.deadline, self._timeout)
            return
        if self.buffer or self.pending:
            self._send_error(408, 'timeout', 'request not received in time', close=True)
        else:
            self.transport.close()

    def data_received(self, data):
        if self.discard:
            # Read (and drop) the rejected body so the client gets to read the
            # 413 instead of a connection reset.
            self.discard = max(0, self.discard - len(data))
            if not self.discard:
                self.transport.close()
            else:
                self._linger()
            return
        self.buffer += data
        if not self.busy:
            self._process()

    def _process(self):
        while not self.busy and not self.closed:
            if self.pending is None:
                end = self.buffer.find(b'\r\n\r\n')
                if end < 0:
                    if len(self.buffer) > MAX_HEADER_BYTES:
                        self._send_error(431, 'headers_too_large', 'request head exceeds %d bytes'
                                         % MAX_HEADER_BYTES, close=True)
                    return
                if end > MAX_HEADER_BYTES:
                    self._send_error(431, 'headers_too_large', 'request head exceeds %d bytes' % MAX_HEADER_BYTES,
                                     close=True)
                    return
                head = bytes(self.buffer[:end])
                del self.buffer[:end + 4]
                if not self._parse_head(head):
                    return
            method, target, headers, _version, _keep, length, _started = self.pending
            if len(self.buffer) < length:
                self._arm(BODY_TIMEOUT)
                return
            body = bytes(self.buffer[:length])
            del self.buffer[:length]
            self._dispatch(app_mod.Request(method, target, headers, body))

    def _parse_head(self, head):
        started = time.monotonic()
        try:
            text = head.decode('latin-1')
            lines = text.split('\r\n')
            method, target, version = lines[0].split(' ')
        except ValueError:
            self._send_error(400, 'bad_request', 'malformed request line', close=True)
            return False
        if version not in ('HTTP/1.1', 'HTTP/1.0'):
            self._send_error(505, 'http_version', 'only HTTP/1.0 and HTTP/1.1 are supported', close=True)
            return False
        if len(lines) > MAX_HEADERS + 1:
            self._send_error(431, 'headers_too_large', 'more than %d header fields' % MAX_HEADERS, close=True)
            return False
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(':')
            if not sep or not name or name != name.strip():
                self._send_error(400, 'bad_request', 'malformed header line', close=True)
                return False
            headers[name.lower()] = value.strip()
        connection = headers.get('connection', '').lower()
        keep_alive = 'close' not in connection if version == 'HTTP/1.1' else 'keep-alive' in connection
        if 'transfer-encoding' in headers:
            self._send_error(411, 'length_required', 'chunked bodies are not supported; send Content-Length',
                             close=True)
            return False
        length = headers.get('content-length', '0')
        if not (length.isascii() and length.isdigit()) or len(length) > 12:
            self._send_error(400, 'bad_request', 'invalid Content-Length', close=True)
            return False
        length = int(length)
        if length > self.server.app.max_body:
            # Answer before reading the body, then swallow at most a few MiB
            # of it and drop the connection.
            response = app_mod.error_response(413, 'body_too_large', 'request body of %d bytes exceeds the limit '
                                              'of %d bytes' % (length, self.server.app.max_body))
            self.closed = True  # no further requests on this connection
            self._respond(response, True, started)
            self.discard = min(length, 8 * 1024 * 1024) - len(self.buffer)
            self.buffer.clear()
            if self.discard <= 0:
                self.discard = 0
                self.transport.close()
            else:
                self._linger()
            return False
        if method in ('PUT', 'POST', 'PATCH') and 'content-length' not in headers:
            self._send_error(411, 'length_required', 'Content-Length is required', close=True)
            return False
        self.pending = (method, target, headers, version, keep_alive, length, started)
        return True

    def _dispatch(self, request):
        keep_alive, started = self.pending[4], self.pending[6]
        self.pending = None
        # The timer stays: it does nothing while the request is in progress,
        # and the answer arms the keep-alive wait.
        result = self.server.app.handle(request)
        if isinstance(result, app_mod.Deferred):
            self.busy = True
            future = self.server.loop.run_in_executor(self.server.writer, self.server.app.run_deferred, result)
            future.add_done_callback(lambda f: self._finish_deferred(f, keep_alive, started))
            return
        self._respond(result, keep_alive, started)

    def _finish_deferred(self, future, keep_alive, started):
        self.busy = False
        if self.closed:
            return  # client gone; the write itself is committed or rolled back
        self._respond(future.result(), keep_alive, started)
        if not self.closed:
            self._process()

    def _respond(self, response, keep_alive, started):
        if self.transport.is_closing():
            return
        head = ['HTTP/1.1 %d %s' % (response.status, REASONS.get(response.status, 'Unknown')),
                'Server: vdisk-api/%s' % __version__]
        if response.status != 204:
            head.append('Content-Type: %s' % response.content_type)
            head.append('Content-Length: %d' % len(response.body))
        for name, value in response.headers:
            head.append('%s: %s' % (name, value))
        head.append('Connection: %s' % ('keep-alive' if keep_alive and not self.closed else 'close'))
        self.transport.write(('\r\n'.join(head) + '\r\n\r\n').encode('latin-1') + response.body)
        self.server.metrics.observe(response.route, response.status, time.monotonic() - started)
        if self.closed:
            pass  # 413: the caller swallows the body, then closes
        elif keep_alive:
            self._arm(KEEPALIVE_TIMEOUT)
        else:
            self.closed = True
            self.transport.close()

    def _send_error(self, status, code, message, close):
        response = app_mod.error_response(status, code, message)
        self._respond(response, not close, time.monotonic())


class WorkerServer:
    def __init__(self, config, metrics, index):
        self.config = config
        self.metrics = metrics
        self.index = index
        self.loop = None
        self.app = None
        self.sock = None
        self.context = None
        # Admission control: at most this many connections (handshaking or
        # open) per worker. The rest wait in the kernel's accept queue, in
        # FIFO order, instead of all progressing slowly together in the loop
        # (where every handshake would take N times longer and time out).
        self.limit = config['max_connections']
        if config['unix_socket']:
            # Behind the front there is no handshake to pace, and the front
            # keeps idle connections to reuse: a small limit would fill with
            # those and leave new requests waiting in the socket's queue. The
            # front bounds the connections (its limits are the clients').
            self.limit = UNIX_CONNECTION_LIMIT
        self.inflight = 0
        self.accepting = False
        self.stopping = False
        # One writer thread per worker: SQLite writes (fsync, lock waits) off the loop.
        self.writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix='db-writer')

    def _exception_handler(self, loop, context):
        exc = context.get('exception')
        if isinstance(exc, _QUIET_ERRORS):
            self.metrics.handshake_error()
            return
        loop.default_exception_handler(context)

    def run(self, sock):
        self.metrics.use_slot(self.index)
        self.app = app_mod.App(self.config, self.metrics)
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.set_exception_handler(self._exception_handler)
        context = None if self.config['unix_socket'] else make_ssl_context(self.config)
        stop = self.loop.create_future()
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, lambda: stop.done() or stop.set_result(None))
        self.sock, self.context = sock, context
        self._accepting(True)
        try:
            self.loop.run_until_complete(stop)
        finally:
            self.stopping = True
            self._accepting(False)
            self.writer.shutdown(wait=True)  # finish (commit or roll back) the write in flight
            # Drop handshakes still in progress without a traceback each.
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def _accepting(self, on):
        if on and not self.accepting:
            self.loop.add_reader(self.sock.fileno(), self._accept)
        elif not on and self.accepting:
            self.loop.remove_reader(self.sock.fileno())
        self.accepting = on

    def _accept(self):
        # One at a time per loop pass, like nginx without multi_accept: a
        # burst never floods the loop with half-done handshakes.
        for _attempt in range(16):
            if self.inflight >= self.limit:
                self._accepting(False)
                return
            try:
                conn, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: back off, keep serving
                log.warning('accept failed: %s', exc)
                self._accepting(False)
                self.loop.call_later(0.1, self._resume)
                return
            conn.setblocking(False)
            self.inflight += 1
            self.loop.create_task(self._handshake(conn))

    def _resume(self):
        if not self.stopping and self.inflight < self.limit:
            self._accepting(True)

    async def _handshake(self, conn):
        try:
            await self.loop.connect_accepted_socket(
                lambda: HttpProtocol(self), conn, ssl=self.context,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT if self.context else None)
        except (OSError, ssl.SSLError, asyncio.TimeoutError, asyncio.CancelledError):
            # No protocol was connected, so nobody else releases the slot.
            self.metrics.handshake_error()
            conn.close()
            self.release()

    def release(self):
        self.inflight -= 1
        if not self.accepting and not self.stopping and self.inflight < self.limit:
            self._accepting(True)


TLS12_CIPHERS = 'ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20'


def make_ssl_context(config):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # TLS 1.2: only forward-secret AEAD suites (no CBC, no SHA-1 MACs); TLS 1.3's
    # suites are all AEAD and not set by this list.
    context.set_ciphers(TLS12_CIPHERS)
    context.load_cert_chain(config['tls_cert'], config['tls_key'])
    # Devices never resume sessions (one connection per boot): issuing TLS 1.3
    # tickets would only cost an encryption per handshake.
    context.num_tickets = 0
    context.options |= ssl.OP_NO_TICKET
    return context


SD_LISTEN_FDS_START = 3


def unix_socket(config):
    """The plain-HTTP socket behind the TLS front, shared by the forked workers.

    Under systemd it is vdisk-api.socket's (socket activation: systemd owns
    the path, its owner and mode, and keeps it, with its queue, across
    restarts of the service). Run by hand, the service binds it itself (0660).
    """
    if os.environ.get('LISTEN_PID') == str(os.getpid()) and os.environ.get('LISTEN_FDS') == '1':
        for name in ('LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES'):
            os.environ.pop(name, None)
        sock = socket.socket(fileno=SD_LISTEN_FDS_START)
        if sock.family != socket.AF_UNIX or sock.getsockname() != config['unix_socket']:
            raise ValueError('the socket passed by systemd is %r, not unix_socket %s'
                             % (sock.getsockname(), config['unix_socket']))
    else:
        path = config['unix_socket']
        try:
            os.unlink(path)  # a stale socket of an earlier run
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o117)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        sock.listen(config['backlog'])
    sock.setblocking(False)
    return sock


def make_socket(config, listen=True):
    address = config['address']
    family = socket.AF_INET6 if ':' in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Each worker binds its own socket; the kernel load-balances new
    # connections across them (no thundering herd on one accept queue).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((address, config['port']))
    if listen:
        sock.listen(config['backlog'])
    sock.setblocking(False)
    return sock


def run_worker(config, metrics, index, shared=None):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        sock = shared or make_socket(config)
        WorkerServer(config, metrics, index).run(sock)
    except Exception:  # pylint: disable=broad-exception-caught
        log.exception('worker %d failed', index)
        os._exit(1)
    os._exit(0)


def serve(config):
    store.migrate(config['database'])
    shared = None
    if config['unix_socket']:
        shared = unix_socket(config)
    else:
        # Fail in the parent, with a clear message, on what every worker needs.
        make_ssl_context(config)
        probe = make_socket(config, listen=False)  # fail early if the port is taken
        probe.close()
    # A bad admin token file turns admin access off (logged by each worker);
    # devices must still get their boot records, so it does not stop the service.
    metrics = metrics_mod.Metrics(config['workers'])
    children = {}
    stopping = []

    def spawn(index):
        pid = os.fork()
        if pid == 0:
            run_worker(config, metrics, index, shared)
        children[pid] = index

    def stop(signum, _frame):
        stopping.append(signum)
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for index in range(config['workers']):
        spawn(index)
    where = ('http+unix://%s' % config['unix_socket'] if shared
             else 'https://%s:%d' % (config['address'], config['port']))
    log.info('vdisk-api %s listening on %s with %d workers (database %s)', __version__, where,
             config['workers'], config['database'])
    restarts = []
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        index = children.pop(pid, None)
        if index is None or stopping:
            continue
        log.error('worker %d (pid %d) exited with status %d; restarting', index, pid, status)
        now = time.monotonic()
        restarts[:] = [t for t in restarts if now - t < 60] + [now]
        if len(restarts) > 10:
            log.critical('workers keep dying; giving up')
            stop(signal.SIGTERM, None)
            return 1
        spawn(index)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog='vdisk-api', description='clusterducks vDisk storage API')
    parser.add_argument('--config', default='/etc/clusterducks/vdisk-api/config.json')
    parser.add_argument('--check-config', action='store_true', help='validate the configuration and exit')
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, format='%(levelname)s %(message)s')
    try:
        config = config_mod.load(args.config)
        log.setLevel(config['log_level'].upper())
        if args.check_config:
            if not config['unix_socket']:
                make_ssl_context(config)
            config_mod.read_admin_token_file(config['admin_token_file'])
            print('configuration OK')
            return 0
        return serve(config)
    except (config_mod.ConfigError, store.SchemaError, OSError, ssl.SSLError, ValueError) as exc:
        log.error('%s', exc)
        return 1
