# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The vDisk pool: where a vDisk's bytes and metadata live on the storage host.

This is the one place that knows which backend holds the vDisks. Everything
else sees a ``Pool`` and ``VdiskRecord``s and exports ``record.backing`` as a
LIO backstore of type ``record.backstore``.

Backends (``open_pool`` picks one from the pool spec):
- ``lvm-thin:VG/POOL``, the default path (docs/data-path.md has the
  measurements): one thin logical volume per vDisk, exported as a block
  backstore. Flushes and FUA reach the disk through dm-thin, so the initiator
  may keep a write cache; growing is ``lvextend`` with no backstore recreate;
  thin snapshots are cheap. 64 KiB chunks, zeroing off (the role makes the pool).
  A vDisk with ``write_through`` is exported as a fileio backstore on its
  thin volume instead, write-back and AIO off: every write is O_DSYNC, so the
  pool commits a new chunk's mapping before LIO answers, and a storage host
  that dies cannot take back a write it acknowledged (docs/data-path.md,
  "Write-through").
- a path (a mounted btrfs filesystem): one subvolume per vDisk holding a
  sparse nodatacow file exported as a fileio backstore, and ``vdisk.json``.
  The path of hosts set up before LVM thin; kept, and ``migrate_from`` moves
  its vDisks to an LVM thin pool.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import time
import uuid

from ansible_collections.clusterducks.vdisk.plugins.module_utils import pool_layout, rules, thin_snapshots
from ansible_collections.clusterducks.vdisk.plugins.module_utils.atomic import write_json_atomic
from ansible_collections.clusterducks.vdisk.plugins.module_utils.validation import (
    SIZE_ALIGN,
    ValidationError,
    check_name,
    format_size,
    parse_size,
)

METADATA = pool_layout.METADATA
BACKING = pool_layout.BACKING
FILESYSTEMS = ('xfs', 'ext4', 'none')
# mkfs.xfs (xfsprogs >= 5.19) refuses filesystems under 300 MiB.
MIN_FS_SIZE = {'xfs': 300 << 20, 'ext4': 8 << 20, 'none': SIZE_ALIGN}
# GPT: 1 MiB before the first partition (alignment, primary table) and the
# backup table in the last MiB.
GPT_OVERHEAD = 2 << 20
BTRFS_MAGIC = 'btrfs'
LVM_THIN = pool_layout.LVM_THIN
# A vDisk's logical volume is vdisk-NAME: the prefix keeps vDisks apart from
# the thin pool and any other volume of the group.
LV_PREFIX = 'vdisk-'
LVM_NAME_RE = re.compile(r'[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}')
# lvm(8), VALID NAMES: LVM refuses volume names that contain these.
LVM_RESERVED = ('_cdata', '_cmeta', '_corig', '_iorig', '_mimage', '_mlog', '_pmspare', '_rimage', '_rmeta',
                '_tdata', '_tmeta', '_vdata', '_vorigin', '_wcorig')
# No new vDisk and no grow once the thin pool's data or metadata is this full:
# a full thin pool fails every write of every vDisk in it.
POOL_FULL_PERCENT = 90.0


class PoolError(Exception):
    """The pool cannot do what was asked; the message is user-facing."""


class VdiskRecord(object):
    """What the pool knows of one vDisk; ``backstore`` is the LIO plugin that exports it."""

    def __init__(self, name, backing, size_bytes, wwn, filesystem, partitions, created=None, backstore='fileio',
                 write_through=None):
        self.name = name
        self.backing = backing
        self.size_bytes = size_bytes
        self.wwn = wwn
        self.filesystem = filesystem
        self.partitions = partitions
        self.created = created
        self.backstore = backstore
        # Only a block backstore is write-back (fileio vDisks are synchronous: lio_backstore).
        self.write_through = backstore != 'block' if write_through is None else write_through

    def to_dict(self):
        return {
            'name': self.name,
            'backstore': self.backstore,
            'path': self.backing,
            'size_bytes': self.size_bytes,
            'size': format_size(self.size_bytes),
            'wwn': self.wwn,
            'filesystem': self.filesystem,
            'partitions': self.partitions,
            'created': self.created,
            'write_through': self.write_through,
        }


