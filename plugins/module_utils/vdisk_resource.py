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
from ansible_collections.clusterducks.vdisk.plugins.module_utils.pool import normalize_layout
from ansible_collections.clusterducks.vdisk.plugins.module_utils.validation import (
    ValidationError,
    check_name,
    format_size,
    parse_size,
    resource_items,
)

ITEM_KEYS = ('name', 'size', 'filesystem', 'partitions', 'state', 'force')


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
        }
        if not isinstance(spec['force'], bool):
            raise ValidationError('vDisk %s: force must be a boolean' % spec['name'])
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
            'wwn': record.wwn, 'exported_by': exports or []}


def _plan_present(spec, record, so):
    """The actions that bring one vDisk to ``spec``; raises ValidationError for what must not happen."""
    name = spec['name']
    if record is None:
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
    if so is None:
        actions.append('exported')
    elif 'grown' in actions or lio_backstore.drift(so, record):
        actions.append('reexported')
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
        if record is None:
            return {'size_bytes': spec['size_bytes'], 'filesystem': spec['filesystem_final'],
                    'partitions': spec['layout'], 'wwn': '(new)', 'exported_by': []}
        after = summary(record, self.exports)
        if 'grown' in self.actions:
            after['size_bytes'] = spec['size_bytes']
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
        if 'created' in actions:
            record = pool.create(spec['name'], spec['size_bytes'], spec['filesystem_final'], spec['layout'])
            try:
                self.so = lio_backstore.create(record)
            except BaseException:
                pool.delete(record)  # leave nothing half-made behind
                raise
            self.record = record
            done.add('created')
            return
        record = self.record
        old_size = record.size_bytes
        if 'grown' in actions:
            pool.grow(record, spec['size_bytes'])
        try:
            if 'exported' in actions:
                self.so = lio_backstore.create(record)
                done.add('exported')
            elif 'reexported' in actions:
                self.so = lio_backstore.recreate(self.so, record)
        except BaseException:
            if 'grown' in actions:
                # Nothing could have been written past the old end: the export failed.
                self.pool.undo_grow(record, old_size)
            raise
        if 'grown' in actions:
            done.add('grown')

    def undo(self):
        """Take this step back where that loses nothing (None), else say why it stays.

        Copes with a step applied only in part: apply() records what it finished.
        """
        done = getattr(self, '_done', set())
        if 'deleted' in done:
            return 'deleted with its data'
        if 'unexported' in done:
            return 'its backstore, LUNs and mappings were removed; the data is still in the pool'
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


def plan(pool, items, exports, lookup_backstore, purge=False, purge_force=False):
    """One step per vDisk, deletions last; and the names of unlisted vDisks kept.

    ``exports`` is lio_backstore.exports_index() (or {} when LIO is not there
    yet, in check mode); ``lookup_backstore(name)`` returns the live backstore
    or None. With ``purge`` every vDisk of the pool that is not listed is
    deleted if ``purge_force``, else only reported.
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
                                  'filesystem': None, 'partitions': None}]
            else:
                unlisted.append(record.name)
    for spec in items:
        record = pool.get(spec['name'])
        so = lookup_backstore(spec['name']) if record is not None else None
        if spec['state'] == 'present':
            if record is None and lookup_backstore(spec['name']) is not None:
                raise ValidationError('a fileio backstore called %s exists but is not a vDisk of pool %s: '
                                      'refusing to take it over' % (spec['name'], pool.path))
            actions = _plan_present(spec, record, so)
        elif record is None:
            actions = []
        elif exports.get(spec['name']) and not spec['force']:
            raise ValidationError('vDisk %s is exported by %s: set force=true to delete it and its data'
                                  % (spec['name'], ', '.join(e['target'] for e in exports[spec['name']])))
        else:
            actions = ['deleted']
        steps.append(VdiskStep(pool, spec, record, so, exports.get(spec['name']), actions))
    return steps, unlisted


def apply_order(steps):
    """Deletions last: a run that fails before them has destroyed nothing."""
    return [s for s in steps if 'deleted' not in s.actions] + [s for s in steps if 'deleted' in s.actions]
