"""Slack (slack-bolt, async): assistant threads, mention threads, Socket Mode and HTTP."""
