"""Loopback servers that speak the wire protocols of Anthropic Messages, PostgREST and Opik REST.

They are strict on purpose: a request the real service would reject fails the test.
"""
