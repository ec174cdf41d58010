import pytest
import torch

from unlearnlib.profiles import PROFILES, get_profile, resolve_device, resolve_dtype


def test_tiny_profile_is_cpu_fp32():
    profile = get_profile("tiny")
    assert profile.data_source == "mini" and profile.full_model == "tiny"
    assert resolve_device(profile).type == "cpu"
    assert resolve_dtype(profile) == torch.float32


def test_overrides_apply_and_unknown_fields_are_named():
    profile = get_profile("tiny", unlearn_epochs=3, lora_target_modules=["q_proj"],
                          tiny_model={"hidden_size": 64})
    assert profile.unlearn_epochs == 3
    assert profile.lora_target_modules == ("q_proj",)
    assert profile.tiny_model.hidden_size == 64
    with pytest.raises(TypeError, match="no field.*epochs_typo.*Valid fields"):
        get_profile("tiny", epochs_typo=1)


def test_unknown_profile_lists_names():
    with pytest.raises(ValueError, match="tiny, colab-t4, gpu-full"):
        get_profile("laptop")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
@pytest.mark.parametrize("name", ["colab-t4", "gpu-full"])
def test_gpu_profile_without_cuda_names_tiny(name):
    with pytest.raises(RuntimeError, match="PROFILE='tiny'"):
        get_profile(name)


def test_gpu_profiles_differ_only_where_they_must():
    t4, full = PROFILES["colab-t4"], PROFILES["gpu-full"]
    assert (t4.precision, t4.use_lora) == ("fp16", True)
    assert (full.precision, full.use_lora) == ("bf16", False)
    assert t4.full_model == full.full_model and t4.data_source == full.data_source == "hub"
