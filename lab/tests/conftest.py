"""Every lab test runs on lab state and an image cache of its own, never on
the real ones (<repo>/.lab, /var/cache/clusterducks-lab)."""

import pytest


@pytest.fixture(autouse=True)
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("CDLAB_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("CDLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CDLAB_LAB", raising=False)
    return tmp_path
