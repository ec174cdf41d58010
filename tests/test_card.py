"""The model card of a sweep point: metadata, every section filled from the run's results."""

import json
import re

import pytest
from huggingface_hub import ModelCard
from shared import SMALL

from unlearnlib.audit.probes import forget_facts
from unlearnlib.audit.run import run_audit
from unlearnlib.cli import main
from unlearnlib.course.card import CARD_FILE, NOT_MEASURED, model_card, write_card
from unlearnlib.course.sweep import (
    CHECKPOINT_DIR,
    load_results,
    point_id,
    point_results,
    sweep_report,
    write_results,
)
from unlearnlib.data.tofu import HUB_DATASET, load_tofu
from unlearnlib.display import format_number
from unlearnlib.evaluation.evaluate import evaluate_model
from unlearnlib.models.tiny import build_model
from unlearnlib.profiles import get_profile
from unlearnlib.train.prepare import save_trained
from unlearnlib.train.unlearn import objective, unlearn

PARAMETERS = {"method": "npo", "lr": 1e-3, "epochs": 1, "beta": 0.2}
FAST = {"max_samples": 2, "max_new_tokens": 2, "progress": False}


@pytest.fixture(scope="module")
def point(tmp_path_factory, tiny_tokenizer):
    """One audited sweep point, made in-process as the sweep notebook makes it (not ranked).

    The notebook itself runs through papermill in test_sweep; here the same library calls
    run without a kernel start, so the card tests stay fast.
    """
    profile = get_profile("tiny", unlearn_epochs=1, learning_rate=PARAMETERS["lr"])
    full = build_model(tiny_tokenizer, SMALL, seed=0)
    retain = build_model(tiny_tokenizer, SMALL, seed=1).eval()
    folder = tmp_path_factory.mktemp("runs") / point_id(PARAMETERS)
    goal = objective("npo", beta=PARAMETERS["beta"])
    trainer = unlearn(full, tiny_tokenizer, load_tofu("forget10", "mini"),
                      load_tofu("retain90", "mini"), profile, folder / "trainer", goal,
                      max_steps=1)
    save_trained(trainer.model, tiny_tokenizer, folder / CHECKPOINT_DIR)
    reference = evaluate_model(retain, tiny_tokenizer, profile, **FAST)
    evaluation = evaluate_model(trainer.model.eval(), tiny_tokenizer, profile,
                                reference=reference.eval_log, out_dir=folder, **FAST)
    facts = forget_facts("forget10", "mini").head(20)
    audit = run_audit({"retain": (retain, tiny_tokenizer),
                       "unlearned": (trainer.model, tiny_tokenizer)}, profile,
                      families=["direct"], facts=facts, max_new_tokens=2, progress=False)
    results = point_results(folder.name, {**PARAMETERS, "alpha": goal.alpha}, "tiny",
                            evaluation, trainer, {"full": "local/full", "retain": "local/retain"},
                            {"unlearn": 1.0}, audit)
    write_results(folder, results)
    return folder


def _copy_point(point, tmp_path, results, settings=None):
    """A copy of the point with edited results.json (and TOFU_EVAL.json settings)."""
    copy = tmp_path / results["point"]
    copy.mkdir()
    (copy / "results.json").write_text(json.dumps(results))
    log = json.loads((point / "TOFU_EVAL.json").read_text())
    log["unlearnlib_settings"].update(settings or {})
    (copy / "TOFU_EVAL.json").write_text(json.dumps(log))
    return copy


def test_unranked_point_says_so(point):
    text = model_card(point).text
    assert "has not been ranked" in text


def test_card_of_the_rank_one_point_is_filled_from_its_results(point):
    report = sweep_report(point.parent, grid_size=1)
    assert report.best == point
    assert main(["card", str(point)]) == 0
    path = point / CARD_FILE
    assert write_card(point) == path
    card = ModelCard.load(path)
    results = load_results(point)
    assert card.data.datasets is None  # TOFU-mini is not on the Hub
    assert card.data.license == "mit"
    assert {"unlearning", "tofu", "npo"} <= set(card.data.tags)
    assert card.data.base_model == "local/full"  # names a Hub id (a folder would be left out)
    text = card.text
    for section in ("## Model details", "## Selection", "## Evaluation", "## Leak audit"):
        assert section in text
    assert NOT_MEASURED not in text
    assert f"{results['summary']['model_utility']:.3f}" in text
    assert "| beta | 0.2 |" in text and "| lr | 0.001 |" in text
    assert "Grid size: 1 points" in text and "Rank of this point: 1 of 1" in text
    selection = json.loads((point.parent / "selection.json").read_text())
    assert selection["rule"] in text
    direct = {row["statistic"]: row for row in results["audit"]["leak_table"]
              if row["family"] == "direct"}
    leak = direct["leak_rate"]
    assert f"| direct | {format_number(leak['estimate'])} [{format_number(leak['ci_low'])}, "\
        in text


def test_card_without_audit_says_none_was_run(point, tmp_path):
    results = load_results(point)
    results.pop("audit")
    text = model_card(_copy_point(point, tmp_path, results)).text
    assert "No leak audit was run" in text
    assert "| direct |" not in text


def test_unfinished_point_has_no_card(tmp_path):
    with pytest.raises(FileNotFoundError):
        model_card(tmp_path)


def test_tiny_card_names_tofu_mini_not_the_hub_data_set(point):
    text = model_card(point).text
    assert "TOFU-mini forget10" in text
    assert HUB_DATASET not in text


def test_hub_run_card_lists_the_hub_data_set(point, tmp_path):
    copy = _copy_point(point, tmp_path, load_results(point), {"source": HUB_DATASET})
    card = model_card(copy)
    assert card.data.datasets == [HUB_DATASET]
    assert "TOFU forget10" in card.text and "TOFU-mini" not in card.text


def test_card_holds_no_local_absolute_paths(point, tmp_path):
    results = load_results(point)
    folders = {role: tmp_path / "home" / "models" / f"tiny-{role}" for role in ("full", "retain")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    results["models"] = {role: str(folder) for role, folder in folders.items()}
    card = model_card(_copy_point(point, tmp_path, results))
    text = str(card)
    assert str(tmp_path) not in text
    assert not re.search(r"(?<![\w.])/(?:[\w.-]+/)+", text), "an absolute path in the card"
    assert "the local folder `tiny-full`" in text and card.data.base_model is None


def test_tiny_numbers_print_in_scientific_notation(point, tmp_path):
    results = load_results(point)
    results["summary"]["forget_quality"] = 6.4e-10
    text = model_card(_copy_point(point, tmp_path, results)).text
    assert "| Forget quality (KS p-value vs retain model; higher is better) | 6.4e-10 |" in text
