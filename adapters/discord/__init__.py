"""Discord (discord.py): DMs, a thread per mention, slash commands."""
