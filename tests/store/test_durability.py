"""Acknowledged means durable: a writer killed with SIGKILL loses nothing it reported done.

A real child Python opens the store and writes in a loop, printing each result only after the
store method returned. The test reads those lines, kills the child mid-stream with SIGKILL, then
reopens the database: every reported write must be there.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from shoal.store import Store

CHILD = """
import sys
from pathlib import Path

from shoal.store import Store

mode, path = sys.argv[1], Path(sys.argv[2])
store = Store.open(path)
print("ready", flush=True)
n = 0
while True:
    now = 1000.0 + n
    if mode == "publish":
        done = store.publish("orders", '{"n": %d}' % n, now)
    elif mode == "ack":
        (message,) = store.lease("orders", 1, 3600.0, now)
        store.ack([message.id], now)
        done = message.id
    else:
        (message,) = store.lease("orders", 1, 3600.0, now)
        store.dead_letter(message.id, "orders.failed", "boom %d" % n, now)
        done = message.id
    print(done, n, flush=True)  # only now is it acknowledged
    n += 1
"""


def _run_and_kill(
    mode: str, db_path: Path, env: dict[str, str], after: int
) -> list[tuple[int, int]]:
    """Run the child, SIGKILL it once it acknowledged ``after`` writes; every acknowledged one."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, str(db_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert child.stdout is not None
    try:
        assert child.stdout.readline() == "ready\n"
        lines: list[str] = []
        while len(lines) < after:
            line = child.stdout.readline()
            assert line, f"child ended early: {child.stderr.read() if child.stderr else ''}"
            lines.append(line)
        child.send_signal(signal.SIGKILL)  # mid-stream: it is writing the next one right now
        # Read the rest through the same text reader: its buffer may already hold lines past
        # ``after`` (communicate() would read the pipe underneath it and miss them).
        rest = child.stdout.read()
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for pipe in (child.stdout, child.stderr):
            if pipe is not None:
                pipe.close()
    assert child.returncode == -signal.SIGKILL
    complete = lines + [line + "\n" for line in rest.split("\n")[:-1]]  # drop a torn last line
    acknowledged = [(int(a), int(b)) for a, b in (line.split() for line in complete)]
    assert len(acknowledged) >= after
    return acknowledged


def _prepare(db_path: Path, messages: int) -> list[int]:
    with Store.open(db_path) as store:
        store.ensure_topic("orders", 86400.0)
        store.ensure_topic("orders.failed", 86400.0)
        return store.publish_many("orders", [f'{{"m": {m}}}' for m in range(messages)], 0.0)


@pytest.mark.parametrize("after", [1, 40, 250])
def test_every_acknowledged_publish_survives_sigkill(
    db_path: Path, child_env: dict[str, str], after: int
) -> None:
    _prepare(db_path, 0)
    acknowledged = _run_and_kill("publish", db_path, child_env, after)
    with Store.open(db_path) as store:
        stored = {m.id: m.payload_json for m in store.list_messages("orders")}
    for message_id, n in acknowledged:
        assert stored.get(message_id) == f'{{"n": {n}}}', f"acknowledged message {n} lost"
    # at most the one write in flight when the child died is stored but unreported
    assert len(stored) - len(acknowledged) in (0, 1)


def test_every_acknowledged_ack_survives_sigkill(db_path: Path, child_env: dict[str, str]) -> None:
    ids = _prepare(db_path, 2000)
    acknowledged = _run_and_kill("ack", db_path, child_env, 150)
    with Store.open(db_path) as store:
        pending = {m.id for m in store.list_messages("orders")}
        assert store.depth("orders") == len(pending)
    acked = {message_id for message_id, _ in acknowledged}
    assert not acked & pending
    assert len(ids) - len(pending) - len(acked) in (0, 1)


def test_every_acknowledged_dead_letter_survives_sigkill(
    db_path: Path, child_env: dict[str, str]
) -> None:
    _prepare(db_path, 2000)
    acknowledged = _run_and_kill("dead_letter", db_path, child_env, 150)
    with Store.open(db_path) as store:
        pending = {m.id for m in store.list_messages("orders")}
        dead = store.list_messages("orders.failed")
    moved = {message_id for message_id, _ in acknowledged}
    assert not moved & pending
    # each move is whole: a message left its topic if and only if its copy reached the DLQ
    assert len(dead) == 2000 - len(pending)
    assert all(m.dead_letter_of == "orders" and m.last_error for m in dead)
