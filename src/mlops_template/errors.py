"""The one exception type the CLI turns into a clear message and a non-zero exit."""


class PipelineError(Exception):
    """A problem the user can fix (bad params, bad data, unreachable server).

    The message is shown as-is, so it must name what is wrong and where.
    """
