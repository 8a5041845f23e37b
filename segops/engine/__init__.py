"""Stage 2: the member engine: sources and snapshots as relations, identifier rules, the diff
into delta files.
"""
