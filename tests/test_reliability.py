"""What a hostile user found (issue 14): bad input ends in one line, stale outputs are redone, workers die
with their parent."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import REPO


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped by init, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


PARENT = """
import os, sys, time
sys.path.insert(0, {repo!r})

def main():
{body}
    print(worker_pid, flush=True)
    time.sleep(120)

if __name__ == "__main__":  # forkserver and spawn children import this file again
    main()
"""

LOADER = """
from torch.utils.data import Dataset
from {module} import {factory}

class Slow(Dataset):
    def __len__(self):
        return 1000
    def __getitem__(self, i):
        time.sleep(0.05)
        return os.getpid()

it = iter({call})
worker_pid = int(next(it){index})
"""

POOL = """
from concurrent.futures import ProcessPoolExecutor
import multiprocessing as mp
from misc.pyutils import exit_with
pool = ProcessPoolExecutor(1, mp_context=mp.get_context("forkserver"), initializer=exit_with, initargs=(os.getpid(),))
worker_pid = pool.submit(os.getpid).result()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
@pytest.mark.parametrize("kind", ["inference loader", "training loader", "CRF pool"])
def test_workers_die_with_a_killed_parent(kind, tmp_path):
    if kind == "inference loader":
        body = LOADER.format(module="step.common", factory="loader", call="loader(Slow(), 1)", index="")
    elif kind == "training loader":  # the DataLoader fit() builds, with the same worker_init_fn
        body = LOADER.format(module="torch.utils.data", factory="DataLoader", index="",
                             call="DataLoader(Slow(), num_workers=1, worker_init_fn=__import__('functools').partial("
                                  "__import__('misc.pyutils').pyutils.die_with_parent, parent=os.getpid()))")
    else:
        body = POOL
    script = tmp_path / "parent.py"
    script.write_text(PARENT.format(repo=str(REPO), body=textwrap.indent(textwrap.dedent(body), '    ')))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        worker = int(parent.stdout.readline())
        assert worker != parent.pid and _alive(worker)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), f"the {kind} worker {worker} outlived its killed parent"
    finally:
        parent.kill()


def test_every_worker_pool_is_told_to_die_with_its_parent():
    assert "worker_init_fn=partial(die_with_parent" in (REPO / "misc" / "trainloop.py").read_text()
    assert "worker_init_fn=partial(die_with_parent" in (REPO / "step" / "common.py").read_text()
    assert "initializer=exit_with, initargs=(os.getpid(),)" in (REPO / "misc" / "crf.py").read_text()