def normalize_layout(size_bytes, filesystem, partitions):
    """Validate a requested layout; return partitions with numbers and byte sizes.

    The last partition may omit its size to fill the rest of the disk.
    """
    if filesystem not in FILESYSTEMS:
        raise ValidationError('filesystem %r is not one of %s' % (filesystem, ', '.join(FILESYSTEMS)))
    if not partitions:
        if size_bytes < MIN_FS_SIZE[filesystem]:
            raise ValidationError('a %s filesystem needs at least %s, the vDisk has %s'
                                  % (filesystem, format_size(MIN_FS_SIZE[filesystem]), format_size(size_bytes)))
        return []
    if filesystem != 'none':
        raise ValidationError('filesystem applies to a whole-disk vDisk; with partitions, give each '
                              'partition its filesystem and set filesystem: none')
    usable = size_bytes - GPT_OVERHEAD
    result = []
    used = 0
    for number, part in enumerate(partitions, 1):
        fs = part.get('filesystem') or 'xfs'
        if fs not in FILESYSTEMS:
            raise ValidationError('partition %d: filesystem %r is not one of %s' % (number, fs, ', '.join(FILESYSTEMS)))
        if part.get('size') in (None, ''):
            if number != len(partitions):
                raise ValidationError('partition %d: only the last partition may omit its size' % number)
            size = usable - used
        else:
            size = parse_size(part['size'], 'partition %d size' % number)
        if size < MIN_FS_SIZE[fs]:
            raise ValidationError('partition %d: a %s filesystem needs at least %s, it has %s'
                                  % (number, fs, format_size(MIN_FS_SIZE[fs]), format_size(max(size, 0))))
        used += size
        result.append({'number': number, 'size_bytes': size, 'filesystem': fs})
    if used > usable:
        raise ValidationError('partitions need %s but a %s vDisk has room for %s (GPT takes 2 MiB)'
                              % (format_size(used), format_size(size_bytes), format_size(usable)))
    return result


def open_pool(spec, run):
    """Return the pool backend for ``spec``. ``run(argv) -> (rc, out, err)`` runs commands.

    ``lvm-thin:VG/POOL`` is an LVM thin pool, an absolute path a btrfs pool.
    """
    if isinstance(spec, str) and spec.startswith(LVM_THIN):
        return LvmThinPool(spec, run)
    if isinstance(spec, str) and spec.startswith('/'):
        return BtrfsPool(spec, run)
    raise PoolError('pool %r is not supported: give lvm-thin:VG/POOL (an LVM thin pool) or the absolute path of '
                    'a mounted btrfs filesystem' % (spec,))


def _mount_fstype(path):
    """Filesystem type of the mount holding ``path`` (the longest mountinfo prefix)."""
    path = os.path.realpath(path)
    best, fstype = '', None
    with open('/proc/self/mountinfo') as f:
        for line in f:
            fields = line.split()
            mountpoint = fields[4].replace('\\040', ' ')
            sep = fields.index('-')
            if (path == mountpoint or path.startswith(mountpoint.rstrip('/') + '/')) and len(mountpoint) >= len(best):
                best, fstype = mountpoint, fields[sep + 1]
    return fstype


