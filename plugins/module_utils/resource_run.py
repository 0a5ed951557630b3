# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one skeleton of a storage module's run: plan, apply, save once, report.

A module first plans every resource it was given (reading and validating
everything, changing nothing); in check mode the plan is the answer. A real
run hands the plan's steps to ``apply()``: each step is ``(label, do, undo)``.
All steps run, then one save. If a step (or the save) fails, that step and
the ones before it are undone in reverse order, so a failed run leaves things
as they were. ``undo`` copes with a step applied only in part; it returns
None when it put things back, or a note saying why it kept the change (a
grown vDisk is not shrunk back: data may have been written since). When a
change stays - kept, or its undo failed - what is live is saved, so the next
boot brings back the same and a re-run sees what is left to do.
"""

from __future__ import annotations


class ChangeFailed(Exception):
    """A run's change failed; the message says what was put back and where the save file stands."""


def apply(steps, save, save_path, subject='LIO'):
    """Run ``steps`` then ``save()`` once; on failure undo and raise ChangeFailed.

    ``save_path`` names the save file and ``subject`` what the steps change in messages.
    """
    done = []
    for label, do, undo in steps:
        try:
            do()
        except BaseException as exc:
            _undo(done + [(label, undo)], save, 'changing %s failed at %s: %s' % (subject, label, exc), exc)
        done.append((label, undo))
    if done:
        try:
            save()
        except BaseException as exc:
            _undo(done, save, 'saving LIO\'s configuration to %s failed: %s' % (save_path, exc), exc)


def _undo(done, save, what, exc):
    put_back, kept, failed = [], [], []
    for label, undo in reversed(done):
        try:
            note = undo()
        except Exception as undo_exc:
            failed.append('%s (%s)' % (label, undo_exc))
            continue
        if note:
            kept.append('%s (%s)' % (label, note))
        else:
            put_back.append(label)
    msg = [what + '.']
    if put_back:
        msg.append('Put back as before this run: %s.' % ', '.join(put_back))
    if kept:
        msg.append('Kept: %s.' % ', '.join(kept))
    if failed:
        msg.append('Could not put back: %s.' % ', '.join(failed))
    if not kept and not failed:
        msg.append('LIO and its save file are as before this run.')
    else:
        try:
            path = save()
            msg.append('The running configuration was saved to %s, so the next boot brings back what is live now; '
                       'run again once the cause is fixed.' % path)
        except Exception as save_exc:
            msg.append('Saving the running configuration failed too (%s): LIO and its save file differ until a '
                       'run succeeds.' % save_exc)
    if not isinstance(exc, Exception):
        raise exc  # KeyboardInterrupt, SystemExit: after the undo, as they were
    raise ChangeFailed(' '.join(msg)) from exc


def result(keyed, diff):
    """``changed``, ``before``/``after`` per resource (always) and Ansible's ``diff`` (in diff mode).

    ``keyed`` is [(key, actions, before, after)], secrets already masked.
    """
    changed = [k for k in keyed if k[1]]
    out = {
        'changed': bool(changed),
        'before': dict((key, before) for key, _actions, before, _after in keyed),
        'after': dict((key, after) for key, _actions, _before, after in keyed),
    }
    if diff:
        out['diff'] = {'before': dict((key, before) for key, _a, before, _b in changed if before is not None),
                       'after': dict((key, after) for key, _a, _b, after in changed if after is not None)}
    return out
