# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Service configuration: one JSON file (no YAML parser on a stdlib-only host)."""

from __future__ import annotations

import json
import os
import stat

from vdisk_api import rules

DEFAULTS = {
    'address': '0.0.0.0',
    'port': 8443,
    # A path: listen there for plain HTTP instead of HTTPS on address:port,
    # behind a TLS front (nginx) on the same host. Under systemd the socket
    # comes from vdisk-api.socket (socket activation) instead.
    'unix_socket': '',
    # 0: one worker process per CPU. TLS handshakes are CPU-bound and the GIL
    # serializes them within a process, so the storm scales with processes.
    'workers': 0,
    'tls_cert': '/etc/clusterducks/vdisk-api/tls/server.crt',
    'tls_key': '/etc/clusterducks/vdisk-api/tls/server.key',
    'database': '/var/lib/clusterducks/vdisk-api/state.db',
    'admin_token_file': '/etc/clusterducks/vdisk-api/admin-tokens',
    'lio_save_file': '/etc/rtslib-fb-target/saveconfig.json',
    'pool_path': '/srv/vdisks',
    # Portals saved as 0.0.0.0 (listen everywhere) are replaced by these
    # addresses in boot records: a device cannot log in to 0.0.0.0.
    'advertised_portals': [],
    'initiator_iqn_prefix': rules.DEFAULT_IQN_PREFIX,
    'max_body_bytes': 64 * 1024,
    'backlog': 4096,
    # Per worker, when the service serves HTTPS itself: connections in
    # progress (handshake or open). More wait in the kernel's accept queue
    # (backlog), first come first served. Behind the front (unix_socket) the
    # front bounds the connections and this is not used.
    'max_connections': 64,
    'log_level': 'info',
}


class ConfigError(Exception):
    pass


def load(path):
    try:
        with open(path, encoding='utf-8') as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ConfigError('cannot read configuration %s: %s' % (path, exc))
    if not isinstance(data, dict):
        raise ConfigError('configuration %s must be a JSON object' % path)
    unknown = set(data) - set(DEFAULTS)
    if unknown:
        raise ConfigError('unknown configuration keys in %s: %s' % (path, ', '.join(sorted(unknown))))
    config = dict(DEFAULTS)
    config.update(data)
    for key in ('port', 'workers', 'max_body_bytes', 'backlog', 'max_connections'):
        if not isinstance(config[key], int) or isinstance(config[key], bool) or config[key] < 0:
            raise ConfigError('%s must be a non-negative integer' % key)
    if config['max_connections'] < 1:
        raise ConfigError('max_connections must be at least 1')
    if not isinstance(config['unix_socket'], str):
        raise ConfigError('unix_socket must be a string')
    if config['unix_socket'] and not os.path.isabs(config['unix_socket']):
        raise ConfigError('unix_socket must be an absolute path')
    if not 0 < config['port'] < 65536:
        raise ConfigError('port must be 1-65535')
    if not isinstance(config['advertised_portals'], list):
        raise ConfigError('advertised_portals must be a list of IP addresses (optionally ip:port)')
    for portal in config['advertised_portals']:
        try:
            rules.split_portal(portal)
        except rules.RuleError as exc:
            raise ConfigError('advertised_portals: %s (IPv4, IPv4:PORT, IPv6 or [IPv6]:PORT)' % exc)
    if config['workers'] == 0:
        config['workers'] = max(1, len(os.sched_getaffinity(0)))
    return config


def read_admin_token_file(path):
    """Admin tokens, one per line: a token, or 'sha256:<hex>' of a token.

    The file must not be readable by group or others (like ssh keys): a
    world-readable admin token is refused rather than silently used.
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ConfigError('cannot read admin token file %s: %s' % (path, exc))
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise ConfigError('admin token file %s is accessible by group or others (mode %o); chmod 0600 it'
                          % (path, stat.S_IMODE(info.st_mode)))
    with open(path, encoding='utf-8') as handle:
        lines = [line.strip() for line in handle]
    return [line for line in lines if line and not line.startswith('#')], info.st_mtime_ns
