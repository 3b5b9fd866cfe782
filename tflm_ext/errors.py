"""The one exception type of the ``tflm_ext`` package."""


class TflmExtError(Exception):
    """A .tflite graph could not be read, run, measured or rewritten; the message says why."""
