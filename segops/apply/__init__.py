"""Stage 4: apply a plan: walk its changes, hand each to its destination, journal, record what
landed.
"""
