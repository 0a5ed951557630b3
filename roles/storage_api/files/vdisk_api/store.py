# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""SQLite state: assignments and device tokens.

Durability: WAL with synchronous=FULL, so every commit is fsync'd before the
API answers 2xx. WAL+NORMAL would already survive a kill -9 of the service
(committed pages sit in the OS page cache), but not a power cut; writes are
rare admin operations, so the fsync per commit costs nothing that matters,
and boot discovery only reads.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sqlite3
import time

TOKEN_PREFIX = 'cdv1'
BUSY_TIMEOUT_MS = 5000

# Append-only: version N is reached by running MIGRATIONS[N - 1] in one
# transaction. Never edit a released step; add a new one.
MIGRATIONS = [
    [
        """CREATE TABLE assignments (
            device TEXT PRIMARY KEY,
            vdisk TEXT NOT NULL UNIQUE,
            target TEXT NOT NULL,
            initiator_iqn TEXT NOT NULL UNIQUE,
            overlay_enabled INTEGER NOT NULL,
            overlay_lower TEXT NOT NULL,
            overlay_upper TEXT,
            overlay_work TEXT,
            mounts TEXT NOT NULL,
            frozen INTEGER NOT NULL,
            revision INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        """CREATE TABLE device_tokens (
            id TEXT PRIMARY KEY,
            device TEXT NOT NULL,
            name TEXT NOT NULL,
            secret_sha256 BLOB NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (device, name)
        )""",
    ],
    # 2: token rotation. A token replaced by a newer one of the same device
    # and name (replaced_by = its id) stays valid until it is revoked, so a
    # client can deliver the new token before it revokes the old one; only
    # the current tokens (replaced_by IS NULL) must have unique names.
    [
        """CREATE TABLE device_tokens_2 (
            id TEXT PRIMARY KEY,
            device TEXT NOT NULL,
            name TEXT NOT NULL,
            secret_sha256 BLOB NOT NULL,
            created_at TEXT NOT NULL,
            replaced_by TEXT
        )""",
        """INSERT INTO device_tokens_2 (id, device, name, secret_sha256, created_at)
           SELECT id, device, name, secret_sha256, created_at FROM device_tokens""",
        """DROP TABLE device_tokens""",
        """ALTER TABLE device_tokens_2 RENAME TO device_tokens""",
        """CREATE UNIQUE INDEX device_tokens_current_name ON device_tokens (device, name)
           WHERE replaced_by IS NULL""",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


class Conflict(Exception):
    """A uniqueness rule would be broken (HTTP 409)."""


class SchemaError(Exception):
    pass


def _now():
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())


def connect(path):
    # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE), so a
    # writer takes the lock before reading what it will change.
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000.0, isolation_level=None,
                           check_same_thread=False)
    conn.execute('PRAGMA busy_timeout = %d' % BUSY_TIMEOUT_MS)
    conn.execute('PRAGMA synchronous = FULL')
    conn.execute('PRAGMA foreign_keys = ON')
    return conn


def migrate(path):
    """Create or upgrade the database; returns the schema version."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    old_umask = os.umask(0o077)  # the database and its -wal/-shm files: owner only
    try:
        conn = connect(path)
        mode = conn.execute('PRAGMA journal_mode = WAL').fetchone()[0]
        if mode.lower() != 'wal':
            raise SchemaError('cannot switch %s to WAL mode (got %s)' % (path, mode))
        conn.execute('BEGIN IMMEDIATE')
        try:
            conn.execute('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL)')
            row = conn.execute('SELECT MAX(version) FROM schema_version').fetchone()
            current = row[0] or 0
            if current > SCHEMA_VERSION:
                raise SchemaError('database %s has schema version %d, newer than this service (%d)'
                                  % (path, current, SCHEMA_VERSION))
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version - 1]:
                    conn.execute(statement)
                conn.execute('INSERT INTO schema_version (version, applied_at) VALUES (?, ?)', (version, _now()))
            conn.execute('COMMIT')
        except BaseException:
            conn.execute('ROLLBACK')
            raise
        conn.close()
    finally:
        os.umask(old_umask)
    return SCHEMA_VERSION


def hash_secret(secret):
    # Device tokens carry 256 random bits: a plain SHA-256 cannot be brute
    # forced, so a slow KDF (for low-entropy passwords) would only slow boots.
    return hashlib.sha256(secret.encode('utf-8')).digest()


def split_token(token):
    """'cdv1.<id>.<secret>' -> (id, secret), or None if not a device token."""
    parts = token.split('.')
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or len(parts[1]) != 16 or not parts[2]:
        return None
    return parts[1], parts[2]


_ASSIGNMENT_COLUMNS = ('device, vdisk, target, initiator_iqn, overlay_enabled, overlay_lower, overlay_upper, '
                       'overlay_work, mounts, frozen, revision, created_at, updated_at')


def _assignment(row):
    return {
        'device': row[0],
        'vdisk': row[1],
        'target': row[2],
        'initiator_iqn': row[3],
        'overlayfs': {'enabled': bool(row[4]), 'lower': row[5], 'upper': row[6], 'work': row[7]},
        'mounts': json.loads(row[8]),
        'frozen': bool(row[9]),
        'revision': row[10],
        'created_at': row[11],
        'updated_at': row[12],
    }


_TOKEN_COLUMNS = 'id, device, name, created_at, replaced_by'


def _token(row):
    return {'id': row[0], 'device': row[1], 'name': row[2], 'created_at': row[3], 'replaced_by': row[4]}


# Fields the client controls; revision and timestamps are the server's.
ASSIGNMENT_FIELDS = ('device', 'vdisk', 'target', 'initiator_iqn', 'overlayfs', 'mounts', 'frozen')


def same_assignment(a, b):
    return all(a.get(k) == b.get(k) for k in ASSIGNMENT_FIELDS)


class Store:
    """One SQLite connection. Use one Store per thread."""

    def __init__(self, path):
        self.path = path
        self.conn = connect(path)
        self.writes = 0  # committed write transactions, for /metrics

    def close(self):
        self.conn.close()

    def data_version(self):
        # Changes whenever another connection (any process) commits: the
        # boot-record cache is valid while this stays the same.
        return self.conn.execute('PRAGMA data_version').fetchone()[0]

    def check(self):
        self.conn.execute('SELECT 1 FROM schema_version LIMIT 1').fetchone()

    # -- reads -------------------------------------------------------------

    def get_assignment(self, device):
        row = self.conn.execute('SELECT %s FROM assignments WHERE device = ?' % _ASSIGNMENT_COLUMNS,
                                (device,)).fetchone()
        return _assignment(row) if row else None

    def list_assignments(self, device=None, vdisk=None):
        sql = 'SELECT %s FROM assignments' % _ASSIGNMENT_COLUMNS
        where, args = [], []
        if device is not None:
            where.append('device = ?')
            args.append(device)
        if vdisk is not None:
            where.append('vdisk = ?')
            args.append(vdisk)
        if where:
            sql += ' WHERE ' + ' AND '.join(where)
        return [_assignment(r) for r in self.conn.execute(sql + ' ORDER BY device', args)]

    def assigned_vdisks(self):
        return dict(self.conn.execute('SELECT vdisk, device FROM assignments'))

    def list_tokens(self, device=None):
        sql = 'SELECT %s FROM device_tokens' % _TOKEN_COLUMNS
        args = ()
        if device is not None:
            sql += ' WHERE device = ?'
            args = (device,)
        return [_token(r) for r in self.conn.execute(sql + ' ORDER BY device, name, created_at, id', args)]

    def get_token(self, token_id):
        row = self.conn.execute('SELECT %s FROM device_tokens WHERE id = ?' % _TOKEN_COLUMNS,
                                (token_id,)).fetchone()
        return _token(row) if row else None

    def token_row(self, token_id):
        """(secret_sha256, device) of a device token id, or None."""
        row = self.conn.execute('SELECT secret_sha256, device FROM device_tokens WHERE id = ?',
                                (token_id,)).fetchone()
        return (bytes(row[0]), row[1]) if row else None

    # -- writes (each one transaction, fsync'd before returning) -----------

    def _write(self, func):
        self.conn.execute('BEGIN IMMEDIATE')
        try:
            result = func()
            self.conn.execute('COMMIT')
        except BaseException:
            self.conn.execute('ROLLBACK')
            raise
        self.writes += 1
        return result

    def put_assignment(self, record):
        """Create or replace; returns (stored record, created, changed)."""
        def run():
            old = self.get_assignment(record['device'])
            if old is not None and same_assignment(old, record):
                return old, False, False
            for column, value, what in (('vdisk', record['vdisk'], 'vDisk'),
                                        ('initiator_iqn', record['initiator_iqn'], 'initiator IQN')):
                row = self.conn.execute('SELECT device FROM assignments WHERE %s = ? AND device != ?' % column,
                                        (value, record['device'])).fetchone()
                if row:
                    raise Conflict('%s %s is already assigned to device %s' % (what, value, row[0]))
            now = _now()
            ov = record['overlayfs']
            values = (record['vdisk'], record['target'], record['initiator_iqn'], int(ov['enabled']),
                      ov['lower'], ov['upper'], ov['work'], json.dumps(record['mounts']), int(record['frozen']))
            if old is None:
                self.conn.execute(
                    'INSERT INTO assignments (%s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)'
                    % _ASSIGNMENT_COLUMNS, (record['device'],) + values + (now, now))
            else:
                self.conn.execute(
                    'UPDATE assignments SET vdisk = ?, target = ?, initiator_iqn = ?, overlay_enabled = ?, '
                    'overlay_lower = ?, overlay_upper = ?, overlay_work = ?, mounts = ?, frozen = ?, '
                    'revision = revision + 1, updated_at = ? WHERE device = ?',
                    values + (now, record['device']))
            return self.get_assignment(record['device']), old is None, True
        return self._write(run)

    def delete_assignment(self, device):
        return self._write(lambda: self.conn.execute('DELETE FROM assignments WHERE device = ?',
                                                     (device,)).rowcount > 0)

    def create_token(self, device, name, replaces=None):
        """Returns (metadata, token). The token is only known here, once.

        With ``replaces`` (the id of the device's current token of that name)
        the new token takes the name and the old one stays valid, marked
        ``replaced_by`` the new one, until it is revoked.
        """
        token_id = secrets.token_hex(8)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode('ascii').rstrip('=')

        def run():
            if replaces is not None:
                row = self.conn.execute('SELECT device, name, replaced_by FROM device_tokens WHERE id = ?',
                                        (replaces,)).fetchone()
                if row is None or tuple(row) != (device, name, None):
                    raise Conflict('token %s is not the current token named %s of device %s'
                                   % (replaces, name, device))
                self.conn.execute('UPDATE device_tokens SET replaced_by = ? WHERE id = ?', (token_id, replaces))
            try:
                self.conn.execute('INSERT INTO device_tokens (id, device, name, secret_sha256, created_at) '
                                  'VALUES (?, ?, ?, ?, ?)', (token_id, device, name, hash_secret(secret), _now()))
            except sqlite3.IntegrityError:
                raise Conflict('device %s already has a token named %s' % (device, name))
            return self.get_token(token_id)
        meta = self._write(run)
        return meta, '%s.%s.%s' % (TOKEN_PREFIX, token_id, secret)

    def delete_token(self, token_id):
        """Revoke a token. A token it replaced takes its place: if the revoked one was the
        current token of its name, the newest token it replaced is current again (it was
        valid all along); otherwise the tokens it replaced point at its replacement."""
        def run():
            row = self.conn.execute('SELECT replaced_by FROM device_tokens WHERE id = ?', (token_id,)).fetchone()
            if row is None:
                return False
            successor = row[0]
            replaced = [r[0] for r in self.conn.execute(
                'SELECT id FROM device_tokens WHERE replaced_by = ? ORDER BY created_at DESC, id DESC', (token_id,))]
            self.conn.execute('DELETE FROM device_tokens WHERE id = ?', (token_id,))
            if replaced and successor is None:
                successor = replaced.pop(0)
                self.conn.execute('UPDATE device_tokens SET replaced_by = NULL WHERE id = ?', (successor,))
            for other in replaced:
                self.conn.execute('UPDATE device_tokens SET replaced_by = ? WHERE id = ?', (successor, other))
            return True
        return self._write(run)
