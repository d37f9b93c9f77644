"""What text looks like after a trip through Redis history (core.history's JSON)."""


def as_stored(text: str) -> str:
    """``text`` exactly, except that a surrogate pair written as two code units ("\\ud800\\udc00",
    only possible from Python code) reads back as the one character it encodes."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
