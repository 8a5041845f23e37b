"""MoEngage: the File Segment API (create, add-users, remove-users, replace from a CSV URL).

`PLATFORM` is what the registry loads; the client, publishers and callback listener beside
it are imported only when a change is sent.
"""

from segops.destinations.moengage.platform import PLATFORM

__all__ = ["PLATFORM"]
