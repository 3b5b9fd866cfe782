"""The one exception type of the ``tflm_ext`` package."""


class TflmExtError(Exception):
    """A .tflite graph could not be read, run, measured or rewritten; the message says why."""


class NothingPatchableError(TflmExtError):
    """The planner found no stage it can run tile by tile; the message says why.

    A refusal rather than a failure: pipelines keep such a model as it is, while the
    ``patch`` command reports it as an error.
    """
