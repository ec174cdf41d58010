"""Run-to-run spread and side-by-side runs: same numbers in one process or two."""

import math

import pytest

from unlearnlib.evaluation.evaluate import evaluate_model
from unlearnlib.parallel import map_in_processes
from unlearnlib.train import spread, zoo
from unlearnlib.train.curves import compare_methods
from unlearnlib.train.pipeline import ensure_unlearned
from unlearnlib.train.spread import noise_floor, seed_spread, train_seeds


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNLIB_HOME", str(tmp_path))
    return tmp_path


def test_processes_return_what_one_process_does():
    calls = [(n,) for n in range(6)]
    assert map_in_processes(math.factorial, calls, jobs=2) == [math.factorial(n)
                                                                for n in range(6)]


def test_seed_spread_scores_each_seed_once_and_the_noise_floor(home, micro,
                                                               monkeypatch):
    profile = micro.replace(unlearn_epochs=1)
    retain, tokenizer = zoo.load_zoo_model(profile, "retain")
    reference = evaluate_model(retain, tokenizer, profile, progress=False).eval_log
    table = seed_spread(profile, [0, 1], reference, jobs=1)
    assert list(table.index) == [0, 1]
    assert table["forget_quality"].between(0, 1).all()
    assert table["model_utility"].between(0, 1).all()
    assert table.loc[0, "forget_quality"] != table.loc[1, "forget_quality"] or (
        table.loc[0, "forget_Q_A_Prob"] != table.loc[1, "forget_Q_A_Prob"])

    def no_work(*args, **kwargs):
        raise AssertionError("a cached run was trained or evaluated again")

    monkeypatch.setattr(spread, "evaluate_model", no_work)
    monkeypatch.setattr(spread, "load_for_profile", no_work)
    assert seed_spread(profile, [1, 0], reference, jobs=1).loc[0].equals(table.loc[0])

    assert noise_floor(profile.replace(second_retain_model=None), reference) is None
    folders = train_seeds(profile, [1, 0, 1], jobs=1)
    assert list(folders) == [1, 0]
    assert folders[1] == ensure_unlearned(profile.replace(seed=1), progress=False)


def test_methods_compared_side_by_side_match_one_process(home, micro):
    # The default recipe: spawned workers do not see a monkeypatched one.
    zoo.build_tiny_models(micro, progress=False, jobs=1)
    runs = {jobs: compare_methods(micro, ["ga", "npo"], epochs=1, every_n_epochs=1, jobs=jobs)
            for jobs in (1, 2)}
    assert list(runs[1]["method"].unique()) == ["ga", "npo"]
    assert runs[1].groupby("method").size().tolist() == [2, 2]  # start and end
    assert runs[1].equals(runs[2])
