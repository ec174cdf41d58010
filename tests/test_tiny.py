"""The tiny profile's tokenizer and model: deterministic, chat-ready, trainable, reloadable."""

import json

import torch

from unlearnlib.cli import main
from unlearnlib.data.formatting import ChatCollator, encode_dataset
from unlearnlib.data.tofu import load_tofu
from unlearnlib.models.loading import load_model, load_tokenizer, save_model
from unlearnlib.models.tiny import SPECIAL_TOKENS, build_model, build_tokenizer
from unlearnlib.profiles import get_profile
from unlearnlib.train.finetune import finetune
from unlearnlib.train.trainer import training_arguments


def test_tokenizer_is_deterministic(tiny_tokenizer):
    again = build_tokenizer()
    assert again.get_vocab() == tiny_tokenizer.get_vocab()
    text = "Who wrote 'The Glass Harbour'? <|eot_id|>"
    assert again(text)["input_ids"] == tiny_tokenizer(text)["input_ids"]


def test_tokenizer_has_llama3_specials_and_no_pad(tiny_tokenizer):
    for token in SPECIAL_TOKENS:
        assert len(tiny_tokenizer(token, add_special_tokens=False)["input_ids"]) == 1
    assert tiny_tokenizer.eos_token == "<|eot_id|>"
    assert tiny_tokenizer.pad_token is None  # as Llama 3: the collators pad with eos


def test_any_text_round_trips(tiny_tokenizer):
    text = "Zoë Okonkwo-Ñúñez wrote 《雪》 in 1987 — 42 % of it!"
    ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tiny_tokenizer.decode(ids) == text


def test_model_is_seeded(tiny_tokenizer):
    a, b = build_model(tiny_tokenizer, seed=3), build_model(tiny_tokenizer, seed=3)
    c = build_model(tiny_tokenizer, seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)
    assert a.config.vocab_size == len(tiny_tokenizer)


def test_save_and_load_round_trip_uses_safetensors(tiny_tokenizer, tiny_model, tmp_path):
    folder = save_model(tiny_model, tiny_tokenizer, tmp_path / "m")
    assert (folder / "model.safetensors").is_file()
    assert not list(folder.glob("*.bin"))
    reloaded, tokenizer = load_model(folder).eval(), load_tokenizer(folder)
    assert tokenizer.chat_template == tiny_tokenizer.chat_template
    ids = torch.tensor([tiny_tokenizer("Who is Funbel?")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(tiny_model(ids).logits, reloaded(ids).logits, atol=1e-6)


def test_tiny_model_trains_and_reloads_unchanged(tmp_path):
    """The foundation end to end: TOFU-mini -> tokenizer -> tiny Llama -> train -> reload."""
    profile = get_profile("tiny")
    rows = load_tofu("full", profile.data_source)
    tokenizer = build_tokenizer(profile.tiny_model.vocab_size, profile.data_source)
    model = build_model(tokenizer, profile.tiny_model, seed=0)
    steps = 12
    log = finetune(model, tokenizer, rows, training_arguments(
        profile, tmp_path / "train", max_steps=steps, logging_strategy="steps",
        logging_steps=steps // 4))
    losses = [entry["loss"] for entry in log if "loss" in entry]
    assert losses[-1] < losses[0] - 0.5
    batch = ChatCollator(tokenizer)(list(encode_dataset(rows.select(range(8)), tokenizer)))
    reloaded = load_model(save_model(model, tokenizer, tmp_path / "model"))
    with torch.no_grad():
        assert abs(model.eval()(**batch).loss.item() - reloaded(**batch).loss.item()) < 1e-5


def test_cli_data_info_prints_every_config(capsys):
    assert main(["data", "info"]) == 0
    out = capsys.readouterr().out
    assert "forget10_perturbed" in out and "key_span" in out and "1000" in out


def test_cli_errors_are_one_line_with_status_2(capsys, tmp_path):
    assert main(["data", "info", "--source", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unlearnlib: error:") and "\n" not in err


def test_cli_eval_summarize_json(tofu_dir, capsys):
    logs = tofu_dir / "eval_logs"
    assert main(["eval", "summarize",
                 str(logs / "tofu_Llama-3.2-1B-Instruct_full/evals_forget10/TOFU_EVAL.json"),
                 "--retain-log", str(logs / "tofu_Llama-3.2-1B-Instruct_retain90/TOFU_EVAL.json"),
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert abs(summary["forget_quality"] / 3.9054713571083378e-22 - 1) < 1e-9
