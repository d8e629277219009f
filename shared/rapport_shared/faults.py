"""Named crash points for the delivery-guarantee tests.

``crash_point("relay.after_publish")`` kills the process on the spot (``os._exit``, no cleanup,
like SIGKILL) when ``RAPPORT_CRASH_AT`` names that point. ``RAPPORT_CRASH_IF`` narrows it to the
work whose ``about`` text contains that string (e.g. one test's recipient), because in a shared
end-to-end system other tests' leftover work passes the same point first. Unset in production;
it costs one environment lookup.
"""

from __future__ import annotations

import os
import sys

EXIT_CODE = 86


def crash_point(name: str, about: str = "") -> None:
    if os.environ.get("RAPPORT_CRASH_AT") == name and os.environ.get("RAPPORT_CRASH_IF", "") in about:
        sys.stderr.write(f"rapport: crash point {name} reached, exiting {EXIT_CODE}\n")
        sys.stderr.flush()
        os._exit(EXIT_CODE)
