"""The exception types of the ``tflm_ext`` package: all derive from TflmExtError."""


class TflmExtError(Exception):
    """A .tflite graph could not be read, run, measured or rewritten; the message says why."""


class NothingPatchableError(TflmExtError):
    """The planner found no stage it can run tile by tile; the message says why.

    A refusal rather than a failure: pipelines keep such a model as it is, while the
    ``patch`` command reports it as an error.
    """


class ChildStartError(TflmExtError):
    """``run_isolated`` could not start its child process or hand it the function and
    arguments (no python interpreter, a function defined in ``__main__`` or a lambda, an
    argument that does not pickle, the function's module failing to import in the child).
    Not the model's fault: TFLM never ran."""


class ChildCrashError(TflmExtError):
    """The child process running the function died without a result: killed by a signal
    (TFLM's ``abort()`` is SIGABRT) or exited non-zero. For a TFLM function, the model
    crashed TFLM; the message quotes the child's last stderr lines (TFLM's DebugLog)."""


class ChildTimeoutError(TflmExtError):
    """The function ran past ``run_isolated``'s ``timeout_s``; the child was killed."""


class ChildRaisedError(TflmExtError):
    """The function raised an exception in the child process (run_batch: e.g. a TflmExtError
    about the model's inputs). The message ends with the original ``Type: message``;
    ``type_name`` holds the type's name and ``child_traceback`` the child's formatted
    traceback. The original type is not re-raised: it may not even import here."""

    def __init__(self, message: str, type_name: str = "", child_traceback: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name
        self.child_traceback = child_traceback

    def __reduce__(self):  # keep the extra fields when pickled (e.g. across Beam workers)
        return (type(self), (str(self), self.type_name, self.child_traceback))
