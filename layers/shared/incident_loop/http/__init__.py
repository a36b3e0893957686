"""The HTTP boundary of the API: what a request must be before a route sees it, and the one error body."""
