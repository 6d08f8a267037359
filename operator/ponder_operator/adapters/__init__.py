"""Thin adapters between the operator's pure policy and the outside world.

``kube`` talks to the Kubernetes API (server-side apply, reads, events); ``prometheus``
reads the autoscaler's signals. Neither decides anything.
"""
