"""Adapters that plug hybrid_nes into other frameworks.

``hybrid_nes.integrations.openspiel``: drop-in meta-solvers for OpenSpiel's JPSRO and
PSRO v2 (needs the ``openspiel`` extra only to register them in OpenSpiel itself). Its
private helpers: ``_meta_game`` (meta-game arrays, gains and gaps) and ``_certified``
(certified solve, JPSRO clean-up).
"""
