"""``tailor keys add | list | revoke``, run as a user would, on the key store of a home."""

from __future__ import annotations

import json
import re

from serving.keys import KeyStore
from tests.commands import run_tailor


def test_add_prints_the_key_once_list_never_revoke_removes(tmp_path):
    home = tmp_path / "home"
    added = run_tailor("keys", "add", "--scopes", "decide,ingest", "--name", "renderer", home=home)
    assert added.returncode == 0, added.stderr
    [token] = re.findall(r"tk_k_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", added.stdout)  # shown once
    found = re.search(
        r"added API key (k_[0-9a-f]{8}) 'renderer' \(scopes decide,ingest\)", added.stdout
    )
    assert found is not None
    key_id = found[1]
    assert token.startswith(f"tk_{key_id}_")
    path = home / "serving" / "keys.json"
    assert str(path) in added.stdout
    assert KeyStore(path, check_every=0).lookup(token.encode()) is not None
    assert token.encode() not in path.read_bytes()

    listed = run_tailor("keys", "list", home=home)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["id", "name", "scopes", "created"]
    assert lines[1].split()[:3] == [key_id, "renderer", "decide,ingest"]
    digest = json.loads(path.read_text())["keys"][key_id]["sha256"]
    assert token not in listed.stdout and digest not in listed.stdout

    revoked = run_tailor("keys", "revoke", key_id, home=home)
    assert revoked.returncode == 0 and f"revoked API key {key_id}" in revoked.stdout
    assert KeyStore(path, check_every=0).lookup(token.encode()) is None
    assert "no API keys in" in run_tailor("keys", "list", home=home).stdout


def test_bad_scopes_and_unknown_ids_exit_2_naming_them(tmp_path):
    home = tmp_path / "home"
    bad = run_tailor("keys", "add", "--scopes", "decide,root", home=home)
    assert bad.returncode == 2
    assert "scopes='decide,root': 'root' is not one of decide, ingest, admin" in bad.stderr
    unknown = run_tailor("keys", "revoke", "k_00000000", home=home)
    assert unknown.returncode == 2 and "no API key 'k_00000000'" in unknown.stderr
    assert "Traceback" not in bad.stderr + unknown.stderr


def test_serving_keys_file_names_the_store(tmp_path):
    chosen = tmp_path / "etc" / "tailor-keys.json"
    env = {"TAILOR_SERVING__KEYS_FILE": str(chosen)}
    added = run_tailor("keys", "add", "--scopes", "admin", home=tmp_path / "home", env=env)
    assert added.returncode == 0, added.stderr
    assert [k.scopes for k in KeyStore(chosen).keys()] == [frozenset({"admin"})]
    assert not (tmp_path / "home" / "serving").exists()
