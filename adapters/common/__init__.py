"""Helpers every platform adapter shares (identity, commands, recent ids, thread
ownership, sizes, endpoints). Imports only ``adapters.base`` and ``runtime``."""
