import json

import datasets
import pytest

from unlearnlib.data.tofu import (
    CONFIGS,
    HubUnreachableError,
    author_ids,
    data_info,
    load_tofu,
    resolve_source,
)
from unlearnlib.paths import TOFU_DIR_ENV

REAL_ROWS = {
    "full": 4000, "forget10": 400, "forget05": 200, "forget01": 40, "retain90": 3600,
    "retain95": 3800, "retain99": 3960, "forget10_perturbed": 400, "retain_perturbed": 400,
    "holdout10": 400, "real_authors_perturbed": 100, "world_facts_perturbed": 117,
}


@pytest.mark.parametrize(("config", "rows"), REAL_ROWS.items())
def test_real_tofu_row_counts(tofu_dir, config, rows):
    dataset = load_tofu(config, tofu_dir)
    assert isinstance(dataset, datasets.Dataset)
    assert len(dataset) == rows


def test_real_tofu_split_structure(tofu_dir):
    full = load_tofu("full", tofu_dir)
    assert load_tofu("forget10", tofu_dir)["question"] == full["question"][3600:]
    assert load_tofu("retain90", tofu_dir)["answer"] == full["answer"][:3600]
    perturbed = load_tofu("forget10_perturbed", tofu_dir)
    assert all(len(p) == 5 for p in perturbed["perturbed_answer"])
    assert load_tofu("retain_perturbed", tofu_dir)["question"] == full["question"][:400]
    world_facts = load_tofu("world_facts_perturbed", tofu_dir)
    assert all(len(p) == 3 for p in world_facts["perturbed_answer"])


def test_author_ids_follow_tofu_layout(tofu_dir):
    full = author_ids("full", tofu_dir)
    assert full[:21] == [0] * 20 + [1] and full[-1] == 199
    assert author_ids("forget10", tofu_dir) == full[3600:]
    forget01 = author_ids("forget01", tofu_dir)
    assert set(forget01) == {198, 199}
    assert set(author_ids("retain_perturbed", tofu_dir)) == set(range(20))
    holdout = author_ids("holdout10", tofu_dir)
    assert holdout[0] == 200 and holdout[-1] == 219
    assert author_ids("holdout01", tofu_dir) == holdout[:40]
    with pytest.raises(ValueError, match="no TOFU authors"):
        author_ids("world_facts", tofu_dir)


def test_local_folder_from_environment(tofu_dir, monkeypatch):
    monkeypatch.setenv(TOFU_DIR_ENV, str(tofu_dir))
    assert resolve_source(None).path == tofu_dir.resolve()
    assert len(load_tofu("forget01")) == 40


def test_mini_is_the_default_source(monkeypatch):
    monkeypatch.delenv(TOFU_DIR_ENV, raising=False)
    source = resolve_source(None)
    assert source.kind == "mini"
    assert len(load_tofu("full")) == len(load_tofu("retain90")) + len(load_tofu("forget10"))


def test_general_knowledge_is_a_mini_extra(tofu_dir):
    general = load_tofu("general_knowledge", "mini")
    facts = set(load_tofu("world_facts_perturbed", "mini")["question"])
    assert facts <= set(general["question"])
    assert "general_knowledge" in [r["config"] for r in data_info("mini")]
    assert "general_knowledge" not in [r["config"] for r in data_info(tofu_dir)]
    with pytest.raises(FileNotFoundError, match="general_knowledge.json"):
        load_tofu("general_knowledge", tofu_dir)


def test_unknown_config_suggests_and_lists(tofu_dir):
    with pytest.raises(ValueError, match=r"'forget10_perturbd'.*Did you mean 'forget10_perturbed'"):
        load_tofu("forget10_perturbd", tofu_dir)
    with pytest.raises(ValueError, match="Valid names: full, forget01"):
        load_tofu("everything", tofu_dir)


def test_missing_file_names_its_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "forget10.json")):
        load_tofu("forget10", tmp_path)


def test_missing_folder_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tofu("full", tmp_path / "nowhere")


def test_missing_column_names_file_and_column(tmp_path):
    (tmp_path / "forget10_perturbed.json").write_text(
        json.dumps({"question": "q", "answer": "a", "paraphrased_answer": "p",
                    "perturbed_answer": ["x"]}) + "\n")
    with pytest.raises(KeyError, match=r"perturbed\.json lacks column.*paraphrased_question"):
        load_tofu("forget10_perturbed", tmp_path)


def test_bad_json_and_empty_file(tmp_path):
    (tmp_path / "full.json").write_text('{"question": "q", "answer": "a"}\n{oops\n')
    with pytest.raises(ValueError, match=r"full\.json, line 2"):
        load_tofu("full", tmp_path)
    (tmp_path / "full.json").write_text("")
    with pytest.raises(ValueError, match="no rows"):
        load_tofu("full", tmp_path)


def test_unreachable_hub_names_offline_alternatives(monkeypatch):
    def refuse(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'locuslab/TOFU' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", refuse)
    with pytest.raises(HubUnreachableError, match=f"{TOFU_DIR_ENV}.*TOFU-mini"):
        load_tofu("forget10", "hub")


def test_hub_offline_really_fails_fast(monkeypatch):
    """With no network (HF_HUB_OFFLINE in tests) the real datasets call ends in our error."""
    with pytest.raises(HubUnreachableError):
        load_tofu("forget01", "hub")


def test_data_info_covers_every_config(tofu_dir):
    table = data_info(tofu_dir)
    assert [r["config"] for r in table] == list(CONFIGS)
    rows = {r["config"]: r["rows"] for r in table}
    assert rows["full"] == 4000 and rows["world_facts"] == 117
    assert "paraphrased_question" in next(r for r in table if r["config"] == "forget10_perturbed")[
        "columns"]
