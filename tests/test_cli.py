"""The command line's fixed choices are the library's own lists, so the two cannot drift.

The parser spells them out so that `unlearnlib --help` answers without importing torch.
"""

from unlearnlib.checks import MASK_MODES
from unlearnlib.cli import build_parser
from unlearnlib.profiles import PROFILES
from unlearnlib.train.unlearn import METHODS


def _choices(*path: str) -> dict[str, tuple]:
    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if a.dest.endswith("command"))
        parser = action.choices[name]
    return {a.dest: tuple(a.choices) for a in parser._actions if a.choices}


def test_method_mask_mode_and_gpu_profile_choices_match_the_library():
    assert _choices("unlearn")["method"] == METHODS
    assert _choices("eval", "run")["mask_mode"] == MASK_MODES
    gpu_profiles = tuple(name for name, p in PROFILES.items() if p.gpu_memory_gib is not None)
    assert _choices("memory")["profile"] == gpu_profiles
