"""Do the goldens' checked cells hold for other unlearning seeds? A stand-in for another machine.

nbval compares the cells marked ``# NBVAL_CHECK_OUTPUT`` of a re-executed notebook with the
golden outputs in tests/goldens. Another machine rounds differently, so its unlearning runs
differ the way runs with another seed do. This runs the notebooks that take a ``SEED``
parameter with each seed given (papermill, the course runner) and compares their checked
cells with the goldens, as ``nbval --nbval-lax`` would: the text of every stream and
plain-text result.

    python benchmarks/golden_seeds.py [--seeds 1 2 3] [--out build/golden-seeds]

The last line printed is one JSON object: the differing cells per seed (0 everywhere when
the goldens hold).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import nbformat
import papermill

from unlearnlib.course.runner import course_notebooks, run_course

REPO = Path(__file__).resolve().parents[1]
GOLDENS = REPO / "tests" / "goldens"
MARKER = "# NBVAL_CHECK_OUTPUT"


def checked_outputs(path: Path) -> list[str]:
    """The text a checked cell printed or returned, one string per checked cell."""
    cells = [cell for cell in nbformat.read(path, as_version=4).cells
             if cell.cell_type == "code" and cell.source.startswith(MARKER)]
    texts = []
    for cell in cells:
        parts = [output.get("text", "") if output.output_type == "stream"
                 else output.get("data", {}).get("text/plain", "")
                 for output in cell.outputs]
        texts.append("".join(parts))
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", default="build/golden-seeds")
    args = parser.parse_args()
    start = time.perf_counter()
    seeded = [path.name[:2] for path in course_notebooks()
              if "SEED" in papermill.inspect_notebook(str(path))]
    differing: dict[int, int] = {}
    for seed in args.seeds:
        out = Path(args.out) / f"seed{seed}"
        runs = run_course("tiny", out, only=seeded, parameters={"SEED": seed}, progress=False)
        differing[seed] = 0
        for run in runs:
            executed = checked_outputs(Path(run.output))
            golden = checked_outputs(GOLDENS / Path(run.output).name)
            for index, (got, want) in enumerate(zip(executed, golden, strict=True)):
                if got != want:
                    differing[seed] += 1
                    print(f"seed {seed}, {run.notebook}, checked cell {index}:\n"
                          f"  golden:   {want!r}\n  executed: {got!r}")
        print(f"seed {seed}: {differing[seed]} checked cell(s) differ from the goldens")
    print(json.dumps({"notebooks": seeded, "differing_cells": differing,
                      "seconds": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
