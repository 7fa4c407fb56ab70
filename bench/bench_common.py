"""What the benchmark scripts share: where tapml and the shared data are, and timing a run."""
import os
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TAPML = os.path.join(ROOT, "build", "tapml")


def shared_dir():
    return os.environ.get("TAPML_SHARED", os.path.join(ROOT, "..", "shared"))


def timed(cmd):
    """Runs cmd; returns (wall seconds, CompletedProcess with text stdout/stderr)."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return time.perf_counter() - t0, r
