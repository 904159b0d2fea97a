"""``make test`` on a fresh machine: what it cannot provision stops it at once, in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "test-preflight"
BASH = shutil.which("bash") or "/bin/bash"


def _run(env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run([BASH, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    return done, time.monotonic() - started


def test_with_everything_there_it_says_nothing() -> None:
    done, _ = _run({**os.environ})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""


def test_what_it_cannot_provision_stops_it_in_one_line(tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("seq", "sleep", "id", "ls", "head"):  # the services run; their tools are gone
        found = shutil.which(tool)
        assert found is not None
        (tools / tool).symlink_to(found)
    done, took = _run({"PATH": str(tools)})
    assert done.returncode == 2 and took < 10
    assert done.stderr == ("make test: rabbitmqctl is not on PATH (the suite creates per-agency "
                           "RabbitMQ users with it)\n")

    done, took = _run({**os.environ, "MASP_CHROMIUM": str(tmp_path / "no-chromium"),
                       "MASP_PREFLIGHT_NO_INSTALL": "1"})
    assert done.returncode == 2 and took < 10
    assert done.stderr == ("make test: Chromium is missing: run (as root) apt-get update && "
                           "apt-get install -y chromium\n")
