"""The models to unlearn from: cached by configuration, reused, rebuilt when corrupt."""

import json

import pytest
import torch
import transformers

from unlearnlib.cache import is_complete
from unlearnlib.models.loading import load_for_profile, load_model
from unlearnlib.profiles import PROFILES, TinyModelSize, TinyRecipe
from unlearnlib.train import zoo
from unlearnlib.train.pipeline import ensure_unlearned, unlearned_config
from unlearnlib.train.zoo import (
    build_tiny_models,
    cache_key,
    load_zoo_model,
    model_source,
    tiny_model_dir,
)


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNLIB_HOME", str(tmp_path))
    return tmp_path


def test_cache_key_follows_the_configuration(micro, small_tofu, tmp_path):
    key = cache_key(micro, "full")
    assert key == cache_key(micro.replace(), "full")
    changed = [micro.replace(finetune_epochs=2),
               micro.replace(tiny_model=TinyModelSize(hidden_size=24)),
               micro.replace(forget_split="forget05")]
    assert all(cache_key(p, "retain") != cache_key(micro, "retain")
               for p in changed)
    longer_base = micro.replace(tiny_recipe=TinyRecipe(base_epochs=2))
    assert cache_key(longer_base, "full") != key  # via the base model
    # The recipe's seed makes other models; the profile's seed only drives unlearning.
    other_seed = micro.replace(tiny_recipe=TinyRecipe(base_epochs=1, seed=1))
    assert cache_key(other_seed, "retain") != cache_key(micro, "retain")
    assert cache_key(micro.replace(seed=1), "full") == key
    assert len({cache_key(micro, role) for role in ("base", "full", "retain")}) == 3
    # Things that do not shape the weights leave the key alone.
    assert cache_key(micro.replace(eval_batch_size=7, max_new_tokens=5), "full") == key
    # The data files' checksum is part of it: an edited file gives another model.
    edited = tmp_path / "edited"
    edited.mkdir()
    for file in small_tofu.iterdir():
        (edited / file.name).write_bytes(file.read_bytes())
    (edited / "retain90.json").write_text((small_tofu / "retain90.json").read_text()[:-200])
    assert cache_key(micro.replace(data_source=str(edited)), "full") != key


def test_models_are_built_once_reused_and_rebuilt_when_corrupt(home, micro, monkeypatch,
                                                               capsys):
    folders = build_tiny_models(micro, progress=True)
    assert set(folders) == {"full", "retain"}
    assert is_complete(tiny_model_dir(micro, "base"))
    assert all(is_complete(f) and f.parent == home / "models" for f in folders.values())
    record = json.loads((folders["retain"] / "build.json").read_text())
    assert record["split"] == "retain90" and record["base"] == cache_key(micro, "base")
    assert record["data_checksum"] and record["code_version"]
    assert "tiny full: epoch 1/1" in capsys.readouterr().out  # one progress line an epoch

    def no_training(*args, **kwargs):
        raise AssertionError("a cached model was trained again")

    monkeypatch.setattr(zoo, "finetune", no_training)
    assert build_tiny_models(micro, progress=False) == folders

    weights = folders["full"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # an interrupted copy
    assert not is_complete(folders["full"])
    monkeypatch.undo()
    monkeypatch.setenv("UNLEARNLIB_HOME", str(home))
    retain_bytes = (folders["retain"] / "model.safetensors").read_bytes()
    assert build_tiny_models(micro, progress=True) == folders
    assert "incomplete or corrupt; rebuilding" in capsys.readouterr().out
    assert is_complete(folders["full"])
    assert (folders["retain"] / "model.safetensors").read_bytes() == retain_bytes  # untouched

    model, tokenizer = load_zoo_model(micro, "full")
    assert model_source(micro, "full") == tiny_model_dir(micro, "full") == folders["full"]
    assert model.config.hidden_size == micro.tiny_model.hidden_size and not model.training
    assert tokenizer.chat_template and tokenizer.eos_token == "<|eot_id|>"


def test_gpu_profiles_name_the_published_models_and_explain_gated_access(home, monkeypatch):
    profile = PROFILES["colab-t4"].replace(requires_cuda=False)
    assert model_source(profile, "full") == "open-unlearning/tofu_Llama-3.2-1B-Instruct_full"
    assert model_source(profile, "retain").endswith("_retain90")
    with pytest.raises(ValueError, match="'full' or 'retain'"):
        model_source(profile, "base")

    def gated(*args, **kwargs):
        raise OSError("401 Client Error. Cannot access gated repo for url https://huggingface.co/"
                      "meta-llama/Llama-3.2-1B-Instruct/resolve/main/config.json.")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", gated)
    with pytest.raises(PermissionError, match="HF_TOKEN"):
        load_for_profile("meta-llama/Llama-3.2-1B-Instruct", profile)


def test_parallel_build_trains_the_same_weights_as_one_process(micro, tmp_path, monkeypatch):
    folders = {}
    for jobs in (1, 2):
        monkeypatch.setenv("UNLEARNLIB_HOME", str(tmp_path / f"jobs{jobs}"))
        folders[jobs] = build_tiny_models(micro, progress=False, jobs=jobs)
    for role in ("full", "retain"):
        assert folders[2][role].parent.parent == tmp_path / "jobs2"
        assert ((folders[1][role] / "model.safetensors").read_bytes()
                == (folders[2][role] / "model.safetensors").read_bytes())


def test_unlearned_model_is_trained_once_and_keyed_by_its_settings(home, micro, monkeypatch):
    profile = micro.replace(unlearn_epochs=1)
    folder = ensure_unlearned(profile, "npo", progress=False)
    assert is_complete(folder) and folder.name.startswith("tiny-npo-")
    record = json.loads((folder / "build.json").read_text())
    assert record["method"]["beta"] == 0.1 and record["unlearn_epochs"] == 1
    full, _ = load_zoo_model(profile, "full")
    unlearned = load_model(folder)
    pairs = zip(full.parameters(), unlearned.parameters(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)

    import unlearnlib.train.pipeline

    def no_training(*args, **kwargs):
        raise AssertionError("a cached unlearned model was trained again")

    monkeypatch.setattr(unlearnlib.train.pipeline, "unlearn", no_training)
    assert ensure_unlearned(profile, "npo", progress=False) == folder
    changed = [unlearned_config(profile.replace(learning_rate=1e-3), "npo"),
               unlearned_config(profile.replace(unlearn_epochs=2), "npo"),
               unlearned_config(profile, "graddiff")]
    assert all(config != unlearned_config(profile, "npo") for config in changed)
