"""The errors genart raises for what a user can fix (imported by every layer, importing none).

The CLI prints these on one line with exit code 2, the job scripts do the same, and the HTTP
app maps them to 4xx answers: a message here always says what to change.
"""


class InputError(ValueError):
    """Bad input from the user (config, data, request): the message says what to fix."""


class ConfigError(InputError):
    """A config key, type or value is invalid; the message names the key and the valid choices."""
