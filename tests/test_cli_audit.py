"""`unlearnlib audit` end to end on a micro model zoo, and its errors on bad input."""

from __future__ import annotations

import json
import shutil

import matplotlib
import pandas as pd
import pytest

from unlearnlib import profiles
from unlearnlib.audit.run import FAMILIES, RECORDS_FILE, TABLE_FILE
from unlearnlib.audit.seed_card import CARD_COLUMNS, SEED_CARD_FILE, VIEWS
from unlearnlib.cli import main
from unlearnlib.evaluation.eval_logs import SUMMARY_FILENAME
from unlearnlib.profiles import TinyModelSize, TinyRecipe, get_profile
from unlearnlib.train import zoo
from unlearnlib.train.zoo import tiny_model_dir

matplotlib.use("Agg")

#: Two layers: the logit lens reads every layer but the last.
MICRO = TinyModelSize(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=32)
#: The cheap families: no sampling passes, no LoRA training.
CHEAP = ("direct", "format_shift", "logit_lens")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def micro(small_tofu, tmp_path, monkeypatch):
    """The tiny profile on TOFU-mini cut to 24 rows a file, a micro model, one epoch each
    (the full and retain models train in seconds into a temporary UNLEARNLIB_HOME)."""
    profile = get_profile("tiny", tiny_model=MICRO, finetune_epochs=1, train_batch_size=8,
                          max_new_tokens=8, data_source=str(small_tofu),
                          tiny_recipe=TinyRecipe(base_epochs=1))
    monkeypatch.setenv("UNLEARNLIB_HOME", str(tmp_path / "home"))
    monkeypatch.setitem(profiles.PROFILES, "tiny", profile)
    return profile


def test_audit_writes_the_files_and_prints_the_leak_table(micro, tmp_path, capsys) -> None:
    audited = tmp_path / "runs" / "npo"  # stands in for an unlearned model: a copy of full
    shutil.copytree(zoo.model_source(micro, "full"), audited)
    (audited / SUMMARY_FILENAME).write_text(json.dumps({"forget_quality": 6.4e-10,
                                                        "model_utility": 0.81}))
    out = audited / "audit"
    code = main(["audit", "--profile", "tiny", "--model", str(audited), "--out", str(out),
                 "--families", ",".join(CHEAP), "-p", "n_bootstrap", "50"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    printed = captured.out
    table = pd.read_csv(out / TABLE_FILE)
    assert set(table["model"]) == {"full", "retain", "npo"}
    assert set(table["family"]) == {*CHEAP, "overall"}
    records = pd.read_json(out / RECORDS_FILE, lines=True)
    assert set(records["family"]) == set(CHEAP)
    # the audited copy of full answers exactly as full does, probe for probe
    same = records.pivot_table(index=["family", "probe", "fact_id", "seed"], columns="model",
                               values="recalled", aggfunc="first")
    assert (same["npo"] == same["full"]).all()
    assert (out / "leak_rates.png").stat().st_size > 0
    assert (out / "membership.csv").is_file()
    assert all(family in printed for family in CHEAP)
    assert "novel_recall_leak" in printed and "npo" in printed
    assert str(out / TABLE_FILE) in printed
    assert tiny_model_dir(micro, "retain").is_dir()  # the zoo went to UNLEARNLIB_HOME
    card = pd.read_csv(out / SEED_CARD_FILE, index_col=0)
    assert list(card.columns) == [*CARD_COLUMNS, "full", "retain", "npo"]
    assert card.loc[VIEWS["forget_quality"], "npo"] == 6.4e-10  # from the model's summary
    assert card.loc[VIEWS["loglik_shift"], "npo"] == 0.0  # a copy of full
    assert "seed card" in printed and "6.4e-10" in printed and "0.967" in printed


@pytest.mark.parametrize(("setup", "arguments", "message"), [
    ("missing", [], "does not exist"),
    ("empty", [], "has no model.safetensors"),
    ("model", ["--families", "direct,psychic"], "choose from " + ", ".join(FAMILIES)),
    ("model", ["-p", "n_sample", "4"], "Valid keys: n_samples"),
    ("model", ["--model-name", "retain"], "taken by the profile's retain model"),
    ("model", ["--summary", "nowhere.json"], "--summary nowhere.json does not exist"),
])
def test_audit_refuses_bad_input_before_loading_models(micro, tmp_path, capsys, monkeypatch,
                                                       setup, arguments, message) -> None:
    folder = tmp_path / "npo"
    if setup != "missing":
        folder.mkdir()
    if setup == "model":
        (folder / "model.safetensors").write_bytes(b"")

    def no_zoo(*args, **kwargs):
        raise AssertionError("the zoo models were loaded before the input was checked")

    monkeypatch.setattr(zoo, "load_zoo_model", no_zoo)
    code = main(["audit", "--model", str(folder), "--out", str(tmp_path / "out"), *arguments])
    error = capsys.readouterr().err
    assert code == 2
    assert error.startswith("unlearnlib: error: ") and message in error
    assert not (tmp_path / "out").exists()
