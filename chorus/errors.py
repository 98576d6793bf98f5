"""The one exception type for bad user input; the CLI turns it into a one-line message and exit code 2."""


class InputError(Exception):
    """Bad input from the user: a file, a config key or a value. The message names it and says what was expected."""
