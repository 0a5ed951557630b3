# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Declared vDisks: validate, plan, apply and undo.

``requested()`` checks what a run asks for, ``plan()`` reads the pool and LIO
once and returns one VdiskStep per vDisk (resource_run applies them), so
check mode shows exactly what a real run does. Deletions come last in a run,
so a failure before them has destroyed nothing.
"""

from __future__ import annotations

from ansible_collections.clusterducks.vdisk.plugins.module_utils import lio_backstore
from ansible_collections.clusterducks.vdisk.plugins.module_utils.pool import VdiskRecord, normalize_layout
from ansible_collections.clusterducks.vdisk.plugins.module_utils.validation import (
    ValidationError,
    check_name,
    format_size,
    parse_size,
    resource_items,
)

ITEM_KEYS = ('name', 'size', 'filesystem', 'partitions', 'state', 'force', 'migrate_from', 'write_through')


def requested(params):
    """The vDisks asked for, each with every key, module-level defaults applied."""
    raw = resource_items(params, 'name', 'vdisks', ITEM_KEYS)
    items, seen = [], set()
    for item in raw:
        spec = {
            'name': check_name(item.get('name'), 'vDisk name'),
            'size': item.get('size'),
            'filesystem': item.get('filesystem'),
            'partitions': item.get('partitions'),
            'state': item.get('state') or params['state'],
            # Ansible has already made the item's force a real bool (suboptions).
            'force': params['force'] if item.get('force') is None else item['force'],
            'migrate_from': item.get('migrate_from') or params.get('migrate_from'),
            # None: as it is (write-back for a new thin vDisk).
            'write_through': params.get('write_through') if item.get('write_through') is None
            else item['write_through'],
        }
        for key in ('force', 'write_through'):
            if not isinstance(spec[key], bool) and not (key == 'write_through' and spec[key] is None):
                raise ValidationError('vDisk %s: %s must be a boolean' % (spec['name'], key))
        if spec['state'] not in ('present', 'absent'):
            raise ValidationError('vDisk %s: state must be present or absent' % spec['name'])
        if spec['name'] in seen:
            raise ValidationError('vDisk %s is listed twice' % spec['name'])
        seen.add(spec['name'])
        if spec['size'] is not None:
            spec['size_bytes'] = parse_size(spec['size'], 'vDisk %s size' % spec['name'])
        if spec['partitions'] is not None:
            spec['partitions'] = [{'size': p.get('size'), 'filesystem': p.get('filesystem') or 'xfs'}
                                  for p in spec['partitions']]
        items.append(spec)
    return items


def summary(record, exports):
    if record is None:
        return None
    return {'size_bytes': record.size_bytes, 'filesystem': record.filesystem, 'partitions': record.partitions,
            'wwn': record.wwn, 'backstore': record.backstore, 'write_through': record.write_through,
            'backing': record.backing, 'exported_by': exports or []}


def _write_through(spec, pool):
    """The cache mode ``spec`` asks of ``pool`` (None: not asked); refuses what the pool cannot do."""
    wanted = spec['write_through']
    if wanted is False and not pool.write_through_choice:
        raise ValidationError('vDisk %s: pool %s exports every vDisk write-through (a synchronous fileio '
                              'backstore); write_through=false needs an LVM thin pool' % (spec['name'], pool.spec))
    return None if wanted is None else pool.write_through_of(wanted)


def _plan_migration(spec, pool, old_pool, so):
    """Actions that move a vDisk of ``old_pool`` to ``pool``: same WWN, LUNs, mappings and data."""
    name, old = spec['name'], spec['migrate_record']
    if so is not None and not lio_backstore.owns(so, old):
        raise ValidationError('vDisk %s: the %s backstore of that name exports %s, not the vDisk in %s: refusing '
                              'to move it' % (name, so.plugin, so.udev_path, old_pool.spec))
    if so is not None:
        logged_in = lio_backstore.active_sessions(so)
        if logged_in:
            raise ValidationError('vDisk %s is in use by %s: moving it copies its data, so the device must be shut '
                                  'down (logged out) first' % (name, ', '.join(logged_in)))
    spec['size_bytes_final'] = pool.round_size(old.size_bytes)
    spec['write_through_final'] = pool.write_through_of(_write_through(spec, pool))
    actions = ['migrated']
    if spec.get('size_bytes') is not None:
        wanted = pool.round_size(spec['size_bytes'])
        if wanted < old.size_bytes:
            raise ValidationError('vDisk %s is %s: shrinking it to %s is refused (it would destroy data)'
                                  % (name, format_size(old.size_bytes), format_size(spec['size_bytes'])))
        if wanted > spec['size_bytes_final']:
            spec['size_bytes'] = wanted
            actions.append('grown')
    return actions


def _plan_present(spec, record, so, pool):
    """The actions that bring one vDisk to ``spec``; raises ValidationError for what must not happen."""
    name = spec['name']
    write_through = _write_through(spec, pool)
    if record is None:
        spec['write_through_final'] = pool.write_through_of(write_through)
        if spec.get('size_bytes') is None:
            raise ValidationError('vDisk %s does not exist: size is required to create it' % name)
        filesystem = spec['filesystem'] or ('none' if spec['partitions'] else 'xfs')
        spec['layout'] = normalize_layout(spec['size_bytes'], filesystem, spec['partitions'] or [])
        spec['filesystem_final'] = filesystem
        return ['created', 'exported']
    if spec['filesystem'] is not None and spec['filesystem'] != record.filesystem:
        raise ValidationError('vDisk %s was made with filesystem %s; it is never reformatted (asked for %s)'
                              % (name, record.filesystem, spec['filesystem']))
    if spec['partitions'] is not None:
        wanted = normalize_layout(spec.get('size_bytes') or record.size_bytes, 'none', spec['partitions'])
        have = [(p['size_bytes'], p['filesystem']) for p in record.partitions]
        if [(p['size_bytes'], p['filesystem']) for p in wanted] != have and not (
                spec['partitions'][-1]['size'] in (None, '') and
                [(p['size_bytes'], p['filesystem']) for p in wanted[:-1]] == have[:-1]):
            raise ValidationError('vDisk %s was partitioned at creation as %s; its layout is never changed'
                                  % (name, ', '.join('%d: %s %s' % (p['number'], format_size(p['size_bytes']),
                                                                    p['filesystem']) for p in record.partitions)))
    actions = []
    size = spec.get('size_bytes')
    if size is not None and size != record.size_bytes:
        if size < record.size_bytes:
            raise ValidationError('vDisk %s is %s: shrinking it to %s is refused (it would destroy data)'
                                  % (name, format_size(record.size_bytes), format_size(size)))
        actions.append('grown')
    wanted = record
    if write_through is not None and write_through != record.write_through:
        actions.append('cache_changed')
        spec['write_through_final'] = write_through
        wanted = VdiskRecord(record.name, record.backing, record.size_bytes, record.wwn, record.filesystem,
                             record.partitions, record.created, pool.backstore_for(write_through), write_through)
    drift = lio_backstore.drift(so, wanted) if so is not None else []
    if so is None:
        actions.append('exported')
    elif drift or ('grown' in actions and not lio_backstore.resizes_itself(record)):
        # LIO must delete and remake the backstore (a fileio size, unsafe
        # settings). A logged-in initiator sees its LUN vanish meanwhile: LIO
        # answers with its 32 KiB write-protected placeholder LUN 0, which the
        # initiator keeps until it rescans, and its writes fail.
        logged_in = lio_backstore.active_sessions(so)
        if logged_in and not spec['force']:
            why = ', '.join(drift) or 'a %s backstore does not grow in place' % so.plugin
            raise ValidationError('vDisk %s is in use by %s: LIO must re-create its backstore (%s), which that '
                                  'initiator would see as its disk turning into a 32 KiB read-only one until it '
                                  'rescans; log it out first, or set force=true' % (name, ', '.join(logged_in), why))
        actions.append('reexported')
    elif lio_backstore.untuned(so):
        actions.append('tuned')
    return actions


class VdiskStep(object):
    """One vDisk's planned change: its actions, before/after, and how to do and undo it."""

    def __init__(self, pool, spec, record, so, exports, actions):
        self.pool = pool
        self.spec = spec
        self.record = record
        self.so = so
        self.exports = exports
        self.actions = actions
        self.key = spec['name']
        self.before = summary(record, exports)
        self.after = self._after()

    def _after(self):
        spec, record = self.spec, self.record
        if spec['state'] == 'absent':
            return None
        if 'migrated' in self.actions:
            old = spec['migrate_record']
            after = summary(old, self.exports)
            after.update(size_bytes=spec.get('size_bytes') or spec['size_bytes_final'],
                         backstore=self.pool.backstore_for(spec['write_through_final']),
                         write_through=spec['write_through_final'], backing='(in %s)' % self.pool.spec)
            return after
        if record is None:
            return {'size_bytes': spec['size_bytes'], 'filesystem': spec['filesystem_final'],
                    'partitions': spec['layout'], 'wwn': '(new)',
                    'backstore': self.pool.backstore_for(spec['write_through_final']),
                    'write_through': spec['write_through_final'], 'backing': '(new)', 'exported_by': []}
        after = summary(record, self.exports)
        if 'grown' in self.actions:
            after['size_bytes'] = spec['size_bytes']
        if 'cache_changed' in self.actions:
            after.update(write_through=spec['write_through_final'],
                         backstore=self.pool.backstore_for(spec['write_through_final']))
        return after

    def apply(self):
        pool, spec, actions = self.pool, self.spec, self.actions
        self._done = done = set()  # what undo() may have to take back
        if 'deleted' in actions:
            if self.so is not None:
                lio_backstore.delete(self.so)
                done.add('unexported')
            pool.delete(self.record)
            done.add('deleted')
            return
        if 'migrated' in actions:
            self._migrate()
            done.add('migrated')
            if 'grown' in actions:
                pool.grow(self.record, spec['size_bytes'])
            return
        if 'created' in actions:
            record = pool.create(spec['name'], spec['size_bytes'], spec['filesystem_final'], spec['layout'],
                                 write_through=spec['write_through_final'])
            try:
                self.so = lio_backstore.create(record)
            except BaseException:
                pool.delete(record)  # leave nothing half-made behind
                raise
            self.record = record
            done.add('created')
            return
        record = self.record
        old_size, old_write_through = record.size_bytes, record.write_through
        if 'grown' in actions:
            pool.grow(record, spec['size_bytes'])
        try:
            if 'cache_changed' in actions:
                pool.set_write_through(record, spec['write_through_final'])
            if 'exported' in actions:
                self.so = lio_backstore.create(record)
                done.add('exported')
            elif 'reexported' in actions:
                self.so = lio_backstore.recreate(self.so, record)
            elif 'tuned' in actions:
                lio_backstore.tune(self.so)
        except BaseException:
            if 'cache_changed' in actions:
                pool.set_write_through(record, old_write_through)  # recreate() put the old backstore back
            if 'grown' in actions:
                # Nothing could have been written past the old end: the export failed.
                self.pool.undo_grow(record, old_size)
            raise
        if 'cache_changed' in actions:
            done.add('cache_changed')
        if 'grown' in actions:
            done.add('grown')

    def _migrate(self):
        """Copy the vDisk into this pool and swap its backstore, LUNs and mappings over to the copy.

        The data is copied while no LUN exports the vDisk (between the delete
        and the relink of lio_backstore.recreate), so no write can land in the
        old copy after it was read. The old copy stays where it was.
        """
        pool, spec, old = self.pool, self.spec, self.spec['migrate_record']
        size = spec['size_bytes_final']

        def copy(device):
            pool.copy_in(old.backing, device)
            if old.partitions and size != old.size_bytes:
                pool.move_gpt_backup(device)

        write_through = spec['write_through_final']

        def move(device):
            new = VdiskRecord(old.name, device, size, old.wwn, old.filesystem, old.partitions, old.created,
                              pool.backstore_for(write_through), write_through)
            if self.so is None:
                copy(device)
                self.so = lio_backstore.create(new)
            else:
                self.so = lio_backstore.recreate(self.so, new, between=lambda: copy(device))

        self.record = pool.create(old.name, size, old.filesystem, old.partitions, wwn=old.wwn, created=old.created,
                                  fill=move, write_through=write_through)

    def undo(self):
        """Take this step back where that loses nothing (None), else say why it stays.

        Copes with a step applied only in part: apply() records what it finished.
        """
        done = getattr(self, '_done', set())
        if 'deleted' in done:
            return 'deleted with its data'
        if 'migrated' in done:
            return 'moved to %s with its exports; the old copy in %s is kept' % (
                self.pool.spec, self.spec['migrate_from'])
        if 'unexported' in done:
            return 'its backstore, LUNs and mappings were removed; the data is still in the pool'
        if 'cache_changed' in done:
            # The same disk with the other cache mode: put the old mode and its backstore back.
            self.pool.set_write_through(self.record, not self.record.write_through)
            self.so = lio_backstore.recreate(self.so, self.record)
        if 'grown' in done:
            return 'grown to %s; shrinking back could lose data written since' % format_size(self.record.size_bytes)
        if 'created' in done:
            lio_backstore.delete(self.so)
            self.pool.delete(self.record)
        elif 'exported' in done:
            lio_backstore.delete(self.so)
        # Otherwise nothing finished (apply cleaned up after itself), or only
        # 'reexported', which put the same disk back with safe settings.
        return None

    def step(self):
        """(label, do, undo) for resource_run.apply."""
        return ('vDisk %s' % self.key, self.apply, self.undo)

    def describe(self):
        """The module's per-vDisk result."""
        result = {'name': self.key, 'state': self.spec['state'], 'actions': self.actions,
                  'exported_by': [] if 'deleted' in self.actions else (self.exports or [])}
        if self.record is not None and self.spec['state'] == 'present':
            result.update(self.record.to_dict())
        return result


