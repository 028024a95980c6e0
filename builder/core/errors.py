"""The one error family a task maps to exit codes: every stage's failure is a BuilderError.

Each message names the input and what to do; tasks.py prints it as one line.
A UsageError is a request that does not parse (a flag, a key of invoke.yaml):
exit 2. Any other BuilderError is a run that could not finish: exit 1.
"""


class BuilderError(Exception):
    pass


class UsageError(BuilderError, ValueError):
    pass
