"""LangChain pieces used by langchain.fmflow: a chat model factory and a LangChain tool."""

from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.tools import tool


def make():
    # A fake model keeps the example offline; return ChatOpenAI(...) or any chat model here.
    return FakeListChatModel(responses=["Hello from a LangChain model."])


@tool
def shout(text: str) -> str:
    """Upper-case a text."""
    return text.upper()
