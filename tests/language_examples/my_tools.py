"""Python tools named by section2_example.fmflow (python("my_tools:…")), found
because they sit beside the flow file."""


def word_count(text: str) -> int:
    return len(text.split())


def shout(text: str) -> str:
    return text.upper()
