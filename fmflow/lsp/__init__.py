"""The fmflow language server (`fmflow lsp`): LSP over stdio on pygls.

``server`` wires the protocol; ``analysis`` keeps the checked files between
edits; ``positions`` converts spans to LSP's UTF-16 positions; ``symbols``
finds what a name means and where else it is named; ``diagnostics``,
``hover``, ``completion``, ``outline`` and ``preview`` each answer one kind
of request. pygls is imported only here, never by the rest of fmflow.
"""
