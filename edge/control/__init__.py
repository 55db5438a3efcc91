"""The control plane: regions, flavors, orders, billing, the ledger and its REST API.

It drives the edge only through the instance pool, and keeps its state behind the `Store`
interface (SQLite by default), so the streaming spine never depends on it.
"""

from cloudphone.edge.control.api import ControlPlane, setup_control
from cloudphone.edge.control.clock import Clock, ManualClock, SystemClock
from cloudphone.edge.control.config import ControlConfig, Flavor, Region

__all__ = [
    "Clock",
    "ControlConfig",
    "ControlPlane",
    "Flavor",
    "ManualClock",
    "Region",
    "SystemClock",
    "setup_control",
]
