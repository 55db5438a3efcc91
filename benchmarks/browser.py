"""Debian's Chromium driven by Playwright, for browser tests and the latency benchmark.

Never a downloaded browser: `executable_path=/usr/bin/chromium`. The flags keep Chromium off
every network but loopback (no background services, no QUIC, no mDNS-hidden candidates) and
let WebRTC use 127.0.0.1. Playwright passes its own `--disable-features`; Chromium keeps only
the last one, so ours are merged into it.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
]
DISABLED_FEATURES = ["WebRtcHideLocalIpsWithMdns", "MediaRouter", "OptimizationHints", "Translate"]


def unavailable_reason() -> str | None:
    """Why browser tests cannot run here, or None when they can."""
    if not os.path.exists(CHROMIUM):
        return (
            f"{CHROMIUM} is missing (Debian package 'chromium'; `make sysdeps` installs it as root)"
        )
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the Python package 'playwright' is missing (pip install -e '.[test]')"
    if shutil.which("chromium") is None:
        return "chromium is not on PATH"
    return None


def launch_options(headless: bool = True) -> dict[str, Any]:
    return {
        "executable_path": CHROMIUM,
        "headless": headless,
        "args": FLAGS,
        "env": {**os.environ, "HOME": os.environ.get("HOME", "/tmp")},
    }


def disable_features_flag() -> str:
    """Playwright's defaults for --disable-features plus ours, as one flag."""
    # Playwright 1.5x's own list (coreBundle.js `disabledFeatures`), kept so merging loses nothing.
    playwright_defaults = [
        "AvoidUnnecessaryBeforeUnloadCheckSync",
        "DestroyProfileOnBrowserClose",
        "HttpsUpgrades",
        "HttpsFirstBalancedModeAutoEnable",
        "LensOverlay",
        "MediaRouter",
        "PaintHolding",
        "ThirdPartyStoragePartitioning",
        "AvoidCorsURLLoaderRestartOnRedirect",
        "OptimizationHints",
        "NetworkTimeServiceQuerying",
        "AimEnabled",
        "PreconnectToSearch",
    ]
    return "--disable-features=" + ",".join(dict.fromkeys(playwright_defaults + DISABLED_FEATURES))


async def launch(playwright: Any, headless: bool = True) -> Any:
    options = launch_options(headless)
    options["args"] = [*FLAGS, disable_features_flag()]
    return await playwright.chromium.launch(**options)