class _Pool(object):
    """What every backend shares: metadata in <metadata dir>/<name>/vdisk.json, formatting, commands.

    ``spec`` is the pool as the user wrote it (for messages), ``path`` the
    metadata directory (pool_layout.metadata_dir).
    """

    backstore = None
    # Whether its vDisks choose between write-back and write-through (False: always write-through).
    write_through_choice = False

    def backstore_for(self, write_through):
        """The LIO plugin that exports a vDisk of this pool with that cache mode."""
        return self.backstore

    def _cmd(self, argv, what):
        rc, out, err = self.run(argv)
        if rc != 0:
            raise PoolError('%s failed: %s: %s' % (what, ' '.join(argv), (err or out).strip()))
        return out

    def _read_metadata(self, name):
        """The vDisk's record from its vdisk.json, or None if it has none."""
        meta = pool_layout.metadata_path(self.path, name)
        if not os.path.exists(meta):
            return None
        with open(meta) as f:
            data = pool_layout.parse_metadata(json.load(f), os.path.dirname(meta))
        if data['size_bytes'] is None:
            raise PoolError('vDisk %s has metadata but its backing %s is gone' % (name, data['backing']))
        write_through = self.write_through_of(data['write_through'])
        return VdiskRecord(data['name'], data['backing'], data['size_bytes'], data['wwn'], data['filesystem'],
                           data['partitions'], data['created'], self.backstore_for(write_through), write_through)

    def write_through_of(self, recorded):
        """A vDisk's cache mode given what its vdisk.json (or a request) says."""
        return bool(recorded) if self.write_through_choice else True

    def _write_metadata(self, record):
        backing = record.backing if record.backing.startswith('/dev/') else os.path.basename(record.backing)
        data = {
            'format_version': 1, 'name': record.name, 'wwn': record.wwn, 'filesystem': record.filesystem,
            'partitions': record.partitions, 'created': record.created, 'backing': backing,
        }
        if self.write_through_choice and record.write_through:
            data['write_through'] = True
        write_json_atomic(pool_layout.metadata_path(self.path, record.name), data,
                          mode=0o644)  # no secret in it; the storage API reads it

    def set_write_through(self, record, write_through):
        """Record the vDisk's cache mode (its backstore is lio_backstore's to change)."""
        record.write_through = write_through
        record.backstore = self.backstore_for(write_through)
        self._write_metadata(record)
        return record

    def list(self):
        return [self.get(name) for name in pool_layout.names(self.path, rules.VDISK_RE.fullmatch)]

    def round_size(self, size_bytes):
        """The size the backend will really give a vDisk asked to be ``size_bytes``."""
        return size_bytes

    def check_room(self, name, size_bytes):
        """Raise PoolError if creating or growing ``name`` to ``size_bytes`` must not be tried."""

    def snapshots_of(self, name):
        """The vDisk's snapshots (only LVM thin pools have them)."""
        return []

    def _fill_and_describe(self, name, backing, size_bytes, filesystem, partitions, wwn, created, fill,
                           write_through=False):
        """Format the new, empty backing (or ``fill(backing)``), then write the vDisk's metadata: the last step."""
        if fill is None:
            self._format(backing, filesystem, partitions)
        else:
            fill(backing)
        write_through = self.write_through_of(write_through)
        record = VdiskRecord(name, backing, size_bytes, wwn or str(uuid.uuid4()), filesystem, partitions,
                             created or datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
                             self.backstore_for(write_through), write_through)
        os.makedirs(os.path.join(self.path, name), mode=0o755, exist_ok=True)
        self._write_metadata(record)
        return record

    def _format(self, backing, filesystem, partitions):
        if not partitions and filesystem == 'none':
            return
        # The backing was created empty a moment ago; still, never format
        # anything that carries a signature (blkid -p exits 2 when it finds none).
        rc, out, err = self.run(['blkid', '-p', backing])
        if rc != 2:
            raise PoolError('%s already carries a signature (%s): refusing to format it' % (backing, out.strip()))
        if not partitions:
            self._mkfs(filesystem, backing)
            return
        argv = ['sgdisk', '--clear']
        for part in partitions:
            argv += ['--new=%d:0:+%dM' % (part['number'], part['size_bytes'] >> 20),
                     '--typecode=%d:8300' % part['number']]
        self._cmd(argv + [backing], 'partitioning')
        if all(p['filesystem'] == 'none' for p in partitions):
            return
        # A loop device gives partition nodes for a file and for a device-mapper volume alike.
        loop = self._cmd(['losetup', '--find', '--show', '--partscan', backing], 'attaching a loop device').strip()
        try:
            for part in partitions:
                if part['filesystem'] != 'none':
                    self._mkfs(part['filesystem'], self._wait_for('%sp%d' % (loop, part['number'])))
        finally:
            self.run(['losetup', '--detach', loop])

    @staticmethod
    def _wait_for(device, timeout=30):
        deadline = time.time() + timeout
        while not os.path.exists(device):
            if time.time() > deadline:
                raise PoolError('%s did not appear' % device)
            time.sleep(0.1)
        return device

    def _mkfs(self, filesystem, target):
        argv = {'xfs': ['mkfs.xfs', '-q'], 'ext4': ['mkfs.ext4', '-q', '-F']}[filesystem]
        self._cmd(argv + [target], 'making a %s filesystem' % filesystem)

    @staticmethod
    def _refuse_shrink(record, size_bytes):
        if size_bytes < record.size_bytes:
            raise ValidationError('vDisk %s is %s: shrinking to %s is refused (it would destroy data)'
                                  % (record.name, format_size(record.size_bytes), format_size(size_bytes)))

    def move_gpt_backup(self, backing):
        # GPT keeps a backup header in the disk's last sector: move it to the
        # new end, or the device sees a damaged table and no free space.
        self._cmd(['sgdisk', '--move-second-header', backing], 'moving the GPT backup header')

    def copy_in(self, source, target):
        """Copy a vDisk's bytes from another pool's backing onto this pool's new, empty one."""
        # conv=sparse skips all-zero blocks: a new thin volume or sparse file
        # reads zeros there already, and the copy allocates only data.
        self._cmd(['dd', 'if=' + source, 'of=' + target, 'bs=4M', 'conv=sparse,fsync', 'oflag=direct',
                   'status=none'], 'copying the data')


