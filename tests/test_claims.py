"""The course's claims as code: each check can come out either way."""

import pandas as pd
import pytest

from unlearnlib.course.claims import (
    audit_claims,
    interpret_forget_quality,
    interpret_privleak,
    method_claims,
    print_claims,
    unlearning_claims,
)


def _history(final_retain: dict[str, float], final_forget: dict[str, float]) -> pd.DataFrame:
    rows = []
    for method in final_retain:
        rows.append({"method": method, "forget_prob": 0.9, "retain_prob": 0.8})
        rows.append({"method": method, "forget_prob": final_forget[method],
                     "retain_prob": final_retain[method]})
    return pd.DataFrame(rows)


def test_method_claims_follow_the_curves():
    story = _history({"ga": 0.1, "graddiff": 0.6, "npo": 0.7, "simnpo": 0.79},
                     {"ga": 0.01, "graddiff": 0.1, "npo": 0.3, "simnpo": 0.8})
    assert {c.name: c.holds for c in method_claims(story)} == {
        "forget_prob_falls": True, "ga_pays_most": True, "graddiff_keeps_retain": True,
        "npo_keeps_retain": True, "simnpo_moves_least": True}
    other = _history({"ga": 0.7, "graddiff": 0.6, "npo": 0.75, "simnpo": 0.79},
                     {"ga": 0.01, "graddiff": 0.95, "npo": 0.3, "simnpo": 0.2})
    assert {c.name: c.holds for c in method_claims(other)} == {
        "forget_prob_falls": False, "ga_pays_most": False, "graddiff_keeps_retain": False,
        "npo_keeps_retain": True, "simnpo_moves_least": False}
    # Claims about methods that did not run are left out.
    assert [c.name for c in method_claims(story[story["method"] == "npo"])] == [
        "forget_prob_falls"]


def test_unlearning_and_audit_claims(capsys):
    full = {"forget_Q_A_Prob": 0.9, "forget_quality": 1e-15, "model_utility": 0.84}
    good = {"forget_Q_A_Prob": 0.2, "forget_quality": 0.3, "model_utility": 0.8}
    bad = {"forget_Q_A_Prob": 0.95, "forget_quality": 1e-14, "model_utility": 0.5}
    assert all(c.holds for c in unlearning_claims(full, good))
    assert not any(c.holds for c in unlearning_claims(full, bad))
    print_claims(unlearning_claims(full, good))
    assert capsys.readouterr().out.splitlines()[0] == "NPO lowered the forget probability: True"

    families = ["direct", "format_shift"]
    novel = pd.DataFrame([[0.0, 0.2], [0.0, 0.0], [0.0, 0.1]], index=["full", "retain", "npo"],
                         columns=families)
    leak = pd.DataFrame([[0.97, 0.5], [0.0, 0.3], [0.1, 0.4]], index=novel.index,
                        columns=families)
    assert all(c.holds for c in audit_claims(novel, leak))
    leak.loc["npo", "direct"] = 0.99
    novel.loc["retain", "format_shift"] = 0.1
    novel.loc["npo", "direct"] = 0.2
    assert [c.holds for c in audit_claims(novel, leak)] == [False, True, False, False]


@pytest.mark.parametrize(("value", "says"), [(0.024, "below 0.05: the KS test still tells"),
                                             (0.58, "at least 0.05: the KS test cannot tell"),
                                             (2.5e-15, "2.5e-15 is below")])
def test_interpretation_is_printed_from_the_value(value, says):
    assert says in interpret_forget_quality(value)


@pytest.mark.parametrize(("value", "says"), [(108.5, "+108 is positive"),
                                             (-100.0, "-100 is negative"),
                                             (0.0, "as hard to tell")])
def test_privleak_is_read_from_its_sign(value, says):
    assert says in interpret_privleak(value, "NPO")