def plan(pool, items, exports, lookup_backstore, purge=False, purge_force=False, open_pool=None):
    """One step per vDisk, deletions last; and the names of unlisted vDisks kept.

    ``exports`` is lio_backstore.exports_index() (or {} when LIO is not there
    yet, in check mode); ``lookup_backstore(name)`` returns the live backstore
    or None. With ``purge`` every vDisk of the pool that is not listed is
    deleted if ``purge_force``, else only reported. ``open_pool(spec)`` opens
    the pool an item's ``migrate_from`` names.
    """
    steps = []
    listed = set(spec['name'] for spec in items)
    unlisted = []
    if purge:
        for record in pool.list():
            if record.name in listed:
                continue
            if purge_force:
                items = items + [{'name': record.name, 'state': 'absent', 'force': True, 'size': None,
                                  'filesystem': None, 'partitions': None, 'migrate_from': None, 'write_through': None}]
            else:
                unlisted.append(record.name)
    old_pools = {}
    for spec in items:
        name = spec['name']
        record = pool.get(name)
        so = lookup_backstore(name)
        if spec.get('size_bytes') is not None:
            spec['size_bytes'] = pool.round_size(spec['size_bytes'])
        if record is not None and so is not None and not lio_backstore.owns(so, record):
            # Another pool's vDisk of the same name holds the backstore (one moved with migrate_from, say).
            if spec['state'] == 'present':
                raise ValidationError('vDisk %s: the %s backstore of that name exports %s, not the vDisk in %s: '
                                      'refusing to take it over' % (name, so.plugin, so.udev_path, pool.spec))
            so = None  # deleting this copy leaves that backstore alone
        if spec['state'] == 'present':
            if record is None and spec.get('migrate_from'):
                if spec['migrate_from'] not in old_pools:
                    old_pools[spec['migrate_from']] = open_pool(spec['migrate_from'])
                spec['migrate_record'] = old_pools[spec['migrate_from']].get(name)
            if record is None and spec.get('migrate_record') is not None:
                actions = _plan_migration(spec, pool, old_pools[spec['migrate_from']], so)
            elif record is None and so is not None:
                raise ValidationError('a %s backstore called %s exists but is not a vDisk of pool %s: '
                                      'refusing to take it over' % (so.plugin, name, pool.spec))
            else:
                actions = _plan_present(spec, record, so, pool)
            if set(actions) & set(('created', 'grown', 'migrated')):
                pool.check_room(name, spec.get('size_bytes') or spec.get('size_bytes_final'))
        elif record is None:
            actions = []
        elif so is not None and exports.get(name) and not spec['force']:
            raise ValidationError('vDisk %s is exported by %s: set force=true to delete it and its data'
                                  % (name, ', '.join(e['target'] for e in exports[name])))
        else:
            snapshots = pool.snapshots_of(name)
            if snapshots and not spec['force']:
                raise ValidationError('vDisk %s has %d snapshots (%s): set force=true to delete it and them'
                                      % (name, len(snapshots), ', '.join(s.name for s in snapshots[:5])))
            actions = ['deleted']
        steps.append(VdiskStep(pool, spec, record, so, exports.get(name) if so is not None else None, actions))
    return steps, unlisted


def apply_order(steps):
    """Deletions last: a run that fails before them has destroyed nothing."""
    return [s for s in steps if 'deleted' not in s.actions] + [s for s in steps if 'deleted' in s.actions]
