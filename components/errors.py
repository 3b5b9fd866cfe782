"""The one exception type of the ``components`` package."""


class ComponentError(Exception):
    """A component could not do its work; the message names the file, key or value at fault."""
