"""Turn a fresh copy of the template into a project of its own (copier's task, see copier.yml).

The template's files are copied verbatim (the repository must stay a working project, so
nothing in it is a jinja template); this script then puts the user's names in. Copier runs
it after every copy and, on `copier update`, on the old and the new template revision and on
the project itself, so everything here is idempotent and depends only on the answers:

- every step (rename src/mlops_template, replace the identifiers, set params.yaml's
  data.source and pyproject's description, drop the template's own pipeline outputs) gives the
  same tree whichever revision it runs on, so the update's diff is the template's change;
- the steps that touch what becomes the user's (copy the data file in, write its contract
  with `mlops contract init`, `git init`) run on the first copy only.

Answers that would break the project are refused first, before anything changes: a package
name that shadows a module it imports, a data path outside it or one the pipeline writes.
Text is rewritten in code and configuration only, never in data/ or a table.

It runs under copier's interpreter, so it uses the standard library only.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import keyword
import os
import posixpath
import re
import shlex
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
    "models/model.onnx.sha256",
    "reports/parity.json",
    "models/reference.json",
    "reports/explain",
    "models/background.json",
)
# A whole name only (not inside another, such as a package `mlops_template_fraud`), so that
# renaming a renamed tree changes nothing; `mlops-template-dvc` is a name of its own, and so is
# a default after a shell or compose `${VAR:-`.
TEMPLATE_NAME = re.compile(r"(?:(?<![\w-])|(?<=:-))mlops([_-])template(?!\w)")
# Where the text is the user's, never rewritten: data/ (tables, the contract) and tables
# anywhere, and copier's answers file (it names the template's source, maybe by its name).
SKIPPED_DIRS = {".git", ".venv", ".tools", "node_modules", "__pycache__"}  # at any depth
SKIPPED_PATHS = {".dvc/cache", ".dvc/tmp", "data", ".copier-answers.yml"}  # from the root
DATA_SUFFIXES = {".csv", ".tsv", ".parquet", ".pq", ".feather", ".arrow"}
MAX_TEXT_BYTES = 8_000_000  # larger files are data, not code: left alone
# What the pipeline writes into data/ (params.yaml's paths) and the contract: not a source.
RESERVED_DATA = {
    "data/raw.parquet", "data/validated.parquet", "data/train.parquet", "data/test.parquet",
    "data/validated_contract.json", "data/contract.yaml",
}  # fmt: skip
# Import names of the project's dependencies: a package of that name would shadow them. Every
# package uv.lock pins is refused as it is spelled; these are the modules whose name differs
# from their distribution's (sklearn: scikit-learn), and the main ones again, for the reader.
IMPORT_NAMES = {
    "antlr4", "attr", "cfnlint", "databricks", "dateutil", "dotenv", "flufl", "git", "google",
    "graphql", "hydra", "markdown_it", "mpl_toolkits", "opentelemetry", "pkg_resources", "public",
    "py", "pylab", "rpds", "ruamel", "sklearn", "validate", "yaml", "zc",
    "dvc", "fastapi", "httpx", "mlflow", "numpy", "pandas", "pandera", "pydantic", "typer",
}  # fmt: skip
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
            if name not in SKIPPED_DIRS and (here / name).as_posix() not in SKIPPED_PATHS
        ]
        for name in files:
            path = Path(folder, name)
            if (here / name).as_posix() in SKIPPED_PATHS or path.suffix.lower() in DATA_SUFFIXES:
                continue
            if path.is_symlink() or path.stat().st_size > MAX_TEXT_BYTES:
                continue
            found.append(path)
    return found


def rename(text: str, package: str, project: str) -> str:
    """Every whole `mlops_template` becomes the package, every `mlops-template` the project;
    one that already starts the new name is left (the new name may hold the template's)."""

    def renamed(match: re.Match[str]) -> str:
        new = package if match.group(1) == "_" else project
        after = text[match.start() + len(new) : match.start() + len(new) + 1]
        done = text.startswith(new, match.start()) and not re.match(r"\w", after)
        return match.group() if done else new

    return TEMPLATE_NAME.sub(renamed, text)


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
        new = rename(text, package, project)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def quoted(value: str) -> str:
    """A double-quoted string, valid in YAML and in TOML alike: JSON's escapes, and the
    control characters neither accepts raw (DEL, C1) escaped too."""
    text = json.dumps(value, ensure_ascii=False)
    return re.sub(r"[\x7f-\x9f]", lambda m: f"\\u{ord(m.group()):04x}", text)


def yaml_value(value: str) -> str:
    """A path as YAML: plain when it cannot be read as anything else (letters, digits, `_.-`
    and a `/`: no number, boolean or null has a slash), else quoted."""
    return value if re.fullmatch(r"[\w.-]*/[\w./-]*", value, re.ASCII) else quoted(value)


def comment_of(rest: str) -> str:
    """The comment after a YAML or TOML value, with the blanks before it (a quoted value may
    hold ` #`), or a bare newline."""
    rest = rest.rstrip("\n")
    string = re.match(r'"(?:[^"\\]|\\.)*"|\'(?:[^\']|\'\')*\'', rest)
    found = re.search(r"\s+#.*", rest[string.end() if string else 0 :])
    return (found.group() if found else "") + "\n"


def set_line(path: Path, prefix: str, value: str, after: str | None = None) -> None:
    """Replace the value of the first line starting with `prefix` (after the line `after`) by
    `value` (already quoted as needed), keeping every comment: a YAML or TOML rewrite would
    drop them."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == after), -1) if after else -1
    for index in range(start + 1, len(lines)):
        if lines[index].startswith(prefix):
            lines[index] = prefix + value + comment_of(lines[index][len(prefix) :])
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


def lock_names(root: Path) -> set[str]:
    """The packages uv.lock pins, as import names (`-` and `.` as `_`), but the project's own."""
    lock = root / "uv.lock"
    text = lock.read_text(encoding="utf-8") if lock.is_file() else ""
    pinned = re.findall(r'(?m)^name = "([^"]+)"$', text)
    own = re.findall(r'(?m)^name = "([^"]+)"\nversion = "[^"]+"\nsource = \{ editable', text)
    return {import_name(name) for name in pinned} - {import_name(name) for name in own}


def import_name(name: str) -> str:
    return re.sub(r"[-.]", "_", name.lower())


def check_answers(root: Path, args: argparse.Namespace) -> None:
    """Refuse, before anything changes, names that would shadow a module the project imports
    and a data path the pipeline cannot own (copier then removes the half-made copy)."""
    package, project, data = args.package, args.project, args.data
    pinned = lock_names(root)
    why = None
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", package):
        why = "is not a lowercase Python identifier"
    elif keyword.iskeyword(package):
        why = "is a Python keyword"
    elif package == "tests":
        why = "is the tests' package"
    elif package in getattr(sys, "stdlib_module_names", ()):
        why = "is a module of Python's standard library"
    elif package in pinned | IMPORT_NAMES:
        why = "is the import name of one of the project's dependencies"
    if why:
        raise SystemExit(f"setup_project: package_name {package!r} {why}: choose another")
    if import_name(project) in pinned:
        raise SystemExit(
            f"setup_project: project_name {project!r} is one of the project's dependencies"
            " (a distribution cannot depend on itself): choose another"
        )
    given = Path(data).expanduser()
    source = posixpath.normpath(data_path(data))
    if not given.is_absolute() and ".." in given.parts:
        raise SystemExit(
            f"setup_project: data_source {data!r} leaves the project: give a path inside it,"
            " or an absolute path (the file is copied into data/)"
        )
    if source in RESERVED_DATA:
        raise SystemExit(
            f"setup_project: data_source {data!r} would be {source}, which the pipeline"
            " writes: rename the table"
        )
    inside = root / source
    if (
        args.operation == "copy"
        and given.is_absolute()
        and inside.exists()
        and not (given.is_file() and filecmp.cmp(given, inside, shallow=False))
    ):
        raise SystemExit(
            f"setup_project: data_source {data!r} would be copied to {source}, which the"
            " template already has: rename the table (or give its path inside the project)"
        )


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
    command = [
        ".venv/bin/mlops",
        "contract",
        "init",
        "--data",
        source,
        "--target",
        target,
        "--force",
    ]
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
    check_answers(root, args)
    source = data_path(args.data)

    rename_package(root, args.package)
    if replace_identifiers(root, args.package, args.project):
        format_python(root)
    description = " ".join(args.description.split())  # one line: the package's summary
    set_line(root / "pyproject.toml", "description = ", quoted(description))
    set_line(root / "params.yaml", "  source: ", yaml_value(source), after="data:")
    reset_outputs(root, source)
    if args.operation != "copy":
        return 0
    table = bring_data(root, args.data)
    default = (source, args.target, args.task) == (TEMPLATE_DATA, TEMPLATE_TARGET, "auto")
    if not default:
        make = shlex.join(["make", "init-schema", f"DATA={source}", f"TARGET={args.target}"])
        make += " FORCE=1"  # it replaces the example's contract
        if table is None:
            print(
                f"setup_project: {source} is not there yet: put it there, then run `{make}`",
                file=sys.stderr,
            )
        elif not init_schema(root, source, args.target, args.task, args.positive):
            print(
                f"setup_project: warning: the contract was not written; fix the above, then run"
                f" `{make}`",
                file=sys.stderr,
            )
    git_init(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
