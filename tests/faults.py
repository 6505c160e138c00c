"""Fault injection for the reliability tests: damaged bytes, killed processes, concurrent
launches, a full disk. Every helper acts only on files and processes the test made."""

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest


def flip_bytes(path, count=16, at=1 / 3):
    """Inverts `count` bytes spread over the file from fraction `at` of it on; its size stays
    the same."""
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        for i in range(count):
            data[(i * 7919 + int(len(data) * at)) % len(data)] ^= 0xFF
        f.seek(0)
        f.write(data)


def truncate(path, fraction=0.5):
    with open(path, "r+b") as f:
        f.truncate(int(os.path.getsize(path) * fraction))


def largest_file(folder):
    files = [os.path.join(d, name) for d, _, names in os.walk(folder) for name in names]
    return max(files, key=os.path.getsize)


def snapshot(folder):
    """Every file under folder, by relative path, with its bytes: what 'nothing written' is
    compared against."""
    return {os.path.relpath(os.path.join(d, name), folder): open(os.path.join(d, name), "rb").read()
            for d, _, names in os.walk(folder) for name in names}


def launch(*args, cwd):
    """rdsweep in a subprocess of its own session, not waited for (text output captured)."""
    return subprocess.Popen([sys.executable, "-m", "rdsweep", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def wait_for(path, process, timeout=300):
    """Waits until path exists while process runs."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def kill(process):
    """SIGKILL to this process alone (it is the only process of its session); returns what it
    printed before, (stdout, stderr)."""
    os.kill(process.pid, signal.SIGKILL)
    return process.communicate()


@contextlib.contextmanager
def full_disk(parent, size="300k"):
    """A folder under parent on a tmpfs of `size`: writes fail with ENOSPC once it is full.
    Skips the test where mounting is not allowed (not root)."""
    folder = os.path.join(parent, f"full-{uuid.uuid4().hex[:8]}")
    os.makedirs(folder)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("a full disk needs a tmpfs mount (root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", folder], check=True)
