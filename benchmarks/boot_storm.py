# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Boot storm: N devices fetch their boot record over HTTPS, one new TLS
connection per request, from the storage API and, in the same run, from nginx
serving the same JSON as a static file with the same certificate (the
practical ceiling). Loopback only; every process it starts is stopped.

    python3 benchmarks/boot_storm.py [--devices 2000] [--duration 10] [--rounds 2]   (as root)

Needs root for apt-get (nginx-light, wrk) if they are missing. Standard
library only, so it runs with Debian's python3.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SERVICE_DIR = os.path.join(REPO, 'roles', 'storage_api', 'files')
PREFIX = 'iqn.2024-01.org.clusterducks.device'
ADMIN = 'bench-admin-token-' + os.urandom(16).hex()
LUNS_PER_TARGET = 100

WRK_SCRIPT = r"""
-- One request per device, round robin from a per-thread random offset:
-- path /api/v1/boot/<device> with that device's own token.
local reqs = {}
local n = 0
local i = 1
init = function(args)
  for line in io.lines(args[1]) do
    local dev, tok = line:match("^(%S+) (%S+)$")
    n = n + 1
    reqs[n] = wrk.format("GET", "/api/v1/boot/" .. dev,
      {["Authorization"] = "Bearer " .. tok, ["Connection"] = "close", ["Host"] = "127.0.0.1"})
  end
  i = math.random(n)
end
request = function()
  i = i % n + 1
  return reqs[i]
end
done = function(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""

NGINX_CONF = """
worker_processes {workers};
daemon off;
master_process on;
user root root;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {dir}/ngx-body;
  proxy_temp_path {dir}/ngx-proxy;
  fastcgi_temp_path {dir}/ngx-fcgi;
  uwsgi_temp_path {dir}/ngx-uwsgi;
  scgi_temp_path {dir}/ngx-scgi;
  server {{
    listen 127.0.0.1:{port} ssl reuseport backlog=4096;
{tls}    location /api/v1/boot/ {{
      root {dir}/www;
      default_type application/json;
      add_header Cache-Control no-store;
      try_files /boot.json =404;
    }}
  }}
  # The same TLS settings in front of the API, which answers plain HTTP on a
  # Unix socket (its unix_socket setting), over kept-alive upstream connections.
  upstream vdisk_api {{
    server unix:{dir}/api.sock;
    keepalive {keepalive};
  }}
  server {{
    listen 127.0.0.1:{front_port} ssl reuseport backlog=4096;
{tls}    location / {{
      proxy_pass http://vdisk_api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $remote_addr;
    }}
  }}
}}
"""

# Both servers' TLS: as the API's and the role's front (devices never resume,
# so no tickets and no cache).
NGINX_TLS = """    ssl_certificate {dir}/server.crt;
    ssl_certificate_key {dir}/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers ECDHE+AESGCM:ECDHE+CHACHA20;
    ssl_session_tickets off;
    ssl_session_cache off;
    keepalive_timeout 15s;
