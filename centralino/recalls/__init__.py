"""Recalls (Call me now / Call me back, and the callback key): placing requests through the
agents' lines (placing) and the portal's HTTP API (http). The rules are cti.recalls'."""
