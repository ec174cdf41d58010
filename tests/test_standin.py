"""Stand-in Llama-3.2-1B models: the exact 1B architecture (on the meta device, nothing
materialised) and the small one written, loaded like a Hub id and run."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import LlamaForCausalLM

from unlearnlib.cli import main
from unlearnlib.data.formatting import encode_example
from unlearnlib.models.loading import load_model, load_tokenizer
from unlearnlib.models.standin import standin_config, write_standin


def _rope(config) -> dict:
    """The rope settings: transformers 5 folds rope_theta into rope_parameters, 4.x keeps
    rope_scaling and rope_theta apart."""
    if getattr(config, "rope_parameters", None):
        return config.rope_parameters
    return {**config.rope_scaling, "rope_theta": config.rope_theta}


@pytest.fixture(scope="module")
def small_standin(tmp_path_factory, llama3_tokenizer):
    return write_standin("small", tmp_path_factory.mktemp("standin") / "small",
                         tokenizer=llama3_tokenizer)


def test_1b_has_llama_3_2_1b_config_and_parameter_count(llama3_tokenizer):
    config = standin_config("1b", llama3_tokenizer)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) == 1_235_814_400
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
            config.num_key_value_heads, config.intermediate_size, config.vocab_size) == \
        (16, 2048, 32, 8, 8192, 128256)
    assert config.tie_word_embeddings
    assert model.lm_head.weight is model.model.embed_tokens.weight
    rope = _rope(config)
    assert (rope["rope_type"], rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"],
            rope["original_max_position_embeddings"], rope["rope_theta"]) == \
        ("llama3", 32.0, 1.0, 4.0, 8192, 500000.0)
    assert config.eos_token_id == [128001, 128008, 128009]


def test_small_shares_the_vocabulary_and_rope_but_not_the_size(llama3_tokenizer):
    small, full = standin_config("small", llama3_tokenizer), standin_config("1b", llama3_tokenizer)
    assert small.vocab_size == 128256
    assert _rope(small) == _rope(full)
    assert small.hidden_size < full.hidden_size and small.num_hidden_layers < 16
    with pytest.raises(ValueError, match="size must be one of"):
        standin_config("8b", llama3_tokenizer)


def test_small_standin_loads_like_a_hub_id_and_runs(small_standin, llama3_tokenizer, tofu_dir):
    assert (small_standin / "model.safetensors").is_file()
    assert not list(small_standin.glob("*.bin"))
    tokenizer = load_tokenizer(small_standin)
    model = load_model(small_standin)
    assert isinstance(model, LlamaForCausalLM)
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == 128009
    assert tokenizer.chat_template == llama3_tokenizer.chat_template
    row = json.loads((tofu_dir / "forget10.json").read_text().splitlines()[0])
    example = encode_example(tokenizer, row["question"], row["answer"])
    assert example.input_ids == encode_example(llama3_tokenizer, row["question"],
                                               row["answer"]).input_ids
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([example.input_ids])).logits
    assert logits.shape == (1, len(example.input_ids), 128256)
    assert torch.isfinite(logits).all()


def test_cli_writes_a_standin(tmp_path, capsys):
    out = tmp_path / "standin"
    assert main(["models", "standin", "--size", "small", "--out", str(out), "--seed", "1"]) == 0
    assert str(out) in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert (config["vocab_size"], config["num_hidden_layers"]) == (128256, 2)
    assert (out / "tokenizer.json").is_file()


def test_the_audited_model_of_a_gpu_profile_can_be_a_standin_folder(small_standin, monkeypatch):
    """Notebooks 05 and 06 score and audit `audited_model(profile, AUDIT_MODEL)`: on the GPU
    profiles the seed's Hub id, which a folder (here the stand-in) replaces as it is."""
    from unlearnlib.models.loading import load_for_profile
    from unlearnlib.profiles import SEED_MODEL, get_profile
    from unlearnlib.train import pipeline

    def no_training(*args, **kwargs):
        raise AssertionError("the course's own NPO model was trained")

    monkeypatch.setattr(pipeline, "ensure_unlearned", no_training)
    gpu = get_profile("colab-t4", requires_cuda=False)
    assert pipeline.audited_model(gpu) == SEED_MODEL
    assert pipeline.audited_model(gpu, str(small_standin)) == str(small_standin)
    standin_profile = gpu.replace(audited_model=str(small_standin))
    model, tokenizer = load_for_profile(pipeline.audited_model(standin_profile), standin_profile)
    assert model.config.vocab_size == len(tokenizer) == 128256 and not model.training
