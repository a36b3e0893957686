"""Domain errors of the loop; the API maps them to HTTP in one place."""


class NotFound(LookupError):
    """The thing asked for does not exist for this tenant."""


class Conflict(RuntimeError):
    """The request contradicts the current state (e.g. a checkpoint already resolved)."""


class NotReady(RuntimeError):
    """A message arrived before what it builds on exists; it is retried (out-of-order delivery)."""
