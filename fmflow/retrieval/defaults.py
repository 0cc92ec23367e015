"""Defaults of the store and of `fmflow index`, in a module light enough for the CLI to read at start-up."""

import os

DEFAULT_STORE = os.path.join(".fmflow", "store")
DEFAULT_EMBEDDING = "builtin:minilm"
DEFAULT_MAX_FILE_MB = 100  # files bigger than this are skipped (--max-file-mb; 1 MB = 1,000,000 bytes)
DEFAULT_LOCK_TIMEOUT = 600.0  # seconds a run waits for another one to finish writing to the store
