"""The API key store: hashed keys in a JSON file, looked up by token, reloaded on change."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from cli.settings import Settings
from features.errors import InputError, NotFoundError
from serving.keys import SCOPES, ApiKey, KeyStore, parse_scopes
from serving.settings import Scope

REPO = Path(__file__).resolve().parents[2]


class Clock:
    """Monotonic seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "serving" / "keys.json"


def _other_process(path: Path, *args: str) -> object:
    done = subprocess.run(
        [sys.executable, "-m", "serving.keys", str(path), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    return json.loads(done.stdout)


def test_scopes_are_the_settings_scopes():
    assert set(SCOPES) == set(typing.get_args(Scope))


def test_add_list_revoke(path):
    store = KeyStore(path)
    assert store.keys() == [] and not path.exists()
    made = store.add(name="renderer", scopes="decide, ingest")
    assert made.key.id.startswith("k_") and len(made.key.id) == 10
    assert made.token.startswith(f"tk_{made.key.id}_")
    assert made.key.scopes == {"decide", "ingest"} and made.key.name == "renderer"
    other = store.add(scopes=["admin"])
    assert [k.id for k in store.keys()] == [made.key.id, other.key.id]
    assert store.keys()[0] == made.key  # id, name, scopes, created: never the secret
    assert store.revoke(made.key.id) == made.key
    assert [k.id for k in store.keys()] == [other.key.id]
    with pytest.raises(NotFoundError, match=made.key.id):
        store.revoke(made.key.id)


def test_lookup_valid_invalid_and_revoked_tokens(path):
    store = KeyStore(path, check_every=0)
    made = store.add(name="renderer", scopes="decide")
    found = store.lookup(made.token.encode())
    assert found == ApiKey(made.key.id, "renderer", frozenset({"decide"}), made.key.created)
    assert store.lookup(f"  {made.token} ".encode()) == found  # the header's spacing
    prefix, key_id, secret = "tk_", made.key.id, made.token[len("tk_k_12345678_") :]
    wrong_secret = ("A" if secret[0] != "A" else "B") + secret[1:]
    for token in (
        b"",
        b"tk_",
        made.token[:-1].encode(),  # one character short
        (made.token + "x").encode(),
        f"{prefix}{key_id}_{wrong_secret}".encode(),
        f"{prefix}k_00000000_{secret}".encode(),  # an id that does not exist
        made.token.upper().encode(),
        b"\xff\xfe" * 30,
    ):
        assert store.lookup(token) is None, token
    store.revoke(made.key.id)
    assert store.lookup(made.token.encode()) is None


def test_a_key_revoked_or_added_by_another_process_takes_effect_after_the_next_check(path):
    clock = Clock()
    store = KeyStore(path, clock=clock)  # checks the file at most once a second
    made = store.add(scopes="decide")
    assert store.lookup(made.token.encode()) is not None
    revoked = _other_process(path, "revoke", made.key.id)
    assert revoked == {**revoked, "id": made.key.id}
    clock.now += 0.5
    assert store.lookup(made.token.encode()) is not None  # not checked again yet
    clock.now += 0.6
    assert store.lookup(made.token.encode()) is None
    added = _other_process(path, "add", "--scopes", "ingest", "--name", "loader")
    assert isinstance(added, dict)
    assert store.lookup(added["token"].encode()) is None  # checked 0 s ago
    clock.now += 1.0
    key = store.lookup(added["token"].encode())
    assert key is not None and key.scopes == {"ingest"} and key.name == "loader"


def test_the_file_holds_digests_never_a_key(path):
    store = KeyStore(path)
    tokens = [store.add(name=f"k{n}", scopes="decide,admin").token for n in range(3)]
    store.revoke(store.keys()[0].id)
    text = path.read_bytes()
    for token in tokens:
        secret = token[len("tk_k_12345678_") :]
        assert token.encode() not in text and secret.encode() not in text
    data = json.loads(text)
    assert data["version"] == 1 and len(data["keys"]) == 2
    for entry in data["keys"].values():
        assert set(entry) == {"name", "scopes", "created", "sha256"}
        assert len(bytes.fromhex(entry["sha256"])) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Nothing else was left beside it: no temporary file with a key in it.
    assert sorted(p.name for p in path.parent.iterdir()) == ["keys.json", "keys.json.lock"]


def test_ensure_adds_a_key_only_to_an_empty_store(path):
    store = KeyStore(path)
    made = store.ensure(name="admin", scopes="decide,ingest,admin")
    assert made is not None and made.key.scopes == set(SCOPES)
    assert store.ensure(name="admin", scopes="admin") is None
    assert len(store.keys()) == 1


def test_bad_scopes_and_names_are_refused_naming_the_field(path):
    store = KeyStore(path)
    with pytest.raises(InputError, match=r"scopes=.*'root' is not one of decide, ingest, admin"):
        store.add(scopes="decide,root")
    with pytest.raises(InputError, match="scopes"):
        parse_scopes(" , ")
    with pytest.raises(InputError, match="name"):
        store.add(name="two\nlines", scopes="decide")
    assert not path.exists() or store.keys() == []


def test_a_broken_key_file_grants_nothing_until_it_is_fixed(path, caplog):
    clock = Clock()
    store = KeyStore(path, clock=clock)
    made = store.add(scopes="decide")
    good = path.read_text()
    path.write_text("{not json")
    clock.now += 1
    assert store.lookup(made.token.encode()) is None
    assert "not a key file" in caplog.text
    with pytest.raises(InputError, match="keys_file"):
        store.keys()
    path.write_text(good)
    clock.now += 1
    assert store.lookup(made.token.encode()) is not None


def test_the_default_key_file_is_under_home(tmp_path):
    assert Settings(home=tmp_path).keys_file == tmp_path / "serving" / "keys.json"
    chosen = tmp_path / "elsewhere.json"
    assert Settings(home=tmp_path, serving={"keys_file": chosen}).keys_file == chosen  # type: ignore[arg-type]


def test_concurrent_writers_lose_no_key(path):
    """Each add reads, changes and replaces the file under the lock: none is lost."""
    script = (
        "import sys; from pathlib import Path; from serving.keys import KeyStore\n"
        "store = KeyStore(Path(sys.argv[1]))\n"
        "for n in range(15): store.add(name=f'{sys.argv[2]}-{n}', scopes='decide')\n"
    )
    writers = [
        subprocess.Popen([sys.executable, "-c", script, str(path), f"w{w}"], cwd=REPO)
        for w in range(3)
    ]
    assert [w.wait(timeout=60) for w in writers] == [0, 0, 0]
    names = sorted(k.name for k in KeyStore(path).keys())
    assert names == sorted(f"w{w}-{n}" for w in range(3) for n in range(15))
