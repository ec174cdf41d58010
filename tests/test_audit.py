"""The audit run on the tiny Llama: a "full" model that learnt one forget author, an untrained
"retain" model, every probe family, the leak table, membership inference and the figure."""

from __future__ import annotations

import matplotlib
import pandas as pd
import pytest

from unlearnlib.audit.probes import ProbeContext, direct_probes, forget_facts, halve_authors
from unlearnlib.audit.recall import OVERALL, PAIR_COLUMNS, STATISTICS
from unlearnlib.audit.run import FAMILIES, load_records, run_audit
from unlearnlib.profiles import AuditSettings, get_profile

matplotlib.use("Agg")

LEARNT, UNSEEN = 99, 98


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def facts() -> pd.DataFrame:
    everything = forget_facts("forget10", "mini")
    return everything[everything["author"].isin([UNSEEN, LEARNT])].reset_index(drop=True)


@pytest.fixture(scope="module")
def models(tiny_tokenizer, tiny_model, facts, memorised_model):
    full = memorised_model(tiny_tokenizer, facts[facts["author"] == LEARNT])
    return {"full": (full, tiny_tokenizer), "retain": (tiny_model, tiny_tokenizer)}


@pytest.fixture(scope="module")
def audit(models, facts, tmp_path_factory):
    return run_audit(models, "tiny", facts=facts, out_dir=tmp_path_factory.mktemp("audit"),
                     n_samples=2, relearn_epochs=1, n_bootstrap=200, max_new_tokens=32,
                     progress=False)


def test_records_cover_every_family_and_model_with_paired_probes(audit, facts) -> None:
    records = audit.records
    assert set(records["family"]) == set(FAMILIES)
    full = records[records["model"] == "full"].set_index(list(PAIR_COLUMNS)).index
    retain = records[records["model"] == "retain"].set_index(list(PAIR_COLUMNS)).index
    assert full.sort_values().equals(retain.sort_values())  # same probes, facts and seeds
    assert set(records["fact_id"]) == set(facts["fact_id"])
    _, probed = halve_authors(facts["author"], seed=get_profile("tiny").seed)
    assert set(records.loc[records["family"] == "relearn", "author"]) == set(probed)
    on_disk = load_records(audit.paths["records"])
    pd.testing.assert_frame_equal(on_disk, records, check_dtype=False)
    assert pd.read_csv(audit.paths["table"]).shape == audit.table.shape
    assert set(audit.paths) == {"records", "table", "membership"}
    assert not list(audit.paths["table"].parent.glob("*.png"))  # figures are the caller's


def test_leak_table_calibrates_by_the_retain_model(audit, facts) -> None:
    table = audit.table
    assert set(table["family"]) == {*FAMILIES, OVERALL}
    assert set(table["statistic"]) == set(STATISTICS)
    assert len(table) == 2 * (len(FAMILIES) + 1) * len(STATISTICS)
    retain = table[table["model"] == "retain"]
    novel_or_excess = retain["statistic"].isin(["novel_recall_leak", "excess_over_retain"])
    assert (retain.loc[novel_or_excess, "estimate"] == 0).all()  # 0 by construction
    assert ((table["ci_low"] <= table["estimate"] + 1e-12)
            & (table["estimate"] <= table["ci_high"] + 1e-12)).all()
    direct = audit.records[(audit.records["family"] == "direct")
                           & (audit.records["model"] == "full")]
    learnt = direct[direct["author"] == LEARNT].groupby("fact_id")["recalled"].any()
    assert learnt.mean() >= 0.8
    novel = audit.estimates("novel_recall_leak")
    assert novel.loc["full", "direct"] >= 0.4 and novel.loc["full", OVERALL] >= 0.4
    assert list(novel.columns) == [*FAMILIES, OVERALL]


def test_membership_inference_beside_the_families(audit) -> None:
    mia = audit.membership.set_index("model")
    assert mia.loc["retain", "privleak"] == 0
    assert mia.loc["full", "mia_min_k_auc"] > mia.loc["retain", "mia_min_k_auc"]
    assert mia.loc["full", "privleak"] < 0  # the learnt author's answers stand out
    assert set(audit.timings["family"]) == {*FAMILIES, "membership"}


def test_figure_has_one_bar_and_interval_per_model_and_family(audit) -> None:
    ax = audit.plot("leak_rate")
    bars = [bar for container in ax.containers if hasattr(container, "patches")
            for bar in container.patches]
    assert len(bars) == 2 * (len(FAMILIES) + 1)
    heights = sorted(round(bar.get_height(), 6) for bar in bars)
    expected = audit.table.loc[audit.table["statistic"] == "leak_rate", "estimate"] * 100
    assert heights == sorted(round(v, 6) for v in expected)
    assert len(ax.collections) >= 2 * (len(FAMILIES) + 1)  # error bars
    assert "%" in ax.get_ylabel() and ax.get_legend().get_title().get_text() == "model"
    with pytest.raises(ValueError, match="No 'typo' rows"):
        audit.plot("typo")


def test_families_are_probe_functions_in_audit_order(audit) -> None:
    assert list(FAMILIES) == ["direct", "format_shift", "best_of_n", "context", "logit_lens",
                              "quantised", "relearn"]
    assert FAMILIES["direct"] is direct_probes
    assert list(dict.fromkeys(audit.records["family"])) == list(FAMILIES)  # run order


def test_probe_context_takes_the_profile_defaults_and_overrides() -> None:
    tiny = get_profile("tiny")
    context = ProbeContext.from_profile(tiny, "npo")
    assert context.settings == tiny.audit and context.settings.n_samples == 8
    assert (context.model_name, context.seed, context.max_new_tokens, context.batch_size) == (
        "npo", tiny.seed, tiny.max_new_tokens, tiny.eval_batch_size)
    custom = ProbeContext.from_profile(tiny, seed=3, batch_size=4, n_samples=3)
    assert (custom.seed, custom.batch_size, custom.settings.n_samples) == (3, 4, 3)
    assert custom.settings.relearn_learning_rate == tiny.audit.relearn_learning_rate
    assert get_profile("gpu-full", requires_cuda=False).audit == AuditSettings()


def test_settings_and_argument_errors(models) -> None:
    with pytest.raises(TypeError, match="n_sample"):
        run_audit(models, "tiny", n_sample=3)
    with pytest.raises(ValueError, match="retain model 'retain'"):
        run_audit({"full": models["full"]}, "tiny")
    with pytest.raises(ValueError, match="Unknown probe families"):
        run_audit(models, "tiny", families=["direct", "telepathy"])


def test_facts_per_author_audits_each_authors_first_facts(models) -> None:
    profile = get_profile("tiny").replace(audit={"facts_per_author": 2})
    quick = run_audit(models, profile, families=["direct"], membership=False,
                      max_new_tokens=8, progress=False)
    audited = quick.records.drop_duplicates("fact_id")
    everything = forget_facts("forget10", "mini")
    assert audited.groupby("author").size().eq(2).all()
    assert audited["author"].nunique() == everything["author"].nunique()
    first = everything.groupby("author", sort=False).head(2)["fact_id"]
    assert set(audited["fact_id"]) == set(first)
