"""The commands of the README and of the docs' walk-through pages, run as written in a fresh
copy of the repository.

Every command of every ```bash block of PAGES runs, page after page, in order: backslash
continuations and open quotes join lines, and comments are dropped. Each block runs in one
bash process (so a `cd` or an `export` carries on within it), in a copy of the repository
committed on `main` (copy_repo), with only the system's tools on PATH: no venv, no uv, as on
a new machine. So `make` installs the pinned uv and the environment exactly as a new user's
first `make run` does.

Commands that cannot run here are named in SKIPPED with the reason; every other command runs,
so a command added to those pages later is tested by default. Any other page of docs/ may
hold no ```bash block (a command not meant to run goes in a ```console or ```text block), so
no command shown as runnable goes untested. Servers (LONG_RUNNING) are started in the
background, polled on 127.0.0.1 until they answer, and stopped at the end of their block, so
the commands after them (the `curl` under `make serve`) talk to them.

Runtime: about 2 minutes on 2 cores, most of it the first `make` (uv and the environment
from uv's cache) and two pipeline runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.support.processes import VENV_BIN, free_port
from tests.support.project import copy_repo

pytestmark = pytest.mark.slow

README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
# The pages whose ```bash blocks run, in this order, in one copy: the README's `make run`
# first, the parameter change before `make serve` (its curl), as a reader goes through them.
# Bring your own data's steps are ```sh blocks, which tests/integration/test_readme_byod.py runs
# on a table of their own (a data swap here would break the serving example).
PAGES = [
    README,
    DOCS / "getting-started.md",
    DOCS / "pipeline.md",
    DOCS / "serving.md",
    DOCS / "release.md",
    DOCS / "bring-your-own-data.md",
]

# Token prefixes of commands that are not run here, and why.
STACK_TEST = "tests/integration/docker/test_stack.py"
SKIPPED: dict[tuple[str, ...], str] = {
    ("make", "ci"): "it is the whole test suite, this test included; CI runs it",
    ("git", "push"): "there is no remote to push to",
    ("make", "image"): f"the local stack's: {STACK_TEST} builds it on its engine",
    ("make", "up"): f"{STACK_TEST} runs it, on the tests' own Docker engine",
    ("make", "stack-traffic"): f"{STACK_TEST} runs it, then sees the alert fire",
    ("make", "down"): f"{STACK_TEST} runs it and checks that nothing is left",
    ("make", "stack-register"): f"{STACK_TEST} runs it against the stack's MLflow",
    ("make", "stack-drift"): f"{STACK_TEST} runs it on the log shipped to S3",
    ("make", "screenshots"): f"{STACK_TEST} runs it in headless Chromium",
    ("mlflow", "server"): (
        "needs a PostgreSQL server and an S3 bucket; tests/integration/test_registry.py runs "
        "mlflow server on PostgreSQL"
    ),
}
MLFLOW_UI_PORT = free_port()
SERVE_PORT = 8000  # params.yaml's serve.port, which the README's curl uses
# Commands that start a server: the URL that answers 200 once it is ready.
LONG_RUNNING: dict[tuple[str, ...], str] = {
    ("make", "mlflow-ui"): f"http://127.0.0.1:{MLFLOW_UI_PORT}/health",
    ("make", "serve"): f"http://127.0.0.1:{SERVE_PORT}/health/ready",
}
READY_SECONDS = 120
BLOCK_TIMEOUT = 900


@dataclass(frozen=True)
class Command:
    text: str  # as written, continuation lines included
    words: tuple[str, ...]  # as bash splits it, comments dropped

    def matches(self, prefix: tuple[str, ...]) -> bool:
        return self.words[: len(prefix)] == prefix


def bash_blocks(markdown: str) -> list[list[Command]]:
    """The commands of each ```bash block."""
    blocks = []
    for body in re.findall(r"^```bash\n(.*?)^```", markdown, flags=re.DOTALL | re.MULTILINE):
        commands, pending = [], ""
        for line in body.splitlines():
            pending = f"{pending}\n{line}" if pending else line
            if pending.endswith("\\"):
                continue
            try:
                words = shlex.split(pending.replace("\\\n", " "), comments=True)
            except ValueError:  # a quote still open: the command goes on
                continue
            if words:
                commands.append(Command(pending, tuple(words)))
            pending = ""
        assert not pending, f"unfinished command in a bash block: {pending!r}"
        blocks.append(commands)
    return blocks


def block_script(commands: list[Command], logs: Path) -> str:
    """One bash script: each command as written, then a check of its exit status."""
    lines = [
        "readme_pids=()",
        "readme_stop() {",
        '  for pid in ${readme_pids[@]+"${readme_pids[@]}"}; do',
        '    kill -TERM -- -"$pid" 2>/dev/null || continue',
        '    for _ in $(seq 100); do kill -0 -- -"$pid" 2>/dev/null || break; sleep 0.2; done',
        '    kill -KILL -- -"$pid" 2>/dev/null || true',
        "  done",
        "}",
        "trap readme_stop EXIT",
    ]
    for index, command in enumerate(commands):
        shown = shlex.quote(command.text)
        skipped = [reason for prefix, reason in SKIPPED.items() if command.matches(prefix)]
        ready = [url for prefix, url in LONG_RUNNING.items() if command.matches(prefix)]
        if skipped:
            lines.append(f"printf '## skipped (%s): %s\\n' {shlex.quote(skipped[0])} {shown}")
            continue
        lines.append(f"printf '## %s\\n' {shown}")
        if ready:
            log = logs / f"server-{index}.log"
            lines += [
                f"setsid bash -c {shown} >{shlex.quote(str(log))} 2>&1 &",
                'readme_pids+=("$!"); echo "$!" >>' + shlex.quote(str(logs / "pids")),
                f"for _ in $(seq {READY_SECONDS * 2}); do",
                f"  curl -sf -o /dev/null {shlex.quote(ready[0])} && break",
                '  kill -0 "$!" 2>/dev/null || break',
                "  sleep 0.5",
                "done",
                f"if ! curl -sf -o /dev/null {shlex.quote(ready[0])}; then",
                f"  printf 'README server never ready: %s\\n' {shown} >&2",
                f"  tail -n 40 {shlex.quote(str(log))} >&2",
                "  exit 1",
                "fi",
            ]
            continue
        lines += [
            command.text,
            "readme_status=$?",
            'if [ "$readme_status" -ne 0 ]; then',
            f"  printf 'README command failed (exit %s): %s\\n' \"$readme_status\" {shown} >&2",
            "  exit 1",
            "fi",
        ]
    return "\n".join(lines) + "\n"


def new_machine_env(tmp: Path) -> dict[str, str]:
    """The environment of a new user: the system's PATH, without this checkout's venv and uv
    or any directory that has uv, dvc or mlflow in it; a git identity."""
    keep = []
    for entry in os.environ["PATH"].split(os.pathsep):
        path = Path(entry).resolve()
        if not entry or path == VENV_BIN.resolve() or path.is_relative_to(REPO_ROOT):
            continue
        if not any((path / tool).exists() for tool in ("uv", "dvc", "mlflow")):
            keep.append(entry)
    dropped = ("VIRTUAL_ENV", "UV", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTEST_ADDOPTS")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in dropped and not key.startswith(("MLFLOW_", "MLOPS_", "GIT_"))
    }
    return {
        **env,
        "PATH": os.pathsep.join(keep),
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "readme",
        "GIT_AUTHOR_EMAIL": "readme@example.com",
        "GIT_COMMITTER_NAME": "readme",
        "GIT_COMMITTER_EMAIL": "readme@example.com",
        # Make variables, from the environment: compile bytecode lazily rather than all of
        # the environment up front, and a free port for `make mlflow-ui` (5000 may be taken).
        "UV_SYNC_FLAGS": "",
        "MLFLOW_UI_PORT": str(MLFLOW_UI_PORT),
        "TMPDIR": str(tmp),
    }


def test_readme_parser_joins_continuations_and_quotes() -> None:
    markdown = "```bash\nmake run   # comment\ncurl -s x \\\n  -d '{\"a\":\n 1}'\n```\n"
    [commands] = bash_blocks(markdown)
    assert [c.words for c in commands] == [("make", "run"), ("curl", "-s", "x", "-d", '{"a":\n 1}')]


