"""Telegram (python-telegram-bot): polling or webhook, drafts, forum topics."""
