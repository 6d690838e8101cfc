"""The one user-facing error type.

Every error a user can cause (bad input file, missing tool, malformed artifact) is raised as
:class:`TeeformError`. ``teeform.cli.main`` prints it as one line plus an optional hint and exits
with status 2; a traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import os


class TeeformError(Exception):
    """A failure the user can act on.

    Args:
        message: what is wrong, in one sentence.
        hint: how to fix it (optional).
        path: the file the problem is in (optional); printed before the message.
        field: the field, section or member inside that file (optional).
    """

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        path: os.PathLike[str] | str | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.hint = hint
        self.path = os.fspath(path) if path is not None else None
        self.field = field
        super().__init__(self.render())

    def render(self) -> str:
        """Return ``"<path>: <field>: <message>"`` with the absent parts left out."""
        parts = [p for p in (self.path, self.field) if p]
        parts.append(self.message)
        return ": ".join(parts)


class ToolMissingError(TeeformError):
    """An external program (for example ``veritysetup``) is not installed."""
