"""A plain install (no ``redis`` extra) runs calls: without ``REDIS_URL`` the server must
not import ``redis``, nor ``svix`` (its REST client costs 9 MiB; the server verifies with
``standardwebhooks``). The packages are made unimportable for a real ``callserver serve``
that then answers a signed call end to end."""

from __future__ import annotations

import asyncio
from pathlib import Path

from callserver.testing.fake_openai import FakeOpenAI
from callserver.testing.harness import TEST_WEBHOOK_SECRET, free_port
from tests.test_process import service_env, start_service

BLOCKED = ("redis", "svix")


def _blocker(tmp_path: Path) -> Path:
    for name in BLOCKED:
        package = tmp_path / "blocked" / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(
            f"raise ImportError('{name} is not installed (blocked by the test)')\n"
        )
    return tmp_path / "blocked"


async def test_serve_answers_calls_without_redis_or_svix(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    port = free_port()
    env = service_env(fake_openai, PYTHONPATH=str(_blocker(tmp_path)))
    env.pop("REDIS_URL", None)
    proc = await start_service(env, port)
    try:
        call_id, response = await fake_openai.send_incoming_call(
            f"http://127.0.0.1:{port}/webhooks/openai", TEST_WEBHOOK_SECRET
        )
        assert response.status_code == 200, response.text
        await fake_openai.wait_connected(call_id)
        await fake_openai.caller_hangs_up(call_id)
    finally:
        proc.terminate()
        _, stderr = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    assert b"blocked by the test" not in stderr


def test_the_blocker_blocks(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", "import redis"],
        env={"PYTHONPATH": str(_blocker(tmp_path))},
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "blocked by the test" in out.stderr
