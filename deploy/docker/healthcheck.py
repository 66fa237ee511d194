"""Container HEALTHCHECK: exit 0 when /readyz answers 200 on this container's port, else 1."""

from __future__ import annotations

import os
import sys
import urllib.request

url = f"http://127.0.0.1:{os.environ.get('GOOGLENET_PORT', '8000')}/readyz"
try:
    with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - fixed loopback URL
        sys.exit(0 if response.status == 200 else 1)
except OSError:
    sys.exit(1)
