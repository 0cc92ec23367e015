"""Score functions for best-of-N: higher is better."""


def score(slogan: str, product: str) -> float:
    """0 when the slogan does not name the product; else 1 / number of words."""
    if product.lower() not in slogan.lower():
        return 0.0
    return 1.0 / max(1, len(slogan.split()))
