"""Continuous batching (``ContinuousBatchingManager``: ``transformers serve --continuous-batching``,
``model.generate_batch``): one span per request, with the read-out from the packed forwards.

:mod:`.wrap` wires the manager's seams; :mod:`.step` observes one packed forward; :mod:`.traces`
keeps the requests in flight; :mod:`.request` reads a request and its end. docs/serving.md.
"""
