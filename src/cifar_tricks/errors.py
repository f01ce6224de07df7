"""Errors a user can fix: each message says what is wrong and which setting or file fixes it."""


class CifarTricksError(Exception):
    """Base of the errors that name their own fix (shown without a long traceback)."""


class ConfigError(CifarTricksError, ValueError):
    """A configuration value is invalid or two values contradict each other."""


class DatasetNotFoundError(CifarTricksError, FileNotFoundError):
    """The dataset files are not where `data.root` says and cannot be downloaded."""


class CheckpointError(CifarTricksError, RuntimeError):
    """A checkpoint cannot be used to resume this run; it is left untouched."""


class FolderBusyError(CifarTricksError, RuntimeError):
    """Another live process is writing into the run folder; nothing was touched."""


class DiskFullError(CifarTricksError, OSError):
    """A file could not be written for lack of space (or over a file-size limit); the previous
    version of the file is intact."""


class DatasetError(CifarTricksError, ValueError):
    """A dataset file is corrupt, truncated, planted or from another dataset; it names the file
    and the check that failed."""


class LRFinderError(CifarTricksError, RuntimeError):
    """The learning-rate range test saw too few finite losses to suggest a learning rate."""
