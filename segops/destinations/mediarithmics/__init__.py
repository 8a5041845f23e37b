"""mediarithmics: USER_SEGMENT bulk document imports of UPDATE/DELETE command lines.

`PLATFORM` is what the registry loads; the client modules beside it are imported only
when a change is sent.
"""

from segops.destinations.mediarithmics.platform import PLATFORM

__all__ = ["PLATFORM"]
