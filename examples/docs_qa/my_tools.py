"""Python tools of the docs_qa example (found because they sit beside the flow)."""


def word_count(text: str) -> int:
    return len(text.split())
