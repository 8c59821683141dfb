"""One web server's start of a run, for the test of two servers starting runs at the same moment.

``python tests/start_run_worker.py DATA VISITOR RAY_ADDRESS MAX_RUNS READY GO`` prepares a tiny
run, writes READY, waits for the file GO to appear (every worker polls it, so they start within a
millisecond of each other), asks :func:`lstm_core.runs.control.start_run` with the Ray runner,
and prints ``started RUN_FOLDER`` or ``refused: WHY``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from lstm_core.config import Config  # noqa: E402
from lstm_core.data.dataset import prepare  # noqa: E402
from lstm_core.runs import control  # noqa: E402
from lstm_core.runs.cluster import RayRunner  # noqa: E402
from lstm_core.runs.limits import RunLimits  # noqa: E402
from tests.conftest import TINY_TEXT  # noqa: E402

torch.set_num_threads(1)
data, visitor, address, max_runs, ready, go = sys.argv[1:7]
config = Config(rnn_size=16, batch_size=4, training_seq_len=8, epochs=10_000, eval_every=10, seed=3)
dataset = prepare(TINY_TEXT, 0, (0.8, 0.1, 0.1), name="sonnet")
limits = RunLimits(threads=1, max_runs=int(max_runs), runs_per_visitor=1)
runner = RayRunner(address)
Path(ready).write_text("ready")
while not Path(go).exists():
    time.sleep(0.001)
try:
    run = control.start_run(Path(data), Path(data) / "visitors" / visitor / "runs", config, dataset, limits, runner)
except control.CapacityError as error:
    print(f"refused: {error}")
else:
    print(f"started {run.path}")
