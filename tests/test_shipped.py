"""The tiny models shipped in the package: every student starts from the same weights."""

import json

import pytest

from unlearnlib.cache import file_sha256
from unlearnlib.models import shipped
from unlearnlib.models.shipped import SHIPPED_DIR, read_manifest, ship_models
from unlearnlib.profiles import get_profile
from unlearnlib.train import zoo
from unlearnlib.train.zoo import (
    SHIPPED_TINY_MODELS,
    available_tiny_model,
    build_config,
    build_tiny_models,
    describe_source,
    ensure_tiny_model,
    same_as_shipped,
    second_retain_model,
)


def _no_training(*args, **kwargs):
    raise AssertionError("a model was trained where a shipped one should have been used")


def test_package_ships_the_tiny_profiles_models_intact(tmp_path, monkeypatch):
    manifest = read_manifest()
    assert set(manifest["models"]) == set(SHIPPED_TINY_MODELS)
    for name, entry in manifest["models"].items():
        assert "model.safetensors" in entry["files"] and "tokenizer.json" in entry["files"]
        for file, sha in entry["files"].items():
            assert file_sha256(SHIPPED_DIR / name / file) == sha
    assert manifest["built_with"]["torch_threads"] == 1
    # A fresh home finds every shipped model for the tiny profile as it is, without training:
    # the shipped settings are the ones the profile and recipe ask for today.
    monkeypatch.setenv("UNLEARNLIB_HOME", str(tmp_path))
    monkeypatch.setattr(zoo, "finetune", _no_training)
    tiny = get_profile("tiny")
    assert build_tiny_models(tiny) == {"full": SHIPPED_DIR / "full",
                                       "retain": SHIPPED_DIR / "retain"}
    assert second_retain_model(tiny) == SHIPPED_DIR / "retain-seed1"
    assert describe_source(SHIPPED_DIR / "full").startswith(
        "shipped with unlearnlib (full; trained by `unlearnlib models ship` on 1 thread(s)")
    assert describe_source("org/model") == "org/model (Hugging Face Hub)"
    assert ensure_tiny_model(tiny.replace(seed=5), "full") == SHIPPED_DIR / "full"
    # Another architecture is not what was shipped.
    assert available_tiny_model(tiny.replace(finetune_epochs=3), "full") is None


def test_shipped_models_are_found_checked_and_skipped_on_request(micro,
                                                                  tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNLIB_HOME", str(tmp_path / "maintainer"))
    built = build_tiny_models(micro, progress=False)
    folder = ship_models({"full": built["full"], "retain": built["retain"]}, tmp_path / "ship")
    monkeypatch.setattr(shipped, "SHIPPED_DIR", folder)
    record = json.loads((folder / "full" / "build.json").read_text())
    assert read_manifest(folder)["models"]["full"]["settings"] == shipped.portable_settings(
        record)
    assert "code_version" not in read_manifest(folder)["models"]["full"]["settings"]

    monkeypatch.setenv("UNLEARNLIB_HOME", str(tmp_path / "student"))
    monkeypatch.setattr(zoo, "finetune", _no_training)
    assert ensure_tiny_model(micro, "full") == folder / "full"
    assert describe_source(built["retain"]).startswith("trained on this machine")
    assert same_as_shipped(micro, "retain", built["retain"]) is True
    assert same_as_shipped(micro, "retain", folder / "retain") is None
    assert shipped.shipped_model(build_config(micro, "retain")) == folder / "retain"
    # train_from_scratch ignores what is shipped.
    scratch = micro.replace(train_from_scratch=True)
    assert available_tiny_model(scratch, "full") is None

    weights = folder / "full" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(RuntimeError, match="damaged.*train_from_scratch"):
        ensure_tiny_model(micro, "full")
