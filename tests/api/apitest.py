# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Helpers to run the real storage API on 127.0.0.1 for tests: real TLS (a throw-away
ECDSA CA made with openssl), a real SQLite file, a fixture LIO save file and
pool directory. Nothing is mocked: tests talk HTTPS to the process."""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time

import requests

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVICE_DIR = os.path.join(REPO, 'roles', 'storage_api', 'files')
# The service must run on Debian's python3 with Debian packages only.
SERVICE_PYTHON = '/usr/bin/python3' if os.path.exists('/usr/bin/python3') else sys.executable

ADMIN_TOKEN = 'admin-test-token-0123456789abcdef0123456789abcdef'
ADMIN_TOKEN_2 = 'second-admin-token-fedcba9876543210'
PREFIX = 'iqn.2024-01.org.clusterducks.device'
T1 = 'iqn.2003-01.org.linux-iscsi.storage:vdisk-node01'
T2 = 'iqn.2003-01.org.linux-iscsi.storage:vdisk-node02'
T3 = 'iqn.2003-01.org.linux-iscsi.storage:vdisk-shared'


def _acl(iqn, lun, user=None, password=None, muser=None, mpassword=None):
    luns = lun if isinstance(lun, list) else [lun]
    acl = {'node_wwn': iqn, 'attributes': {}, 'mapped_luns': [
        {'index': i, 'tpg_lun': tpg_lun, 'write_protect': False, 'alias': 'abc'} for i, tpg_lun in enumerate(luns)]}
    if user:
        acl.update(chap_userid=user, chap_password=password)
    if muser:
        acl.update(chap_mutual_userid=muser, chap_mutual_password=mpassword)
    return acl


def _so(name, wwn):
    return {'name': name, 'plugin': 'fileio', 'dev': '/srv/vdisks/%s/disk.img' % name, 'size': 1073741824,
            'wwn': wwn, 'write_back': False, 'aio': True, 'alua_tpgs': [], 'attributes': {}}


def _target(wwn, luns, acls, portal='10.77.0.10', enable=True):
    return {'wwn': wwn, 'fabric': 'iscsi', 'tpgs': [{
        'tag': 1, 'enable': enable, 'attributes': {'authentication': 1}, 'parameters': {},
        'portals': [{'ip_address': portal, 'port': 3260, 'iser': False, 'offload': False}],
        'luns': [{'index': i, 'storage_object': '/backstores/fileio/%s' % so, 'alias': 'x',
                  'alua_tg_pt_gp_name': 'default_tg_pt_gp'} for i, so in luns],
        'node_acls': acls}]}


def saveconfig():
    """An rtslib RTSRoot.dump() as Debian saves it."""
    return {
        'fabric_modules': [],
        'storage_objects': [_so('node01', 'wwn-node01'), _so('node02', 'wwn-node02'), _so('node03', 'wwn-node03'),
                            _so('noacl', 'wwn-noacl'), _so('shared', 'wwn-shared'), _so('lonely', 'wwn-lonely'),
                            _so('quote', "wwn-it's")],
        'targets': [
            _target(T1, [(0, 'node01'), (1, 'noacl')],
                    [_acl(PREFIX + ':node01', 0, 'node01-user', 'node01-secret', 'node01-muser', 'node01-msecret')]),
            _target(T2, [(0, 'node02'), (1, 'node03'), (2, 'quote')],
                    [_acl(PREFIX + ':node02', 0, 'node02-user', 'node02-secret'),
                     _acl('iqn.2005-03.org.open-iscsi:custom03', [1, 2]),
                     _acl(PREFIX + ':quote', 2, "it's", "pa ss'word$(x)")],
                    portal='0.0.0.0'),
            _target(T3, [(0, 'shared')], []),
            _target('iqn.2003-01.org.linux-iscsi.storage:vdisk-shared-b', [(0, 'shared')], []),
        ],
    }


VDISKS = {
    'node01': {'filesystem': 'xfs', 'partitions': []},
    'node02': {'filesystem': 'none', 'partitions': [
        {'number': 1, 'size_bytes': 512 << 20, 'filesystem': 'xfs'},
        {'number': 2, 'size_bytes': 256 << 20, 'filesystem': 'ext4'},
        {'number': 3, 'size_bytes': 256 << 20, 'filesystem': 'none'}]},
    'node03': {'filesystem': 'xfs', 'partitions': [], 'write_through': True},
    'noacl': {'filesystem': 'xfs', 'partitions': []},
    'shared': {'filesystem': 'xfs', 'partitions': []},
    'lonely': {'filesystem': 'xfs', 'partitions': []},
    'quote': {'filesystem': 'xfs', 'partitions': []},
    'unexported': {'filesystem': 'xfs', 'partitions': []},
}


def write_pool(pool):
    for name, meta in VDISKS.items():
        os.makedirs(os.path.join(pool, name), exist_ok=True)
        doc = dict(copy.deepcopy(meta), name=name, wwn='wwn-' + name, size_bytes=1073741824)
        with open(os.path.join(pool, name, 'vdisk.json'), 'w', encoding='utf-8') as handle:
            json.dump(doc, handle)


def make_pki(directory):
    """A CA and an ECDSA P-256 server certificate for 127.0.0.1/localhost."""
    def openssl(*args):
        subprocess.run(('openssl',) + args, check=True, capture_output=True, cwd=directory)
    openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
            '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=vdisk-api test CA')
    openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
            '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost')
    with open(os.path.join(directory, 'ext.cnf'), 'w', encoding='utf-8') as handle:
        handle.write('subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n')
    openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
            '-out', 'server.crt', '-days', '2', '-extfile', 'ext.cnf')
    return os.path.join(directory, 'ca.crt')


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


ROLE_DIR = os.path.join(REPO, 'roles', 'storage_api')
NGINX = '/usr/sbin/nginx'


def render_front_config(path, variables):
    """The role's own nginx configuration template, rendered with its defaults
    and ``variables`` (the tests run the front exactly as the role writes it)."""
    import jinja2  # pylint: disable=import-outside-toplevel
    import yaml  # pylint: disable=import-outside-toplevel
    with open(os.path.join(ROLE_DIR, 'defaults', 'main.yml'), encoding='utf-8') as handle:
        context = yaml.safe_load(handle)
    with open(os.path.join(ROLE_DIR, 'vars', 'main.yml'), encoding='utf-8') as handle:
        context.update(yaml.safe_load(handle))
    context.update(variables, ansible_managed='rendered by tests/api')
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(ROLE_DIR, 'templates')),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters['basename'] = os.path.basename
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write(env.get_template('front-nginx.conf.j2').render(context))


class Front:
    """The API's TLS front: Debian's nginx with the role's configuration."""

    def __init__(self, root, pki_dir, socket_path, port, workers=2, **variables):
        self.root = root
        self.conf = os.path.join(root, 'front-nginx.conf')
        self.log = os.path.join(root, 'front.log')
        self.proc = None
        run = os.path.join(root, 'run')
        tls = os.path.join(root, 'tls')
        for directory in (run, tls):
            os.makedirs(directory, exist_ok=True)
        for name in ('server.crt', 'server.key'):
            if not os.path.exists(os.path.join(tls, name)):
                os.symlink(os.path.join(pki_dir, name), os.path.join(tls, name))
        settings = {'storage_api_address': '127.0.0.1', 'storage_api_port': port, 'storage_api_workers': workers,
                    'storage_api_log_level': 'info', 'storage_api_config_dir': root, 'storage_api_socket': socket_path,
                    '_storage_api_front_run': run, 'storage_api_front_worker_connections': 8192}
        settings.update(variables)
        render_front_config(self.conf, settings)

    def start(self):
        import resource  # pylint: disable=import-outside-toplevel

        def limits():
            # As the unit's LimitNOFILE does (nginx takes the limit it is given).
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        with open(self.log, 'ab') as log:
            # As root here, nginx would run its workers as nobody, who cannot reach the socket.
            self.proc = subprocess.Popen([NGINX, '-e', 'stderr', '-c', self.conf, '-g', 'daemon off; user root root;'],
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=limits)  # pylint: disable=subprocess-popen-preexec-fn
        return self

    def pids(self):
        out = subprocess.run(['pgrep', '-g', str(self.proc.pid)], capture_output=True, text=True, check=False)
        return [int(pid) for pid in out.stdout.split()]

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)


