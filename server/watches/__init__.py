"""Watches: standing yes/no questions on a live stream, scored on every new window, that
alert (an `alert` event on the stream's events, and a signed webhook) when a window scores
at or above their threshold."""
