"""The exceptions mck raises for problems a user can fix. The CLI prints them in one line, without a traceback."""

from __future__ import annotations


class MckError(Exception):
    """Base class: ``item`` is the work item (video, session, …) or None; ``fix`` says what to do about it."""

    def __init__(self, what: str, *, item: str | None = None, fix: str | None = None, path: str | None = None):
        self.what = what
        self.item = item
        self.fix = fix
        self.path = path
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = self.what
        if self.path and self.path not in text:
            text = f"{self.path}: {text}"
        if self.item:
            text = f"{self.item}: {text}"
        if self.fix:
            text = f"{text} ({self.fix})"
        return text


class ConfigError(MckError):
    """The composed configuration is invalid (unknown key, wrong type, unknown item, missing file)."""


class InputError(MckError):
    """An input file is missing, unreadable or inconsistent (truncated video, wrong cameras, all-NaN keypoints)."""


class StepError(MckError):
    """A step failed for a reason that is neither bad config nor bad input (e.g. too few detections)."""


class DiskFullError(StepError):
    """An output could not be written: no space left (or over quota) where it goes. Nothing was left half-written."""


class NotImplementedStep(ConfigError):
    """The step has a config file but its code does not exist yet."""
