"""Signing, sanitising, secret redaction and the local stack's signing keys."""
