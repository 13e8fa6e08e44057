"""Turn a fresh copy of the template into a project of its own (copier's task, see copier.yml).

The template's files are copied verbatim (the repository must stay a working project, so
nothing in it is a jinja template); this script then puts the user's names in. Copier runs
it after every copy and, on `copier update`, on the old and the new template revision and on
the project itself, so everything here is idempotent and depends only on the answers:

- every step (rename src/mlops_template, replace the identifiers, set params.yaml's
  data.source and pyproject's description, drop the template's own pipeline outputs) gives the
  same tree whichever revision it runs on, so the update's diff is the template's change;
- the steps that touch what becomes the user's (copy the data file in, write its contract
  with `mlops init-schema`, `git init`) run on the first copy only.

It runs under copier's interpreter, so it uses the standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

TEMPLATE_PACKAGE = "mlops_template"
TEMPLATE_PROJECT = "mlops-template"
TEMPLATE_NAMES = (TEMPLATE_PACKAGE, TEMPLATE_PROJECT)
TEMPLATE_DATA = "data/penguins.csv"
TEMPLATE_TARGET = "species"
# Outputs of the template's own run of its own data: a new project makes its own with
# `make run` (their hashes would not match the renamed code anyway).
TEMPLATE_OUTPUTS = (
    "dvc.lock",
    "reports/metrics.json",
    "reports/validation.json",
    "reports/plots",
    "models/model.joblib.sha256",
    "models/reference.json",
)
SKIPPED_DIRS = {".git", ".venv", ".tools", "node_modules", "__pycache__", ".dvc/cache", ".dvc/tmp"}
MAX_TEXT_BYTES = 8_000_000  # larger files are data, not code: left alone
LONG = re.compile(r"Line too long \((\d+) >")
PYCODESTYLE = "[tool.ruff.lint.pycodestyle]"


def rename_package(root: Path, package: str) -> None:
    """src/mlops_template -> src/<package>; on an update, the new files replace the old."""
    old, new = root / "src" / TEMPLATE_PACKAGE, root / "src" / package
    if package == TEMPLATE_PACKAGE or not old.is_dir():
        return
    if not new.exists():
        old.rename(new)
        return
    shutil.copytree(old, new, dirs_exist_ok=True)
    shutil.rmtree(old)


def text_files(root: Path) -> list[Path]:
    """The files a name can appear in: not git's, not environments or caches, not binary."""
    found = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder).relative_to(root)
        dirs[:] = [
            name
            for name in dirs
            if name not in SKIPPED_DIRS and (here / name).as_posix() not in SKIPPED_DIRS
        ]
        for name in files:
            path = Path(folder, name)
            if path.is_symlink() or path.stat().st_size > MAX_TEXT_BYTES:
                continue
            found.append(path)
    return found


def replace_identifiers(root: Path, package: str, project: str) -> list[Path]:
    """Every `mlops_template` becomes the package, every `mlops-template` the project name:
    imports, pyproject and uv.lock, the image, MLflow experiment and registry names."""
    changed = []
    for path in text_files(root):
        raw = path.read_bytes()
        if b"\0" in raw[:8192] or not any(name.encode() in raw for name in TEMPLATE_NAMES):
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        new = text.replace(TEMPLATE_PACKAGE, package).replace(TEMPLATE_PROJECT, project)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def set_line(path: Path, prefix: str, value: str, after: str | None = None) -> None:
    """Replace the value of the first line starting with `prefix` (after the line `after`),
    keeping every comment: a YAML or TOML rewrite would drop them."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == after), -1) if after else -1
    for index in range(start + 1, len(lines)):
        if lines[index].startswith(prefix):
            comment = lines[index].partition(" #")[2]
            lines[index] = f"{prefix}{value}" + (f" #{comment}" if comment else "\n")
            path.write_text("".join(lines), encoding="utf-8")
            return
    raise SystemExit(f"setup_project: {path}: no line starting with {prefix!r}")


def locked_version(root: Path, package: str) -> str | None:
    """The version of `package` that the project's uv.lock pins."""
    lock = root / "uv.lock"
    text = lock.read_text(encoding="utf-8") if lock.is_file() else ""
    found = re.search(rf'^name = "{re.escape(package)}"\nversion = "([^"]+)"', text, re.M)
    return found.group(1) if found else None


def ruff_command(version: str) -> list[str] | None:
    """A ruff of exactly the project's version: copier's own, the one on PATH, or uv's. The
    same on every replay of an update (never the project's venv, which only one tree has)."""
    for command in ([sys.executable, "-m", "ruff"], ["ruff"]):
        try:
            shown = subprocess.run([*command, "--version"], capture_output=True, check=False)
        except OSError:
            continue
        if shown.returncode == 0 and shown.stdout.decode().split()[-1:] == [version]:
            return command
    uv = shutil.which("uv")
    return [uv, "tool", "run", f"ruff@{version}"] if uv else None


