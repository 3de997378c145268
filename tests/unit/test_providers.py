"""Replacement decisions of the dynamic providers: outputs never force a replacement, watched inputs do."""

from __future__ import annotations

from providers import command, libvirt


def test_check_reruns_only_when_watched_inputs_change() -> None:
    p = command._CheckProvider()
    olds = {"step": "failover", "spec": "{}", "triggers": ["a"], "result": "{...}"}
    same = p.diff("id", olds, {"step": "failover", "spec": "{}", "triggers": ["a"], "private_key": "k"})
    assert not same.changes
    changed = p.diff("id", olds, {"step": "failover", "spec": "{}", "triggers": ["b"]})
    assert changed.changes and changed.replaces == ["triggers"] and changed.delete_before_replace


def test_key_and_password_keep_their_secrets_unless_their_input_changes() -> None:
    key = command._KeyProvider()
    assert not key.diff("id", {"comment": "c", "private_key": "x"}, {"comment": "c"}).changes
    assert key.diff("id", {"comment": "c"}, {"comment": "d"}).replaces == ["comment"]
    pw = command._PasswordProvider()
    assert not pw.diff("id", {"length": 8, "value": "secret"}, {"length": 8}).changes
    assert pw.diff("id", {"length": 8}, {"length": 6}).replaces == ["length"]


def test_libvirt_outputs_do_not_replace() -> None:
    vol = libvirt._VolumeProvider()
    olds = {"uri": "u", "pool": "p", "name": "n", "path": "/pool/n"}
    assert not vol.diff("id", olds, {"uri": "u", "pool": "p", "name": "n", "path": None}).changes
    res = vol.diff("id", olds, {"uri": "u", "pool": "p", "name": "m", "path": None})
    assert res.replaces == ["name"] and res.delete_before_replace
