"""Run outputs besides metrics.json: the TensorBoard scalars."""

import glob
import os
import struct
import subprocess
import sys

from tensorboardX.proto import event_pb2

from rdsweep.outputs import RunLog


def read_scalars(folder):
    """{(tag, step): value} from TensorBoard event files, read as TFRecords (length, crc, data,
    crc) with tensorboardX's protobuf classes: independent of the writer's own code."""
    scalars = {}
    for path in glob.glob(f"{folder}/events.out.tfevents.*"):
        data = open(path, "rb").read()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                scalars[(value.tag, event.step)] = value.simple_value
    return scalars


def test_tensorboard_scalars_hold_the_log_rows_and_test_results(tmp_path):
    rows = [{"step": s, "loss": 200.0 - s, "rate": 5.0 + s / 10, "distortion": 190.0 - s,
             "elbo": s - 200.0, "images_per_s": 1000.0 + s} for s in (10, 20)]
    with RunLog(str(tmp_path), steps=20, start_step=0) as log:
        for row in rows:
            log.train(row)
        log.test({"rate": 7.5, "distortion": 90.25, "elbo": -97.75, "iwae": -95.5}, 20)
    scalars = read_scalars(tmp_path / "tensorboard")
    for row in rows:
        for key in ("loss", "rate", "distortion", "elbo", "images_per_s"):
            assert scalars[(f"train/{key}", row["step"])] == row[key]
    assert scalars[("test/elbo", 20)] == -97.75 and scalars[("test/iwae", 20)] == -95.5
    assert len(scalars) == 2 * 5 + 4


def test_tensorboard_off_writes_no_events(tmp_path):
    with RunLog(str(tmp_path), steps=10, start_step=0, tensorboard=False) as log:
        log.train({"step": 10, "loss": 1.0, "rate": 1.0, "distortion": 0.0, "elbo": -1.0,
                   "images_per_s": 5.0})
    assert not (tmp_path / "tensorboard").exists()


def test_tensorboard_scalars_are_written_without_importing_an_installed_torch(tmp_path):
    """tensorboardX imports torch whenever it is installed (seconds of start-up); the run's log
    does not let it, and leaves torch importable afterwards."""
    (tmp_path / "torch.py").write_text("Tensor = object\nimported = True\n")  # an installed torch
    script = f"""
import sys
from rdsweep.outputs import RunLog
with RunLog({str(tmp_path / 'run')!r}, steps=10, start_step=0) as log:
    log.test({{"rate": 1.0, "distortion": 2.0, "elbo": -3.0, "iwae": -2.5}}, 10)
assert "torch" not in sys.modules, "torch was imported"
import torch
assert torch.imported
"""
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert read_scalars(tmp_path / "run" / "tensorboard")[("test/iwae", 10)] == -2.5