class Service:
    """One storage API process tree (parent + workers) behind its TLS front on 127.0.0.1."""

    def __init__(self, root, pki_dir, workers=2, **front_variables):
        self.root = root
        self.ca = os.path.join(pki_dir, 'ca.crt')
        self.port = free_port()
        self.url = 'https://127.0.0.1:%d' % self.port
        self.socket = os.path.join(root, 'api.sock')
        self.front = Front(os.path.join(root, 'front'), pki_dir, self.socket, self.port, workers, **front_variables)
        self.db = os.path.join(root, 'state', 'state.db')
        self.save_file = os.path.join(root, 'saveconfig.json')
        self.pool = os.path.join(root, 'pool')
        self.admin_file = os.path.join(root, 'admin-tokens')
        self.log = os.path.join(root, 'service.log')
        self.proc = None
        os.makedirs(root, exist_ok=True)
        if not os.path.exists(self.save_file):
            with open(self.save_file, 'w', encoding='utf-8') as handle:
                json.dump(saveconfig(), handle)
            write_pool(self.pool)
            with open(self.admin_file, 'w', encoding='utf-8') as handle:
                handle.write('# admin tokens\n%s\nsha256:%s\n' % (
                    ADMIN_TOKEN, __import__('hashlib').sha256(ADMIN_TOKEN_2.encode()).hexdigest()))
            os.chmod(self.admin_file, 0o600)
        self.config = os.path.join(root, 'config.json')
        with open(self.config, 'w', encoding='utf-8') as handle:
            json.dump({'address': '127.0.0.1', 'port': self.port, 'workers': workers, 'unix_socket': self.socket,
                       'tls_cert': os.path.join(pki_dir, 'server.crt'),
                       'tls_key': os.path.join(pki_dir, 'server.key'),
                       'database': self.db, 'admin_token_file': self.admin_file,
                       'lio_save_file': self.save_file, 'pool_path': self.pool,
                       'advertised_portals': ['10.77.0.10', '10.77.1.10'],
                       'initiator_iqn_prefix': PREFIX}, handle)

    def start(self):
        env = dict(os.environ, PYTHONPATH=SERVICE_DIR, PYTHONDONTWRITEBYTECODE='1')
        with open(self.log, 'ab') as log:
            self.proc = subprocess.Popen([SERVICE_PYTHON, '-m', 'vdisk_api', '--config', self.config],
                                         stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        if self.front.proc is None or self.front.proc.poll() is not None:
            self.front.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('service exited: %s' % self.read_log())
            try:
                if requests.get(self.url + '/healthz', verify=self.ca, timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError('service did not come up: %s' % self.read_log())

    def read_log(self):
        text = ''
        for path in (self.log, self.front.log):
            if os.path.exists(path):
                with open(path, encoding='utf-8', errors='replace') as handle:
                    text += handle.read()
        return text

    def kill(self, sig=signal.SIGKILL):
        # The whole process group: parent and workers (a real power-cut of the service).
        os.killpg(self.proc.pid, sig)
        self.proc.wait(10)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.kill(signal.SIGTERM)
        self.front.stop()

    def session(self, token=ADMIN_TOKEN):
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        session.verify = self.ca
        if token:
            session.headers['Authorization'] = 'Bearer ' + token
        return session
