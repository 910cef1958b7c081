"""A private X display (Xvfb) for a headed browser on a machine without one.

Xvfb picks a free display number itself (``-displayfd``) and writes it to a
pipe once it is ready, so parallel captures do not collide and nothing
polls. Interactive captures and session logins (``interactive``) and the
page-mode screen recording (``screenrec``) start theirs here.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
from typing import IO

from ledger.errors import EnvironmentProblem

START_TIMEOUT = 15.0
NOT_INSTALLED = "Xvfb not installed (apt-get install xvfb)"


def start_xvfb(
    size: str, *, extra: tuple[str, ...] = (), stderr: IO[bytes] | int = subprocess.DEVNULL, own_session: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    """Start Xvfb with a ``WxHxD`` screen; (the process, ``":N"``) once it serves."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise EnvironmentProblem(NOT_INSTALLED)
    r, w = os.pipe()
    try:
        proc = subprocess.Popen(
            [xvfb, "-displayfd", str(w), "-screen", "0", size, "-nolisten", "tcp", *extra],
            pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
            start_new_session=own_session,
        )  # fmt: skip
    except OSError as e:
        os.close(r)
        raise EnvironmentProblem(f"cannot start Xvfb: {e.strerror or e}") from e
    finally:
        os.close(w)
    number = b""
    try:
        while not number.endswith(b"\n"):
            ready, _, _ = select.select([r], [], [], START_TIMEOUT)
            chunk = os.read(r, 16) if ready else b""
            if not chunk:
                break
            number += chunk
    finally:
        os.close(r)
    if not number.strip().isdigit():
        end(proc)
        raise EnvironmentProblem(f"Xvfb did not start within {START_TIMEOUT:g} s")
    return proc, f":{number.strip().decode()}"


def end(proc: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """Terminate ``proc`` (a display, a recorder), killed if it does not exit within ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
