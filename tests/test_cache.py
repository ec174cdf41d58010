"""The artifacts cache: keys, atomic writes, integrity, and the code version of a model."""

import pytest

from unlearnlib import cache
from unlearnlib.cache import atomic_dir, code_version, config_key


def test_config_key_depends_on_content_not_order():
    assert config_key({"a": 1, "b": [1, 2]}) == config_key({"b": [1, 2], "a": 1})
    assert config_key({"a": 1}) != config_key({"a": 2})
    assert len(config_key({"a": 1})) == 16 and len(config_key({"a": 1}, length=8)) == 8


def test_atomic_dir_appears_complete_or_not_at_all(tmp_path):
    folder = tmp_path / "model"
    with atomic_dir(folder) as partial:
        partial.mkdir()
        (partial / "weights").write_text("w")
    assert (folder / "weights").read_text() == "w"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]

    other = tmp_path / "other"
    with pytest.raises(RuntimeError), atomic_dir(other) as partial:
        partial.mkdir()
        raise RuntimeError("interrupted")
    assert not other.exists() and [p.name for p in tmp_path.iterdir()] == ["model"]


def test_code_version_covers_every_module_that_shapes_a_tiny_model(monkeypatch):
    shaping = cache._imported_modules("unlearnlib.train.zoo")
    for module in ("unlearnlib.train.finetune", "unlearnlib.models.tiny",
                   "unlearnlib.data.tofu", "unlearnlib.profiles"):
        assert module in shaping or module in {
            m for name in shaping for m in cache._imported_modules(name)}, module
    version = code_version("unlearnlib.train.zoo")
    from unlearnlib.train import zoo

    monkeypatch.setattr(zoo, "finetune", lambda *args: None)  # read from files, not objects
    assert code_version(zoo) == version
    assert code_version("unlearnlib.train.pipeline") != version


def test_code_version_changes_when_a_shaping_file_changes(monkeypatch, tmp_path):
    version = code_version("unlearnlib.train.zoo")
    original = cache._module_file

    def edited(name):
        path = original(name)
        if name == "unlearnlib.models.tiny":
            copy = tmp_path / "tiny.py"
            copy.write_text(path.read_text() + "\n# edited\n")
            return copy
        return path

    monkeypatch.setattr(cache, "_module_file", edited)
    assert code_version("unlearnlib.train.zoo") != version
