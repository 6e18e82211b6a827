"""The local web chat: a page and a websocket served on the gateway's HTTP server."""