class BtrfsPool(_Pool):
    kind = 'btrfs'
    backstore = 'fileio'  # always synchronous (lio_backstore): write-through, no write-back mode

    def __init__(self, path, run):
        self.path = self.spec = os.path.normpath(path)
        self.run = run

    def check(self):
        if not os.path.isdir(self.path):
            raise PoolError('pool %s does not exist (the storage_host role creates and mounts it)' % self.path)
        fstype = _mount_fstype(self.path)
        if fstype != BTRFS_MAGIC:
            raise PoolError('pool %s is on %s, not btrfs: the btrfs backend needs one subvolume per vDisk'
                            % (self.path, fstype))

    def _dir(self, name):
        return os.path.join(self.path, check_name(name, 'vDisk name'))

    def get(self, name):
        directory = self._dir(name)
        record = self._read_metadata(name)
        if record is None and os.path.exists(directory):
            # Never guess about data we did not finish creating: a person decides.
            raise PoolError('%s exists but has no %s (an interrupted creation?): inspect it and delete '
                            'the subvolume by hand if it holds nothing of value' % (directory, METADATA))
        return record

    def create(self, name, size_bytes, filesystem, partitions, wwn=None, created=None, fill=None,
               write_through=False):
        """Create, format (or ``fill(backing)``) and describe a vDisk. Undoes itself if any step fails."""
        directory = self._dir(name)
        self._cmd(['btrfs', 'subvolume', 'create', directory], 'creating the subvolume')
        try:
            self._cmd(['chattr', '+C', directory], 'disabling copy-on-write')
            backing = os.path.join(directory, BACKING)
            fd = os.open(backing, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.ftruncate(fd, size_bytes)  # sparse: no space used until written
            finally:
                os.close(fd)
            record = self._fill_and_describe(name, backing, size_bytes, filesystem, partitions, wwn, created, fill,
                                             write_through)
        except BaseException:
            self.run(['btrfs', 'subvolume', 'delete', directory])
            raise
        return record

    def grow(self, record, size_bytes):
        self._refuse_shrink(record, size_bytes)
        with open(record.backing, 'r+b') as f:
            f.truncate(size_bytes)
            os.fsync(f.fileno())
        record.size_bytes = size_bytes
        if record.partitions:
            self.move_gpt_backup(record.backing)
        return record

    def undo_grow(self, record, old_size):
        """Take back a grow whose export failed: nothing was written past the old end."""
        with open(record.backing, 'r+b') as f:
            f.truncate(old_size)
        record.size_bytes = old_size

    def delete(self, record):
        self._cmd(['btrfs', 'subvolume', 'delete', os.path.dirname(record.backing)], 'deleting the subvolume')


class LvmThinPool(_Pool):
    """vDisks as thin volumes of one LVM thin pool, exported as block backstores."""

    kind = 'lvm-thin'
    backstore = 'block'
    write_through_choice = True

    def backstore_for(self, write_through):
        return 'fileio' if write_through else 'block'

    def __init__(self, spec, run):
        vg, _sep, thin_pool = spec[len(LVM_THIN):].partition('/')
        for what, value in (('volume group', vg), ('thin pool', thin_pool)):
            if not LVM_NAME_RE.fullmatch(value or ''):
                raise PoolError('pool %r: the %s name %r is not a valid LVM name (letters, digits, +_.-; '
                                'give lvm-thin:VG/POOL)' % (spec, what, value))
        self.spec = spec
        self.vg, self.thin_pool = vg, thin_pool
        self.path = pool_layout.metadata_dir(spec)
        self.run = run
        self._volumes = None

    def volumes(self):
        """{LV name: lvs fields} of the volume group, read once per run."""
        if self._volumes is None:
            out = self._cmd(['lvs', '--reportformat', 'json', '--units', 'b', '--nosuffix', '--options',
                             'lv_name,lv_attr,lv_size,data_percent,metadata_percent,pool_lv,vg_extent_size',
                             self.vg], 'reading the volume group')
            try:
                report = json.loads(out)['report'][0]['lv']
            except (ValueError, KeyError, IndexError) as exc:
                raise PoolError('cannot read the output of lvs %s: %s' % (self.vg, exc))
            self._volumes = dict((lv['lv_name'], lv) for lv in report)
        return self._volumes

    def _forget(self):
        self._volumes = None

    def _pool_lv(self):
        lv = self.volumes().get(self.thin_pool)
        if lv is None:
            raise PoolError('volume group %s has no logical volume %s (the storage_host role creates the thin pool)'
                            % (self.vg, self.thin_pool))
        if not lv['lv_attr'].startswith('t'):
            raise PoolError('%s/%s is not a thin pool (lv_attr %s)' % (self.vg, self.thin_pool, lv['lv_attr']))
        return lv

    def check(self):
        rc, _out, err = self.run(['vgs', '--noheadings', '--options', 'vg_name', self.vg])
        if rc != 0:
            raise PoolError('volume group %s does not exist (the storage_host role creates it): %s'
                            % (self.vg, err.strip()))
        self._pool_lv()

    @staticmethod
    def lv_name(name):
        return LV_PREFIX + name

    def _device(self, name):
        return '/dev/%s/%s' % (self.vg, self.lv_name(name))

    def get(self, name):
        check_name(name, 'vDisk name')
        reserved = [r for r in LVM_RESERVED if r in name]
        if reserved:
            raise ValidationError('vDisk name %s contains %s, which LVM reserves: an LVM thin pool cannot hold it'
                                  % (name, reserved[0]))
        record = self._read_metadata(name)
        if record is None and self.lv_name(name) in self.volumes():
            raise PoolError('logical volume %s/%s exists but %s has no %s (an interrupted creation?): inspect it '
                            'and lvremove it by hand if it holds nothing of value'
                            % (self.vg, self.lv_name(name), os.path.join(self.path, name), METADATA))
        return record

    def round_size(self, size_bytes):
        extent = int(self._pool_lv()['vg_extent_size'])
        return -(-size_bytes // extent) * extent

    def check_room(self, name, size_bytes):
        lv = self._pool_lv()
        for what in ('data', 'metadata'):
            used = float(lv['%s_percent' % what] or 0)
            if used >= POOL_FULL_PERCENT:
                raise PoolError('thin pool %s/%s is %.1f%% full (%s): refusing to create or grow vDisk %s until it '
                                'has room (lvextend the pool, or free space in it)'
                                % (self.vg, self.thin_pool, used, what, name))

    def create(self, name, size_bytes, filesystem, partitions, wwn=None, created=None, fill=None,
               write_through=False):
        """Create, format (or ``fill(backing)``) and describe a vDisk. Undoes itself if any step fails."""
        device = self._device(name)
        self._cmd(['lvcreate', '--quiet', '--type', 'thin', '--virtualsize', '%db' % size_bytes,
                   '--name', self.lv_name(name), '--addtag', 'clusterducks-vdisk',
                   '--thinpool', self.thin_pool, self.vg], 'creating the thin volume')
        self._forget()
        try:
            self._wait_for(device)
            record = self._fill_and_describe(name, device, size_bytes, filesystem, partitions, wwn, created, fill,
                                             write_through)
        except BaseException:
            self._remove(name)
            raise
        return record

    def grow(self, record, size_bytes):
        self._refuse_shrink(record, size_bytes)
        self._cmd(['lvextend', '--quiet', '--size', '%db' % size_bytes, '%s/%s' % (self.vg, self.lv_name(record.name))],
                  'growing the thin volume')
        self._forget()
        record.size_bytes = size_bytes
        if record.partitions:
            # The device wrote its table through LIO, beside this host's page
            # cache: drop what the cache holds before sgdisk reads it.
            self._cmd(['blockdev', '--flushbufs', record.backing], 'dropping cached blocks')
            self.move_gpt_backup(record.backing)
        return record

    def undo_grow(self, record, old_size):
        """Take back a grow whose export failed: nothing was written past the old end."""
        self._cmd(['lvreduce', '--quiet', '--yes', '--force', '--size', '%db' % old_size,
                   '%s/%s' % (self.vg, self.lv_name(record.name))], 'taking back the grow')
        self._forget()
        record.size_bytes = old_size

    def _remove(self, name):
        self.run(['lvremove', '--quiet', '--yes', '%s/%s' % (self.vg, self.lv_name(name))])
        self._forget()
        shutil.rmtree(os.path.join(self.path, name), ignore_errors=True)

    def _catalog(self, read_only):
        if not os.path.exists(os.path.join(self.path, thin_snapshots.CATALOG)):
            return None
        return thin_snapshots.ThinSnapshots(self.spec, self.run, read_only=read_only)

    def snapshots_of(self, name):
        catalog = self._catalog(read_only=True)
        if catalog is None:
            return []
        try:
            return catalog.list(name)
        finally:
            catalog.close()

    def delete(self, record):
        # Its snapshots go first, with it (the plan asked for force when it has any).
        catalog = self._catalog(read_only=False)
        if catalog is not None:
            try:
                _done, failures = catalog.delete(catalog.list(record.name))
            finally:
                catalog.close()
            if failures:
                raise PoolError('deleting the snapshots of vDisk %s failed: %s'
                                % (record.name, '; '.join(failures.values())))
        self._cmd(['lvremove', '--quiet', '--yes', '%s/%s' % (self.vg, self.lv_name(record.name))],
                  'deleting the thin volume')
        self._forget()
        shutil.rmtree(os.path.join(self.path, record.name))
