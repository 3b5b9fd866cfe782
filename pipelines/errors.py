"""The one exception type of the ``pipelines`` package."""


class PipelineError(Exception):
    """A pipeline could not start or finish: a bad config, a failed stage, a failed gate."""
