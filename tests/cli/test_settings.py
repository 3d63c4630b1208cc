"""The settings: where the TOML file and the YAML files it names come from, and how the
packages' sections compose (the command line checks all, a service process reads its own)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from cli.settings import Settings
from features.errors import InputError
from features.segments import DEFAULT_SEGMENTS_FILE, load_segments
from features.snapshot import behaviour_feature_names
from serving.settings import ServiceSettings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TAILOR_CONFIG", "TAILOR_HOME", "TAILOR_SERVING__RULES_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("TAILOR_FEATURES__SEGMENTS_FILE", raising=False)


def test_no_file_means_packaged_defaults(tmp_path, monkeypatch):
    # A tailor.toml in the working folder is not a settings file unless named.
    (tmp_path / "tailor.toml").write_text('home = "elsewhere"\n[serving]\nport = "bad"\n')
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.config is None
    assert settings.home == Path(".tailor")
    assert settings.features.segments_file is None
    assert settings.serving.rules_file is None


def test_relative_paths_in_the_file_resolve_against_its_folder(tmp_path, monkeypatch):
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "tailor.toml").write_text(
        'home = "data"\n'
        "[features]\n"
        'segments_file = "segments.yaml"\n'
        "half_life_days = 7.0\n"
        "[serving]\n"
        f'rules_file = "{tmp_path / "abs" / "rules.yaml"}"\n'
        "port = 4000\n"
    )
    monkeypatch.chdir(tmp_path)
    settings = Settings(config=Path("etc/tailor.toml"))
    assert settings.home == Path("etc/data")
    assert settings.features.segments_file == Path("etc/segments.yaml")
    assert settings.features.half_life_days == 7.0
    assert settings.serving.rules_file == tmp_path / "abs" / "rules.yaml"  # absolute: as given
    # TAILOR_CONFIG names the file too; the environment wins over it, field by field.
    monkeypatch.setenv("TAILOR_CONFIG", "etc/tailor.toml")
    monkeypatch.setenv("TAILOR_SERVING__PORT", "5000")
    settings = Settings()
    assert settings.config == Path("etc/tailor.toml")
    assert (settings.serving.port, settings.serving.rules_file) == (
        5000,
        tmp_path / "abs" / "rules.yaml",
    )
    # An environment path is used as given.
    monkeypatch.setenv("TAILOR_SERVING__RULES_FILE", "mine.yaml")
    assert Settings().serving.rules_file == Path("mine.yaml")


def test_a_missing_or_bad_file_fails_naming_it(tmp_path):
    with pytest.raises(InputError, match=r"config='.*nope\.toml': no such settings file"):
        Settings(config=tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[serving\n")
    with pytest.raises(InputError, match="not TOML"):
        Settings(config=bad)
    bad.write_text('config = "other.toml"\n')
    with pytest.raises(InputError, match="cannot name another"):
        Settings(config=bad)
    bad.write_text("[serving]\nport = 0\n")
    with pytest.raises(ValidationError, match=r"serving\.port"):
        Settings(config=bad)
    bad.write_text("[serving]\nrules = 'x'\n")
    with pytest.raises(ValidationError, match=r"serving\.rules"):
        Settings(config=bad)


def test_packaged_segments_load_and_a_named_file_must_exist(tmp_path):
    names = behaviour_feature_names(Settings().features)
    assert DEFAULT_SEGMENTS_FILE.is_file()
    assert "loyal" in load_segments(None, names).names
    with pytest.raises(InputError, match=r"segments_file=.*no such file"):
        load_segments(tmp_path / "segments.yaml", names)


def test_the_command_line_checks_every_section_the_service_reads_its_own(tmp_path):
    path = tmp_path / "tailor.toml"
    path.write_text(
        "[recommender]\nhalf_life_days = 3.0\n"
        "[selectors]\nepsilon = 0.1\nattribution_window_hours = 24.0\n"
        "[serving]\nport = 4000\n"
    )
    full = Settings(config=path)
    assert (full.recommender.half_life_days, full.selectors.epsilon) == (3.0, 0.1)
    # The service process passes over training's settings but reads the window it
    # shares with training, and its own section.
    service = ServiceSettings(config=path)
    assert service.selectors.attribution_window_hours == 24.0
    assert service.serving.port == 4000
    assert not hasattr(service, "recommender")
    # A key no package knows stops the command line, naming it; inside a section the
    # service reads, it stops the service too.
    path.write_text("[recomender]\nhalf_life_days = 3.0\n")
    with pytest.raises(ValidationError, match="recomender"):
        Settings(config=path)
    path.write_text("[selectors]\nepsilonn = 0.1\n")
    with pytest.raises(ValidationError, match=r"selectors\.epsilonn"):
        Settings(config=path)
    path.write_text("[serving]\nprot = 4000\n")
    with pytest.raises(ValidationError, match=r"serving\.prot"):
        ServiceSettings(config=path)
