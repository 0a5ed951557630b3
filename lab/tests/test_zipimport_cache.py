"""The lab image's bytecode cache for zip imports (Ansible's AnsiballZ).

Each import runs in a fresh interpreter, as each Ansible task does: the cache
is what carries over, and the code it gives must be the source's own.
"""

import json
import os
import subprocess
import sys
import zipfile

import pytest

OVERLAY = os.path.join(os.path.dirname(__file__), "..", "image", "overlay", "usr", "lib", "python3",
                       "dist-packages")

# Imports mod from ZIP with the cache in CACHE; says which sources were compiled,
# what mod.value() returns and where a traceback from a nested function points.
RUN = r"""
import json, sys, traceback, zipimport
sys.path.insert(0, sys.argv[1])
import cdlab_zipimport_cache as cache
compiled = []
def counting(pathname, source):
    compiled.append(pathname)
    return original(pathname, source)
original, cache._compile_source = cache._compile_source, counting
calls = []
def through_cache(pathname, source):
    calls.append(pathname)
    return cache.cached_compile_source(pathname, source, cache=sys.argv[3])
zipimport._compile_source = through_cache
sys.path.insert(0, sys.argv[2])
import mod
try:
    mod.Outer().fail()
except ValueError:
    where = traceback.extract_tb(sys.exc_info()[2])[-1].filename
print(json.dumps({"compiled": compiled, "calls": calls, "value": mod.value(), "where": where}))
"""

SOURCE = """
def value():
    return %r

class Outer:
    def fail(self):
        def inner():
            raise ValueError("from inside the zip")
        inner()
"""


def make_zip(path, value):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mod.py", SOURCE % value)
    return str(path)


def run(zip_path, cache_dir):
    out = subprocess.run([sys.executable, "-c", RUN, OVERLAY, zip_path, str(cache_dir)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.fixture
def cache_dir(tmp_path):
    path = tmp_path / "cache"
    path.mkdir(mode=0o700)
    return path


def test_second_import_uses_the_cache_with_its_own_file_name(tmp_path, cache_dir):
    first = run(make_zip(tmp_path / "a.zip", "one"), cache_dir)
    assert first["compiled"] == [os.path.join(str(tmp_path / "a.zip"), "mod.py")]
    assert first["value"] == "one"
    assert len(os.listdir(cache_dir)) == 1

    # The same source at another path (each AnsiballZ run has its own temp dir).
    second_zip = make_zip(tmp_path / "b.zip", "one")
    second = run(second_zip, cache_dir)
    assert second["compiled"] == []
    assert second["value"] == "one"
    # Nested code too names this import's zip, not the one that filled the cache.
    assert second["where"] == os.path.join(second_zip, "mod.py")


def test_changed_source_is_compiled_again(tmp_path, cache_dir):
    run(make_zip(tmp_path / "a.zip", "one"), cache_dir)
    changed = run(make_zip(tmp_path / "b.zip", "two"), cache_dir)
    assert changed["value"] == "two"
    assert len(changed["compiled"]) == 1
    assert len(os.listdir(cache_dir)) == 2


def test_a_damaged_entry_is_compiled_again(tmp_path, cache_dir):
    run(make_zip(tmp_path / "a.zip", "one"), cache_dir)
    (entry,) = os.listdir(cache_dir)
    with open(os.path.join(cache_dir, entry), "r+b") as f:
        f.truncate(10)
    again = run(make_zip(tmp_path / "b.zip", "one"), cache_dir)
    assert again["value"] == "one"
    assert len(again["compiled"]) == 1


def test_no_cache_directory_compiles_as_before(tmp_path):
    result = run(make_zip(tmp_path / "a.zip", "one"), tmp_path / "missing")
    assert result["value"] == "one"
    # Once per import zipimport asks for, never twice (a failed write is not a failed read).
    assert result["compiled"] == result["calls"]


def test_the_pth_file_loads_it():
    with open(os.path.join(OVERLAY, "cdlab_zipimport_cache.pth")) as f:
        assert f.read() == "import cdlab_zipimport_cache\n"