def page_blocks() -> list[tuple[Path, list[Command]]]:
    """Every ```bash block of PAGES, with its page, in the order they run."""
    return [(page, block) for page in PAGES for block in bash_blocks(page.read_text())]


def test_skipped_commands_are_still_in_the_pages() -> None:
    commands = [c for _, block in page_blocks() for c in block]
    for prefix in [*SKIPPED, *LONG_RUNNING]:
        assert any(c.matches(prefix) for c in commands), f"{prefix}: no longer in the pages"


def test_no_other_docs_page_has_a_bash_block() -> None:
    """A ```bash block outside PAGES would look runnable and never run."""
    others = [page for page in sorted(DOCS.rglob("*.md")) if page not in PAGES]
    assert others, "docs/ has no other page: is DOCS right?"
    for page in others:
        assert not bash_blocks(page.read_text()), f"{page}: a bash block that no test runs"


def test_the_readme_keeps_its_commands() -> None:
    """The front door shows the two commands and the local stack, as runnable blocks."""
    words = {c.words for block in bash_blocks(README.read_text()) for c in block}
    assert {("make", "run"), ("make", "ci"), ("make", "up")} <= words


def test_readme_commands_run_in_a_fresh_copy(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", SERVE_PORT))
        except OSError:
            pytest.fail(f"port {SERVE_PORT} (serve.port, used by the README's curl) is taken")
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_repo(repo)
    logs = tmp_path / "logs"
    (tmp_path / "tmp").mkdir()
    logs.mkdir()
    env = new_machine_env(tmp_path / "tmp")
    transcript = []
    for number, (page, commands) in enumerate(page_blocks(), start=1):
        script = block_script(commands, logs)
        process = subprocess.Popen(
            ["bash", "-c", script],
            cwd=repo,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=BLOCK_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
        finally:
            _stop_leftovers(logs / "pids")
        transcript.append(f"--- block {number} ({page.relative_to(REPO_ROOT)})\n{output}")
        assert process.returncode == 0, "\n".join(transcript)[-8000:]
    everything = "\n".join(transcript)
    assert '"prediction":' in everything, everything[-4000:]  # curl got an answer from serve
    assert "model.n_estimators" in everything, everything[-4000:]  # make diff: params
    assert (repo / "dvc_plots" / "index.html").is_file()  # make diff: plots


def _stop_leftovers(pids: Path) -> None:
    """Kill the server process groups a block left behind (if bash itself was killed)."""
    if not pids.exists():
        return
    for pid in pids.read_text().split():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pid), signal.SIGKILL)
    pids.unlink()
