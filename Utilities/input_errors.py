"""The one shape of "input a person can fix": a message and the field it is about.

Every layer raises these (config keys, command-line options, form and JSON fields,
backtest requests, data files), so a caller places an error by its ``field`` attribute
and never by reading the message text. The web turns them into its one JSON error body
(``web.json_io``), the CLI into one line and exit 2.
"""

from __future__ import annotations

from collections.abc import Mapping


class InputError(ValueError):
    """Bad input; ``field`` names it (``lookback_window``, ``--csv_path``, ``start``) or
    is None when the problem is the request as a whole."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    @property
    def errors(self) -> dict[str | None, str]:
        """Message by field, the shape :class:`InputErrors` has too."""
        return {self.field: str(self)}


class InputErrors(InputError):
    """Several problems found in one pass, so a person fixes them all in one go."""

    def __init__(self, errors: Mapping[str | None, str]) -> None:
        if not errors:
            raise ValueError("InputErrors needs at least one error")
        self._errors = dict(errors)
        first = next(iter(self._errors))
        super().__init__("; ".join(f"{k}: {v}" if k else v for k, v in self._errors.items()),
                         field=first)

    @property
    def errors(self) -> dict[str | None, str]:
        return dict(self._errors)


def raise_collected(errors: Mapping[str | None, str]) -> None:
    """Raise the errors found (one as :class:`InputError`, several as
    :class:`InputErrors`); nothing when there are none."""
    if len(errors) == 1:
        field, message = next(iter(errors.items()))
        raise InputError(message, field)
    if errors:
        raise InputErrors(errors)
