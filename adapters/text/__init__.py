"""The text layer below the adapters: markdown parsing (markdown-it-py), one renderer
per target format, chunking, and ``TextFormat``, which each adapter sets to say how its
platform shows text and counts a message's length."""
