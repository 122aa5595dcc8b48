"""A registry found by walking up must be the user's own (git's safe.directory, CVE-2022-24765).

Another user's ``.mreg`` in a parent directory would receive the user's models and
choose where their reads come from; it is refused with an error that names it and
says how to trust it. Root trusts root's own and, under sudo, SUDO_UID's, as git does.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import assert_clean_failure, run_cli, run_mreg

from mreg.errors import RegistryNotFoundError, UntrustedRegistryError
from mreg.registry import Registry

STRANGER = 4242  # a uid no test runs as


@pytest.fixture
def foreign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A registry in ``tmp_path/shared`` with a model, and a working directory below it,
    owned (as far as mreg can tell) by someone else: this process is made to run as STRANGER."""
    shared = tmp_path / "shared"
    registry = Registry.init(shared)
    (tmp_path / "x").write_bytes(b"x")
    registry.add("planted@1.0.0", [tmp_path / "x"])
    registry.set_config("fallback.url", "http://attacker.example/registry")
    (shared / "work").mkdir()
    monkeypatch.chdir(shared / "work")
    monkeypatch.setattr(os, "geteuid", lambda: STRANGER)
    monkeypatch.delenv("SUDO_UID", raising=False)
    monkeypatch.delenv("MREG_SAFE_DIRECTORIES", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home-config"))
    return shared


def test_another_users_registry_above_is_refused_with_how_to_trust_it(foreign: Path) -> None:
    with pytest.raises(UntrustedRegistryError) as caught:
        Registry.open()
    message = str(caught.value)
    assert str(foreign) in message and "MREG_SAFE_DIRECTORIES" in message and "[safe]" in message
    assert isinstance(caught.value, RegistryNotFoundError)  # refused as if absent: bucket commands still run
    result = run_cli("add", "mine@1.0.0", str(foreign / "work"))
    assert_clean_failure(result, code=3)
    assert "--registry" in result.stderr and "mreg init" in result.stderr
    assert not (foreign / ".mreg" / "models" / "mine").exists()  # nothing written into it


def test_the_environment_or_the_users_own_config_can_trust_it(foreign: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MREG_SAFE_DIRECTORIES", f"/elsewhere{os.pathsep}{foreign}")
    assert Registry.open().root == foreign / ".mreg"
    monkeypatch.setenv("MREG_SAFE_DIRECTORIES", "*")
    assert Registry.open().root == foreign / ".mreg"
    monkeypatch.delenv("MREG_SAFE_DIRECTORIES")
    user_config = tmp_path / "home-config" / "mreg" / "config"
    user_config.parent.mkdir(parents=True)
    user_config.write_text(f"[safe]\n\tdirectory = {foreign}\n")
    assert Registry.open().root == foreign / ".mreg"
    user_config.write_text("[safe]\n\tdirectory = relative/is/ignored\n")
    with pytest.raises(UntrustedRegistryError):
        Registry.open()


def test_a_registry_cannot_vouch_for_itself(foreign: Path) -> None:
    config = foreign / ".mreg" / "config"
    config.write_text(config.read_text() + f"[safe]\n\tdirectory = {foreign}\n\tdirectory = *\n")
    with pytest.raises(UntrustedRegistryError):
        Registry.open()


def test_naming_a_registry_is_trusting_it(foreign: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Registry.open(foreign).root == foreign / ".mreg"
    assert run_cli("--registry", str(foreign), "show", "planted").exit_code == 0
    monkeypatch.setenv("MREG_DIR", str(foreign))
    assert Registry.open().root == foreign / ".mreg"


def test_a_config_owned_by_someone_else_in_ones_own_registry_is_refused(foreign: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Path.stat

    def stat(path: Path, **kwargs: object) -> os.stat_result:
        status = real(path, **kwargs)  # type: ignore[arg-type]
        if path.name != "config":
            return os.stat_result((*status[:4], STRANGER, *status[5:]))
        return status

    monkeypatch.setattr(Path, "stat", stat)  # the directory is "ours", its config still the stranger's
    with pytest.raises(UntrustedRegistryError):
        Registry.open()


def test_root_uses_root_owned_registries_and_its_sudo_users_but_no_others(foreign: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    owner = (foreign / ".mreg").stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    if owner == 0:
        assert Registry.open().root == foreign / ".mreg"  # root's own
        return
    with pytest.raises(UntrustedRegistryError):
        Registry.open()
    monkeypatch.setenv("SUDO_UID", str(owner))
    assert Registry.open().root == foreign / ".mreg"  # sudo from the owner
    monkeypatch.setenv("SUDO_UID", str(owner + 1))
    with pytest.raises(UntrustedRegistryError):
        Registry.open()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_as_root_a_registry_chowned_to_another_user_is_refused_unless_sudo_from_them(tmp_path: Path) -> None:
    shared = tmp_path / "scratch"
    Registry.init(shared)
    (shared / "work").mkdir()
    for path in (shared / ".mreg", shared / ".mreg" / "config"):
        os.chown(path, STRANGER, STRANGER)
    env = {"SUDO_UID": "", "MREG_SAFE_DIRECTORIES": "", "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    refused = run_mreg("ls", cwd=shared / "work", env=env)
    assert_clean_failure(refused, code=3)
    assert f"refusing the registry in {shared}: it belongs to uid {STRANGER}" in refused.stderr
    assert run_mreg("ls", cwd=shared / "work", env={**env, "SUDO_UID": str(STRANGER)}).exit_code == 0
    assert run_mreg("ls", cwd=shared / "work", env={**env, "MREG_SAFE_DIRECTORIES": str(shared)}).exit_code == 0
    assert run_mreg("--registry", str(shared), "ls", cwd=tmp_path, env=env).exit_code == 0