"""


def ensure_tools():
    missing = [pkg for tool, pkg in (('nginx', 'nginx-light'), ('wrk', 'wrk'), ('openssl', 'openssl'))
               if shutil.which(tool) is None and not os.path.exists('/usr/sbin/' + tool)]
    if missing:
        if os.geteuid() != 0:
            sys.exit('missing %s; run as root so apt-get can install them' % ' '.join(missing))
        print('installing', ' '.join(missing), flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
        subprocess.run(['apt-get', 'update', '-q'], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(['apt-get', 'install', '-y', '-q', '--no-install-recommends'] + missing, check=True, env=env,
                       stdout=subprocess.DEVNULL)
    return shutil.which('nginx') or '/usr/sbin/nginx'


def make_pki(directory):
    def openssl(*args):
        subprocess.run(('openssl',) + args, check=True, capture_output=True, cwd=directory)
    openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
            '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=boot storm CA')
    openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
            '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1')
    with open(os.path.join(directory, 'ext.cnf'), 'w', encoding='utf-8') as handle:
        handle.write('subjectAltName=IP:127.0.0.1\n')
    openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
            '-out', 'server.crt', '-days', '2', '-extfile', 'ext.cnf')
    os.chmod(os.path.join(directory, 'server.key'), 0o600)


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def device_name(i):
    return 'dev%04d' % i


def write_fixture(directory, devices):
    """A saveconfig.json (targets of 100 LUNs, one CHAP ACL per device) and the pool."""
    objects, targets = [], []
    for i in range(devices):
        name = device_name(i)
        objects.append({'name': name, 'plugin': 'fileio', 'dev': '/srv/vdisks/%s/disk.img' % name,
                        'size': 1 << 30, 'wwn': 'wwn-%s' % name, 'write_back': False})
        os.makedirs(os.path.join(directory, 'pool', name))
        with open(os.path.join(directory, 'pool', name, 'vdisk.json'), 'w', encoding='utf-8') as handle:
            json.dump({'name': name, 'wwn': 'wwn-%s' % name, 'size_bytes': 1 << 30, 'filesystem': 'xfs',
                       'partitions': []}, handle)
    for t in range(0, devices, LUNS_PER_TARGET):
        names = [device_name(i) for i in range(t, min(devices, t + LUNS_PER_TARGET))]
        targets.append({'wwn': 'iqn.2003-01.org.linux-iscsi.bench:t%04d' % t, 'fabric': 'iscsi', 'tpgs': [{
            'tag': 1, 'enable': True, 'attributes': {}, 'parameters': {},
            'portals': [{'ip_address': '0.0.0.0', 'port': 3260}],
            'luns': [{'index': k, 'storage_object': '/backstores/fileio/%s' % n} for k, n in enumerate(names)],
            'node_acls': [{'node_wwn': '%s:%s' % (PREFIX, n), 'chap_userid': n, 'chap_password': 'pw-' + n,
                           'mapped_luns': [{'index': 0, 'tpg_lun': k, 'write_protect': False}]}
                          for k, n in enumerate(names)]}]})
    with open(os.path.join(directory, 'saveconfig.json'), 'w', encoding='utf-8') as handle:
        json.dump({'storage_objects': objects, 'targets': targets}, handle)


class Api:
    """Minimal stdlib HTTPS client (one keep-alive connection per thread)."""

    def __init__(self, port, ca):
        self.port = port
        self.context = ssl.create_default_context(cafile=ca)
        self.local = threading.local()

    def call(self, method, path, body=None, token=ADMIN):
        for attempt in range(3):
            conn = getattr(self.local, 'conn', None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPSConnection('127.0.0.1', self.port, context=self.context,
                                                                     timeout=30)
            headers = {'Authorization': 'Bearer ' + token}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers['Content-Type'] = 'application/json'
            try:
                conn.request(method, path, body=data, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                return response.status, payload
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError('unreachable')


def start_api(directory, port, workers, max_connections=None, unix_socket='', nice=0):
    config = os.path.join(directory, 'api-unix.json' if unix_socket else 'api.json')
    with open(os.path.join(directory, 'admin-tokens'), 'w', encoding='utf-8') as handle:
        handle.write(ADMIN + '\n')
    os.chmod(os.path.join(directory, 'admin-tokens'), 0o600)
    with open(config, 'w', encoding='utf-8') as handle:
        json.dump({'address': '127.0.0.1', 'port': port, 'workers': workers,
                   'tls_cert': os.path.join(directory, 'server.crt'), 'tls_key': os.path.join(directory, 'server.key'),
                   'database': os.path.join(directory, 'state', 'state.db'),
                   'admin_token_file': os.path.join(directory, 'admin-tokens'),
                   'lio_save_file': os.path.join(directory, 'saveconfig.json'),
                   'pool_path': os.path.join(directory, 'pool'), 'advertised_portals': ['10.77.0.10'],
                   'log_level': 'warning', 'unix_socket': unix_socket,
                   **({'max_connections': max_connections} if max_connections else {})}, handle)
    log = open(os.path.join(directory, 'api-unix.log' if unix_socket else 'api.log'), 'wb')  # pylint: disable=consider-using-with
    proc = subprocess.Popen(['nice', '-n', str(nice), '/usr/bin/python3', '-m', 'vdisk_api', '--config', config], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env=dict(os.environ, PYTHONPATH=SERVICE_DIR, PYTHONDONTWRITEBYTECODE='1'))
    return proc


def wait_port(port, proc, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit('server exited early (status %s)' % proc.returncode)
        try:
            socket.create_connection(('127.0.0.1', port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit('server on port %d did not start' % port)


def populate(api, devices):
    """Assignments and device tokens through the API itself (validated writes)."""
    def one(i):
        name = device_name(i)
        status, body = api.call('PUT', '/api/v1/assignments/' + name,
                                {'vdisk': name, 'mounts': {'0': 'data'},
                                 'overlayfs': {'enabled': True, 'upper': '/data/overlayfs', 'work': '/data/work'}})
        if status not in (200, 201):
            raise SystemExit('assignment %s: %s %s' % (name, status, body[:300]))
        status, body = api.call('POST', '/api/v1/tokens', {'device': name, 'name': 'bench'})
        if status == 409:  # rerun on the same database
            raise SystemExit('token exists for %s' % name)
        if status != 201:
            raise SystemExit('token %s: %s %s' % (name, status, body[:300]))
        return name, json.loads(body)['secret']
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(devices)))


class Probe(threading.Thread):
    """Device-perceived latency during the storm: a new TCP+TLS connection,
    one request, sequentially, ~20 per second (wrk's latency starts only
    after its TLS handshake)."""

    def __init__(self, port, ca, requests_):
        super().__init__(daemon=True)
        self.port, self.requests = port, requests_
        self.context = ssl.create_default_context(cafile=ca)
        self.samples, self.errors, self.failures = [], 0, []
        self.stop = threading.Event()

    def run(self):
        i = 0
        while not self.stop.is_set():
            device, token = self.requests[i % len(self.requests)]
            i += 1
            start = time.monotonic()
            try:
                conn = http.client.HTTPSConnection('127.0.0.1', self.port, context=self.context, timeout=10)
                conn.request('GET', '/api/v1/boot/' + device,
                             headers={'Authorization': 'Bearer ' + token, 'Connection': 'close'})
                response = conn.getresponse()
                response.read()
                conn.close()
                if response.status != 200:
                    self.errors += 1
                    self.failures.append('HTTP %d after %.1f s' % (response.status, time.monotonic() - start))
                else:
                    self.samples.append(time.monotonic() - start)
            except (OSError, http.client.HTTPException) as exc:
                self.errors += 1
                self.failures.append('%r after %.1f s' % (exc, time.monotonic() - start))
            self.stop.wait(0.05)


def pct(samples, p):
    if not samples:
        return float('nan')
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100.0 * (len(ordered) - 1))))]


def storm(label, port, ca, directory, requests_, args):
    probe = Probe(port, ca, requests_)
    probe.start()
    cmd = ['wrk', '-t%d' % args.threads, '-c%d' % args.devices, '-d%ds' % args.duration, '--timeout', '5s',
           '-s', os.path.join(directory, 'storm.lua'), 'https://127.0.0.1:%d' % port, '--',
           os.path.join(directory, 'tokens.txt')]
    print('%s: %s' % (label, ' '.join(cmd[:-3])), flush=True)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60, check=False)
    finally:
        probe.stop.set()
        probe.join(15)
    line = next((l for l in out.stdout.splitlines() if l.startswith('WRKJSON ')), None)
    if line is None:
        raise SystemExit('wrk failed: %s %s' % (out.stdout, out.stderr))
    res = json.loads(line[8:])
    res['rps'] = res['requests'] / (res['duration_us'] / 1e6)
    res['errors'] = res['connect'] + res['read'] + res['write'] + res['timeout']
    res['probe_samples'] = probe.samples
    res['probe_p50_ms'] = pct(probe.samples, 50) * 1000
    res['probe_p99_ms'] = pct(probe.samples, 99) * 1000
    res['probe_n'] = len(probe.samples)
    res['probe_errors'] = probe.errors
    res['probe_failures'] = probe.failures
    return res


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--devices', type=int, default=2000, help='concurrent devices (wrk connections)')
    parser.add_argument('--duration', type=int, default=10, help='seconds per run')
    parser.add_argument('--rounds', type=int, default=2, help='runs per server, interleaved')
    parser.add_argument('--workers', type=int, default=len(os.sched_getaffinity(0)),
                        help='API worker processes and nginx workers (same for both)')
    parser.add_argument('--max-connections', type=int, help="the API's max_connections per worker (default: its own)")
    parser.add_argument('--threads', type=int, default=2, help='wrk threads')
    parser.add_argument('--api-nice', type=int, default=0, help='nice value of the API behind nginx')
    parser.add_argument('--api-workers', type=int, default=0,
                        help='worker processes of the API behind nginx (default: --workers)')
    parser.add_argument('--front-keepalive', type=int, default=256,
                        help="idle upstream connections nginx keeps per worker (the role's: 256)")
    parser.add_argument('--only', choices=('api', 'front', 'nginx'), action='append',
                        help='run only these servers (default: all three)')
    parser.add_argument('--json', help='also write the results to this file')
    args = parser.parse_args()

    nginx = ensure_tools()
    directory = tempfile.mkdtemp(prefix='boot-storm-')
    procs = []
    try:
        make_pki(directory)
        write_fixture(directory, args.devices)
        api_port, nginx_port, front_port = free_port(), free_port(), free_port()
        api_proc = start_api(directory, api_port, args.workers, args.max_connections)
        procs.append(api_proc)
        wait_port(api_port, api_proc)
        ca = os.path.join(directory, 'ca.crt')
        api = Api(api_port, ca)
        t0 = time.monotonic()
        requests_ = populate(api, args.devices)
        print('populated %d assignments + tokens through the API in %.1f s'
              % (args.devices, time.monotonic() - t0), flush=True)
        with open(os.path.join(directory, 'tokens.txt'), 'w', encoding='utf-8') as handle:
            handle.writelines('%s %s\n' % pair for pair in requests_)
        with open(os.path.join(directory, 'storm.lua'), 'w', encoding='utf-8') as handle:
            handle.write(WRK_SCRIPT)
        # nginx serves the very bytes the API answers for one device.
        status, body = api.call('GET', '/api/v1/boot/' + requests_[0][0], token=requests_[0][1])
        assert status == 200, (status, body)
        os.makedirs(os.path.join(directory, 'www'))
        with open(os.path.join(directory, 'www', 'boot.json'), 'wb') as handle:
            handle.write(body)
        with open(os.path.join(directory, 'nginx.conf'), 'w', encoding='utf-8') as handle:
            handle.write(NGINX_CONF.format(workers=args.workers, dir=directory, port=nginx_port, front_port=front_port,
                                           tls=NGINX_TLS.format(dir=directory), keepalive=args.front_keepalive))
        # The API again, as the application behind nginx (same database).
        unix_proc = start_api(directory, api_port, args.api_workers or args.workers, args.max_connections,
                              unix_socket=os.path.join(directory, 'api.sock'), nice=args.api_nice)
        procs.append(unix_proc)
        deadline = time.monotonic() + 20
        while not os.path.exists(os.path.join(directory, 'api.sock')):
            if unix_proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit('the API on a Unix socket did not start')
            time.sleep(0.1)
        nginx_proc = subprocess.Popen([nginx, '-c', os.path.join(directory, 'nginx.conf'), '-p', directory,
                                       '-e', os.path.join(directory, 'nginx-error.log')],
                                      start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(nginx_proc)
        wait_port(nginx_port, nginx_proc)
        status, front_body = Api(front_port, os.path.join(directory, 'ca.crt')).call(
            'GET', '/api/v1/boot/' + requests_[0][0], token=requests_[0][1])
        assert (status, front_body) == (200, body), (status, front_body[:300])
        print('boot record: %d bytes; %d devices, %d s per server, %d workers each, new TLS connection per request'
              % (len(body), args.devices, args.duration, args.workers), flush=True)

        # Interleaved rounds (API, nginx, nginx, API, ...) so that a change in
        # background load hits both servers alike.
        labels = tuple(l for l in ('api', 'front', 'nginx') if not args.only or l in args.only or l == 'nginx')
        names = {'api': 'vdisk-api', 'front': 'nginx+api', 'nginx': 'nginx static'}
        ports = {'api': api_port, 'front': front_port, 'nginx': nginx_port}
        runs = {label: [] for label in labels}
        for rnd in range(args.rounds):
            order = labels if rnd % 2 == 0 else labels[::-1]
            for label in order:
                port = ports[label]
                runs[label].append(storm('%s (round %d)' % (label, rnd + 1), port, ca, directory, requests_, args))
                time.sleep(2)  # let TIME_WAIT and queues settle between runs

        print()
        header = '%-16s %9s %9s %9s %9s %8s %8s %13s %13s' % (
            'server', 'req/s', 'p50 ms', 'p99 ms', 'max ms', 'errors', 'non-2xx', 'probe p50 ms', 'probe p99 ms')
        print(header)
        results = {}
        for label in labels:
            name = names[label]
            for i, r in enumerate(runs[label]):
                print('%-16s %9.0f %9.2f %9.2f %9.1f %8d %8d %13.1f %13.1f' % (
                    '%s #%d' % (name, i + 1), r['rps'], r['p50_us'] / 1000.0, r['p99_us'] / 1000.0,
                    r['max_us'] / 1000.0, r['errors'] + r['probe_errors'], r['status'], r['probe_p50_ms'],
                    r['probe_p99_ms']))
            total = sum(r['requests'] for r in runs[label])
            seconds = sum(r['duration_us'] for r in runs[label]) / 1e6
            results[label] = {
                'rps': total / seconds,
                'p50_ms': max(r['p50_us'] for r in runs[label]) / 1000.0,
                'p99_ms': max(r['p99_us'] for r in runs[label]) / 1000.0,
                'errors': sum(r['errors'] + r['probe_errors'] for r in runs[label]),
                'non_2xx': sum(r['status'] for r in runs[label]),
                # The arriving device: every probe of every round together.
                'probe_p50_ms': pct([x for r in runs[label] for x in r['probe_samples']], 50) * 1000,
                'probe_p99_ms': pct([x for r in runs[label] for x in r['probe_samples']], 99) * 1000,
                'probe_n': sum(r['probe_n'] for r in runs[label]),
                'runs': runs[label],
            }
        print('-' * len(header))
        for label in labels:
            r = results[label]
            print('%-16s %9.0f %9.2f %9.2f %9s %8d %8d %13.1f %13.1f' % (
                names[label], r['rps'], r['p50_ms'], r['p99_ms'], '', r['errors'],
                r['non_2xx'], r['probe_p50_ms'], r['probe_p99_ms']))
        verdicts = []
        for label in labels[:-1]:
            r = results[label]
            ratio = r['rps'] / results['nginx']['rps']
            results[label]['ratio'] = ratio
            # Issue 10's targets: 90% of nginx's req/s, no error, arriving device p99 < 250 ms.
            ok = ratio >= 0.9 and r['probe_p99_ms'] < 250 and r['errors'] == 0 and r['non_2xx'] == 0
            verdicts.append(ok)
            print('\n%s / nginx static: throughput %.2f (target >= 0.90); arriving device p99 %.1f ms '
                  '(target < 250 ms); errors %d, non-2xx %d: %s' % (
                      names[label], ratio, r['probe_p99_ms'], r['errors'], r['non_2xx'], 'PASS' if ok else 'FAIL'))
        ok = any(verdicts)
        for label in labels:
            for r in runs[label]:
                if r['probe_failures']:
                    print('%s probe failures: %s' % (names[label], r['probe_failures']))
        print('totals: req/s over all rounds; p50/p99: the worst round; probe: all rounds\' probes together. '
              'errors = wrk socket errors '
              '(connect/read/write/timeout) + probe failures; wrk latency starts after the TLS handshake, '
              'the probe (a new connection every 50 ms) includes connect + handshake.')
        if args.json:
            with open(args.json, 'w', encoding='utf-8') as handle:
                json.dump(results, handle, indent=2)
        return 0 if ok else 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
