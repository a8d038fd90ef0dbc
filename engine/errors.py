"""The one error hierarchy of phlo-tui: every failure a user can see says what, where and what next."""

from __future__ import annotations


class PhloError(Exception):
    """Base of every error the engine raises on purpose.

    `message` says what failed and where; `hint` says what to do next. Neither ever holds a secret.
    """

    exit_code = 1

    def __init__(self, message: str, hint: str = "", *, transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.transient = transient
        """True when the same work may succeed later unchanged (network, server down): worth a retry."""

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(PhloError):
    """A setting is missing, unknown or has a bad value."""

    exit_code = 2


class SourceError(PhloError):
    """The Nightscout site (or an export file) could not be read or returned something unusable."""


class LakeError(PhloError):
    """The Iceberg catalog or warehouse could not be read or written."""


class RunStoreError(PhloError):
    """The run store (runs.sqlite) could not be read or written: a full disk, a read-only home."""


class ValidationError(PhloError):
    """A batch could not be validated at all (not: some rows failed checks, that is quarantine)."""


class PromotionError(PhloError):
    """dev could not be promoted to main: gates failed, or the branches diverged."""

    exit_code = 3


class LeaseHeldError(PhloError):
    """Another process holds the writer lease on this home."""


class StepFailed(PhloError):
    """A pipeline step raised; the cause is chained and recorded in the run store."""

    def __init__(self, step: str, run_id: str, cause: BaseException) -> None:
        detail = cause.message if isinstance(cause, PhloError) else f"{type(cause).__name__}: {cause}"
        hint = cause.hint if isinstance(cause, PhloError) else ""
        transient = cause.transient if isinstance(cause, PhloError) else False
        super().__init__(f"step {step!r} of run {run_id} failed: {detail}", hint, transient=transient)
        self.step = step
        self.run_id = run_id
        self.cause = cause


class Interrupted(PhloError):
    """The process was asked to stop; the run ends at a step boundary and the next run finishes the work."""

    def __init__(self) -> None:
        super().__init__(
            "stopped on request before the run finished", "the next run picks up where this one stopped"
        )
