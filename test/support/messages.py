"""What the project's error messages must say."""


def says_expected_found(message: str) -> bool:
    """Return whether a bad-input message names what was expected and what was found (or that it is missing)."""
    return "expected" in message and ("found" in message or "missing" in message)
