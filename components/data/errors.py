"""The data layer's error, in a module of its own: a command can catch it without loading numpy."""


class SignsDataError(ValueError):
    """The input data is missing or malformed; the message is one line naming the file."""
