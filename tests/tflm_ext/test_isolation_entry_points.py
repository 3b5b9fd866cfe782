"""run_isolated from every entry point a user has: each test starts a real python process
(a script without a main guard, ``python -`` on stdin, ``python -c``, a Jupyter kernel, an
Apache Beam DirectRunner pipeline) that calls ``tflm_ext.run_isolated(tflm_ext.run_batch,
...)`` and saves the scores, which must equal ``run_batch`` run here.

The processes run in tmp_path; the repository reaches them through PYTHONPATH (the notebook
instead puts it on sys.path in its first cell, so its child sees it only through
run_isolated). None of them imports TensorFlow.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tflm_ext.inference import run_batch

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 180

# No `if __name__ == "__main__":` guard, on purpose; runs.log counts how often it ran: the child
# must not re-run it.
SCRIPT = """\
import sys
from pathlib import Path

import numpy as np

import tflm_ext

here = Path({here!r})
with open(here / "runs.log", "a") as log:
    log.write("ran\\n")
model_bytes = (here / "model.tflite").read_bytes()
x = np.load(here / "x.npy")
result = tflm_ext.run_isolated(tflm_ext.run_batch, model_bytes, x)
np.save(here / "scores.npy", result.scores)
assert "tensorflow" not in sys.modules
"""

# A module of the user's beside the script, on sys.path only as the script's directory
# (or the working directory for stdin).
USER_MODULE = """\
import tflm_ext


def scores(model_bytes, x):
    return tflm_ext.run_batch(model_bytes, x).scores
"""

USES_USER_MODULE = """\
import user_tflm

np.save(here / "user_scores.npy", tflm_ext.run_isolated(user_tflm.scores, model_bytes, x))
"""


@pytest.fixture(scope="module")
def case(tiny_int8_model: bytes) -> tuple[bytes, np.ndarray, np.ndarray]:
    """The model, 3 examples, and their scores computed in this process."""
    x = np.random.default_rng(1).uniform(-1, 1, (3, 16, 16, 1)).astype(np.float32)
    return tiny_int8_model, x, run_batch(tiny_int8_model, x).scores


@pytest.fixture
def here(tmp_path: Path, case: tuple[bytes, np.ndarray, np.ndarray]) -> Path:
    model_bytes, x, _ = case
    (tmp_path / "model.tflite").write_bytes(model_bytes)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "user_tflm.py").write_text(USER_MODULE)
    return tmp_path


def _python(here: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, *args],
        cwd=here,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done


def _assert_scores(here: Path, expected: np.ndarray, name: str = "scores.npy") -> None:
    assert np.array_equal(np.load(here / name), expected)


def test_a_script_without_a_main_guard(here: Path, case) -> None:
    script = here / "unguarded.py"
    script.write_text(SCRIPT.format(here=str(here)) + USES_USER_MODULE)
    _python(here, str(script))
    _assert_scores(here, case[2])
    _assert_scores(here, case[2], "user_scores.npy")
    assert (here / "runs.log").read_text() == "ran\n"  # the child never re-ran the script


def test_a_script_on_stdin(here: Path, case) -> None:
    _python(here, "-", stdin=SCRIPT.format(here=str(here)) + USES_USER_MODULE)
    _assert_scores(here, case[2])
    _assert_scores(here, case[2], "user_scores.npy")
    assert (here / "runs.log").read_text() == "ran\n"


def test_python_dash_c(here: Path, case) -> None:
    _python(here, "-c", SCRIPT.format(here=str(here)))
    _assert_scores(here, case[2])


_HAS_JUPYTER = all(importlib.util.find_spec(name) for name in ("nbclient", "nbformat", "ipykernel"))


@pytest.mark.skipif(not _HAS_JUPYTER, reason="needs nbclient, nbformat and ipykernel")
def test_a_jupyter_notebook(here: Path, case) -> None:
    import nbclient
    import nbformat

    refuse = textwrap.dedent(
        """\
        def defined_in_the_notebook():
            return 1

        try:
            tflm_ext.run_isolated(defined_in_the_notebook)
        except tflm_ext.errors.ChildStartError as e:
            print("refused:", e)
        """
    )
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(f"import sys\nsys.path.insert(0, {str(REPO)!r})"),
            nbformat.v4.new_code_cell(SCRIPT.format(here=str(here))),
            nbformat.v4.new_code_cell(refuse),
        ]
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only the first cell's
    client = nbclient.NotebookClient(
        notebook,
        timeout=TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(here)}},
    )
    client.execute(env=env)
    _assert_scores(here, case[2])
    printed = "".join(out.get("text", "") for out in notebook.cells[2].outputs)
    assert "refused:" in printed and "is defined in __main__" in printed


BEAM_SCRIPT = """\
import json
import os
import sys
from pathlib import Path

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

import tflm_ext

here = Path({here!r})
(here / "main.pid").write_text(str(os.getpid()))


class Score(beam.DoFn):
    def setup(self):
        self.model_bytes = (here / "model.tflite").read_bytes()
        self.x = np.load(here / "x.npy")
        tflm_ext.run_isolated(tflm_ext.run_batch, self.model_bytes, self.x[:1])  # vet

    def process(self, rows):
        start, stop = rows
        scores = tflm_ext.run_isolated(tflm_ext.run_batch, self.model_bytes, self.x[start:stop])
        yield json.dumps([start, os.getpid(), scores.scores.tolist()])


with beam.Pipeline(options=PipelineOptions(sys.argv[1:])) as pipeline:
    (
        pipeline
        | beam.Create([(0, 2), (2, 3)])
        | beam.ParDo(Score())
        | beam.io.WriteToText(str(here / "beam_scores"), shard_name_template="")
    )
"""


@pytest.mark.parametrize(
    "options",
    [
        [],
        ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
    ],
    ids=["in-process", "multi-processing"],
)
def test_an_apache_beam_dofn_on_the_direct_runner(here: Path, case, options) -> None:
    pytest.importorskip("apache_beam")
    script = here / "beam_pipeline.py"
    script.write_text(BEAM_SCRIPT.format(here=str(here)))
    _python(here, str(script), "--runner=DirectRunner", *options)
    lines = (here / "beam_scores").read_text().splitlines()
    rows = sorted(json.loads(line) for line in lines)
    scores = np.array([row for _, _, batch in rows for row in batch], dtype=np.float32)
    assert np.array_equal(scores, case[2])
    in_main = {pid == int((here / "main.pid").read_text()) for _, pid, _ in rows}
    assert in_main == {not options}  # multi_processing ran the DoFn in Beam's workers