def format_python(root: Path) -> None:
    """Names of another length move line breaks: re-sort imports and re-format with the
    project's pinned ruff, so its lint test passes on the renamed code."""
    version = locked_version(root, "ruff")
    command = ruff_command(version) if version else None
    if command is None:
        print("setup_project: no ruff found: run `make lint` before committing", file=sys.stderr)
        return
    for args in (["check", "--fix-only", "--quiet", "."], ["format", "--quiet", "."]):
        subprocess.run([*command, *args], cwd=root, check=False)
    relax_line_length(root, command)


def relax_line_length(root: Path, command: list[str]) -> None:
    """A longer name makes some comments and docstrings too long for E501, which no tool can
    fix: let the linter accept the longest (the formatter keeps its line length)."""
    checked = subprocess.run(
        [*command, "check", "--select", "E501", "--output-format", "json", "--exit-zero", "."],
        cwd=root, capture_output=True, check=False,
    )  # fmt: skip
    try:
        found = json.loads(checked.stdout or b"[]")
    except ValueError:
        return
    lengths = [int(m.group(1)) for m in (LONG.search(f["message"]) for f in found) if m]
    if not lengths:
        return
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    setting = f"max-line-length = {max(lengths)}  # the longest line after copier's renaming"
    if PYCODESTYLE in text:
        text = re.sub(r"(?m)^max-line-length = .*$", setting, text)
    else:
        text = text.rstrip("\n") + f"\n\n{PYCODESTYLE}\n{setting}\n"
    pyproject.write_text(text, encoding="utf-8")


def data_path(data: str) -> str:
    """Where the data lives in the project: as given, or data/<name> for a file elsewhere."""
    given = Path(data).expanduser()
    return f"data/{given.name}" if given.is_absolute() else data


def reset_outputs(root: Path, source: str) -> None:
    """Drop the template's pipeline outputs, and its example table if the project has another."""
    for name in TEMPLATE_OUTPUTS:
        path = root / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    if source != TEMPLATE_DATA:
        (root / TEMPLATE_DATA).unlink(missing_ok=True)


def bring_data(root: Path, data: str) -> Path | None:
    """Copy a table given by an absolute path into data/; None when there is no table yet."""
    given = Path(data).expanduser()
    inside = root / data_path(data)
    if given.is_absolute() and given.is_file() and not inside.exists():
        inside.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(given, inside)
    return inside if inside.is_file() else None


def init_schema(root: Path, source: str, target: str, task: str, positive: str) -> bool:
    """Install the project's environment (`make install`) and write its data contract."""
    command = [".venv/bin/mlops", "init-schema", "--data", source, "--target", target, "--force"]
    if task != "auto":
        command += ["--task", task]
    if positive:
        command += ["--positive", positive]
    for step in (["make", "--no-print-directory", "install"], command):
        print(f"setup_project: {' '.join(step)}", file=sys.stderr)
        if subprocess.run(step, cwd=root, check=False).returncode != 0:
            return False
    return True


def git_init(root: Path) -> None:
    """DVC needs a git repository, and `copier update` a committed one: start it."""
    inside = subprocess.run(
        ["git", "rev-parse", "--is-inside-work-tree"], cwd=root, capture_output=True, check=False
    )
    if inside.returncode != 0:
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
        subprocess.run(["git", "add", "-A"], cwd=root, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operation", choices=["copy", "update"], required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--package", required=True)
    parser.add_argument("--description", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--task", default="auto")
    parser.add_argument("--positive", default="")
    parser.add_argument("--root", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    source = data_path(args.data)

    rename_package(root, args.package)
    if replace_identifiers(root, args.package, args.project):
        format_python(root)
    set_line(root / "pyproject.toml", "description = ", _toml_string(args.description))
    set_line(root / "params.yaml", "  source: ", source, after="data:")
    reset_outputs(root, source)
    if args.operation != "copy":
        return 0
    table = bring_data(root, args.data)
    default = (source, args.target, args.task) == (TEMPLATE_DATA, TEMPLATE_TARGET, "auto")
    if not default:
        if table is None:
            print(
                f"setup_project: {source} is not there yet: put it there, then run"
                f" `make init-schema DATA={source} TARGET={args.target}`",
                file=sys.stderr,
            )
        elif not init_schema(root, source, args.target, args.task, args.positive):
            print(
                "setup_project: warning: the contract was not written; fix the above, then run"
                f" `make init-schema DATA={source} TARGET={args.target}`",
                file=sys.stderr,
            )
    git_init(root)
    return 0


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


if __name__ == "__main__":
    sys.exit(main())
