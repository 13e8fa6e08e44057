"""The one exception type the CLI turns into a clear message and a non-zero exit."""


class PipelineError(Exception):
    """A problem the user can fix (bad params, bad data, unreachable server).

    The message is shown as-is, so it must name what is wrong and where.
    """


def check_revision(base: str) -> str:
    """A git revision given on the command line, passed on to git and dvc: never an option
    (`--output=...`) nor text with spaces or control characters."""
    if not base or base.startswith("-") or any(ch.isspace() or ord(ch) < 32 for ch in base):
        raise PipelineError(f"--base: {base!r} is not a git revision")
    return base
