"""`make run`'s demo tenant: an administrator and one user with two phones, printed at start.

Seeded once per database (a second start finds the users and only prints how to log in), so a
developer's demo data survives restarts like real data does.
"""

from __future__ import annotations

from cloudphone.edge.control.plane import ControlPlane

ADMIN = ("admin", "admin-demo-pass")
USER = ("demo", "demo-pass-1234")


async def seed_demo(plane: ControlPlane, base_url: str) -> list[str]:
    """Create the demo tenant if the store has no users yet; return the lines to print."""
    if not await plane.directory.users():
        org = await plane.directory.create_org({"name": "Demo Inc."})
        await plane.directory.create_user(
            {
                "login": ADMIN[0],
                "name": "Demo Admin",
                "mobile": "+10000000001",
                "org_id": org["id"],
                "role": "admin",
                "password": ADMIN[1],
            }
        )
        user = await plane.directory.create_user(
            {
                "login": USER[0],
                "name": "Demo User",
                "mobile": "+10000000002",
                "org_id": org["id"],
                "role": "user",
                "password": USER[1],
            }
        )
        await plane.recharge(10_000)
        flavor = plane.config.flavors[0].name
        region = plane.config.regions[0]
        zone = next((z for z in region.zones if plane.config.serves(z)), region.zones[0])
        order = plane.orders.parse_order(
            {
                "region": region.name,
                "zone": zone,
                "flavor": flavor,
                "name": "demo",
                "count": 2,
                "billing": {"mode": "on_demand"},
            }
        )
        placed = await plane.orders.place(plane.account_id, order)
        for phone in placed["phones"]:
            await plane.directory.assign(phone["id"], user["id"])
    return [
        "demo tenant (control plane):",
        f"  user:  {base_url}/h5/login.html  account {USER[0]!r}  password {USER[1]!r}",
        f"  admin: {base_url}/h5/login.html  account {ADMIN[0]!r}  password {ADMIN[1]!r}",
        "  verification codes are printed below as '[sms to ...]' lines",
    ]
