"""What runs inside a course notebook's kernel: its first step and its environment.

Every notebook starts with `setup_notebook(PROFILE)`: the profile, seeds, the course's plot
style, and quiet progress bars when the runner (`course.runner`) or a sweep started the kernel
with `course_environment`'s variables.
"""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Any

from unlearnlib.course.exercises import STRICT_ENV
from unlearnlib.profiles import COURSE_MODEL, Profile, get_profile

#: "0" turns off the progress bars of datasets, transformers and huggingface_hub.
PROGRESS_ENV = "UNLEARNLIB_PROGRESS_BARS"


def course_environment(profile: str | Profile = "tiny") -> dict[str, str]:
    """Environment variables for a batch run's kernels: offline unless the profile needs the Hub.

    TQDM_DISABLE is not used: `tqdm.auto` ignores it. `setup_notebook` reads PROGRESS_ENV
    and calls the libraries' own switches instead. STRICT_ENV makes an exercise check that
    does not pass raise, so a wrong worked solution fails the run instead of printing.
    """
    profile = get_profile(profile)
    env = {PROGRESS_ENV: "0", "TOKENIZERS_PARALLELISM": "false", "PYTHONHASHSEED": "0",
           STRICT_ENV: "1"}
    uses_hub = profile.data_source == "hub" or any(
        model != COURSE_MODEL and not Path(model).expanduser().is_dir()
        for model in (profile.full_model, profile.retain_model))
    if not uses_hub:
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def setup_notebook(profile_name: str = "tiny", **overrides: Any) -> Profile:
    """A notebook's first step: the profile, seeds, the plot style, quiet bars in batch runs."""
    with warnings.catch_warnings():
        # Without ipywidgets, tqdm.auto warns once and draws text bars, which work fine.
        warnings.filterwarnings("ignore", message="IProgress not found")
        import datasets
        import huggingface_hub
        import transformers
    import numpy
    import torch

    from unlearnlib.plots import use_course_style

    if os.environ.get(PROGRESS_ENV) == "0":
        datasets.disable_progress_bars()
        huggingface_hub.utils.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
    profile = get_profile(profile_name, **overrides)
    # Python's, numpy's and torch's generators (transformers.set_seed would import its Trainer).
    random.seed(profile.seed)
    numpy.random.seed(profile.seed)
    torch.manual_seed(profile.seed)
    use_course_style()
    return profile
