"""Lab image only: keep the bytecode of Python modules imported from zip files.

Ansible runs every module as an AnsiballZ zip, and CPython's zipimport keeps
no bytecode, so each task compiled ansible.module_utils again: 2.3 s of a
3.2 s `ping` on an idle TCG guest (python3 -X importtime, 2026-12-04). This
keeps a zip-imported module's code under the hash of its source (and of the
bytecode version), as CPython keeps __pycache__ for modules on disk, so only
the first task compiles it: the same `ping` took 1.6 s.

The code is what compile() gives for that source; only its file name is set
to this import's zip path, so tracebacks point where they did. Root's
processes only (the cache directory is root's, mode 0700: no one else can put
code in it), and any error falls back to compiling as before. Loaded at
every interpreter start by cdlab_zipimport_cache.pth; it imports nothing
until a zip import compiles (the start-up of python3 -c pass is unchanged).
"""

import os
import zipimport

CACHE = "/var/cache/cdlab-zipimport"
_compile_source = zipimport._compile_source  # pylint: disable=protected-access


def _named(code, filename):
    """The code object and every one nested in it, with co_filename set."""
    consts = tuple(_named(c, filename) if isinstance(c, type(code)) else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def _entry(cache, source):
    """The cache file for this source (the bytecode version is in the key)."""
    import hashlib  # pylint: disable=import-outside-toplevel
    from importlib.util import MAGIC_NUMBER  # pylint: disable=import-outside-toplevel

    return os.path.join(cache, hashlib.sha256(MAGIC_NUMBER + source).hexdigest())


def cached_compile_source(pathname, source, cache=CACHE):
    """zipimport._compile_source, through the cache. A cache that fails (no
    directory, a damaged entry, a full disk) never fails the import, and the
    source is compiled at most once either way."""
    import marshal  # pylint: disable=import-outside-toplevel

    try:
        path = _entry(cache, source)
        with open(path, "rb") as f:
            return _named(marshal.load(f), pathname)
    except Exception:  # pylint: disable=broad-except  # missing or damaged: compile it
        pass
    code = _compile_source(pathname, source)
    tmp = None
    try:
        # Written whole, then renamed: a reader never sees half an entry.
        tmp = "%s.%d.tmp" % (path, os.getpid())
        with open(tmp, "wb") as f:
            marshal.dump(code, f)
        os.replace(tmp, path)
    except Exception:  # pylint: disable=broad-except
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return code


if os.geteuid() == 0 and os.path.isdir(CACHE):
    zipimport._compile_source = cached_compile_source  # pylint: disable=protected-access
