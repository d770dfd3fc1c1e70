"""``transformers serve``: the request's context carried to the generation it asks for.

See :mod:`.handoff` for how, and :mod:`.wrap` for the seams. docs/serving.md lists the entry points
covered.
"""
