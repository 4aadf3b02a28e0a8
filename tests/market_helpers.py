"""Running the `fleet` CLI as a subprocess against the provider fakes, with a clean environment."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.provisioner.providers.settings import USUAL_KEY_VARS

FLEET = str(Path(sys.executable).with_name("fleet"))


def clean_env(**extra: str) -> dict[str, str]:
    """The environment minus every fleet and provider setting, plus `extra`."""
    usual = {v for names in USUAL_KEY_VARS.values() for v in names}
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FLEET_") and k not in usual and not k.startswith("NATS")
    }
    env.update(extra)
    return env


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


async def fleet(*args: str, env: dict[str, str], cwd: Path, timeout_s: float = 60.0) -> Run:
    """Run `fleet ARGS` without blocking the event loop (services may be serving in it)."""
    proc = await asyncio.create_subprocess_exec(
        FLEET,
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"fleet {' '.join(args)} did not finish in {timeout_s}s") from None
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())
