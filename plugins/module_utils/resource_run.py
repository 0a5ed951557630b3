# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one skeleton of a storage module's run: plan, apply, save once, report.

A module first plans every resource it was given (reading and validating
everything, changing nothing), then hands the steps here. In check mode the
plan is the answer. Otherwise the steps are applied in order; if one fails,
the steps already applied in this run are undone in reverse order where that
loses nothing, and LIO's save file is written either way, so the running
configuration and the one restored at boot never disagree.

A step is any object with:
  key       the resource's name (vDisk name, target IQN)
  actions   what it changes (empty: nothing to do)
  before    its state before (secrets masked), None if absent
  after     its planned state (secrets masked), None if absent
  apply()   make the change; undo its own partial work before raising
  undo()    take the applied change back; returns a note when it cannot
            without losing data (the change then stays) and None when undone
"""

from __future__ import annotations


class RunFailed(Exception):
    """A step failed; ``undone`` and ``kept`` name the earlier steps by key."""

    def __init__(self, key, error, undone, kept):
        self.key = key
        self.error = error
        self.undone = undone
        self.kept = kept
        parts = ['%s: %s' % (key, error)]
        if undone:
            parts.append('undone: %s' % ', '.join(undone))
        if kept:
            parts.append('kept: %s' % '; '.join('%s (%s)' % k for k in kept))
        parts.append("LIO's save file matches the running configuration")
        super(RunFailed, self).__init__('; '.join(parts))


def apply_steps(steps, save, dry_run):
    """Apply ``steps`` (nothing in check mode) and call ``save()`` once if anything ran."""
    if dry_run:
        return
    applied = []
    ran = False
    for step in steps:
        if not step.actions:
            continue
        ran = True
        try:
            step.apply()
        except Exception as exc:
            undone, kept = [], []
            for done in reversed(applied):
                try:
                    note = done.undo()
                except Exception as undo_exc:  # report it; the save below records what is live
                    note = 'undoing failed: %s' % undo_exc
                if note:
                    kept.append((done.key, note))
                else:
                    undone.append(done.key)
            save()
            raise RunFailed(step.key, exc, undone, kept)
        applied.append(step)
    if ran:
        save()


def result(steps, diff):
    """``changed``, per-resource ``before``/``after`` (always) and Ansible's ``diff`` (in diff mode)."""
    changed = [s for s in steps if s.actions]
    out = {
        'changed': bool(changed),
        'before': dict((s.key, s.before) for s in steps),
        'after': dict((s.key, s.after) for s in steps),
    }
    if diff:
        out['diff'] = {'before': dict((s.key, s.before) for s in changed if s.before is not None),
                       'after': dict((s.key, s.after) for s in changed if s.after is not None)}
    return out
