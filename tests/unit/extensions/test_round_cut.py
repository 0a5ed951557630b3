# -*- coding: utf-8 -*-
# Copyright (c) clusterducks contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""storage_api's round freezer: it judges the catalog as a power cut would leave it, even while a commit holds it locked."""

from __future__ import annotations

import importlib.util
import os
import sqlite3

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    'round_cut', os.path.join(HERE, '..', '..', '..', 'extensions', 'molecule', 'storage_api', 'files', 'round_cut.py'))
rc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rc)


@pytest.fixture
def catalog(tmp_path):
    """A rollback-journal catalog whose prune marked three snapshots 'deleting' (the round's first commit)."""
    path = str(tmp_path / 'snapshots.sqlite')
    db = sqlite3.connect(path, isolation_level=None)
    db.execute('PRAGMA synchronous=EXTRA')
    db.execute('CREATE TABLE snapshot (name TEXT, state TEXT, pad BLOB)')
    db.executemany('INSERT INTO snapshot VALUES (?, ?, NULL)',
                   [('a', 'deleting'), ('b', 'deleting'), ('c', 'deleting'), ('d', 'ready')])
    db.close()
    return path


def in_commit(path):
    """A writer left in the prune's second commit, its pages already spilled into the file (so it holds it locked)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute('PRAGMA cache_size=2')  # pages spill to the file before the commit, under an exclusive lock
    db.execute('BEGIN')
    db.execute("DELETE FROM snapshot WHERE state = 'deleting'")
    db.executemany('INSERT INTO snapshot VALUES (?, ?, ?)', [('x%d' % i, 'ready', os.urandom(4000)) for i in range(200)])
    return db


def test_a_commit_in_progress_reads_as_before_it(catalog):
    writer = in_commit(catalog)
    assert os.path.exists(catalog + '-journal')
    with pytest.raises(sqlite3.OperationalError, match='locked'):  # what CI's freezer hit
        rc.states(sqlite3.connect('file:%s?mode=ro' % catalog, uri=True, timeout=0))
    assert rc.states_after_cut(catalog) == {'deleting': 3, 'ready': 1}
    writer.execute('COMMIT')
    assert rc.states_after_cut(catalog) == {'ready': 201}


def test_the_copy_leaves_the_live_catalog_alone(catalog):
    writer = in_commit(catalog)
    rc.states_after_cut(catalog)
    writer.execute('ROLLBACK')
    assert rc.states(sqlite3.connect(catalog)) == {'deleting': 3, 'ready': 1}


def test_no_journal(catalog):
    assert not os.path.exists(catalog + '-journal')
    assert rc.states_after_cut(catalog) == {'deleting': 3, 'ready': 1}


@pytest.mark.parametrize('events, running', [('populated 1\nfrozen 0\n', True), ('populated 0\nfrozen 0\n', False),
                                             (None, False)])
def test_round_running_reads_the_units_cgroup(tmp_path, monkeypatch, events, running):
    # A missed try ends when the round does (not a minute later); no cgroup is a round not running.
    monkeypatch.setattr(rc, 'CGROUP', str(tmp_path / 'unit'))
    if events is not None:
        (tmp_path / 'unit').mkdir()
        (tmp_path / 'unit' / 'cgroup.events').write_text(events)
    assert rc.round_running() is running
