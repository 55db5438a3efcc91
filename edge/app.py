"""Composition root: builds the aiohttp application from an `EdgeConfig`.

It is the only place that knows every room: it registers guest kinds in the pool, creates the
configured phones, starts the edge node, and mounts signaling, the H5 pages and small JSON
endpoints. Everything is created on startup and released on cleanup, so tests can build and
tear down any number of edges in one process.
"""

from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from cloudphone.edge.audit import AuditLog
from cloudphone.edge.auth import AdminTokenAuthorizer, Authorizer, DevelopmentAuthorizer
from cloudphone.edge.config import ConfigError, EdgeConfig
from cloudphone.edge.ice import configure_host_addresses
from cloudphone.edge.loop_monitor import LoopLagMonitor
from cloudphone.edge.metrics import metrics_handler
from cloudphone.edge.node import EdgeNode
from cloudphone.edge.pipeline import EncoderSettings
from cloudphone.edge.policy import PolicyBook, PolicyError, policy_from
from cloudphone.edge.sharing.admin_api import TokenCheck, admin_routes, token_check
from cloudphone.edge.sharing.invites import InviteAuthorizer, InviteBook
from cloudphone.edge.signaling_server import SignalingServer
from cloudphone.vm.android import register as register_android
from cloudphone.vm.pool import GuestSpec, InstancePool
from cloudphone.vm.qemu import register as register_qemu
from cloudphone.vm.simulated import create_simulated_phone

if TYPE_CHECKING:
    from cloudphone.edge.control.plane import ControlPlane

log = logging.getLogger(__name__)

NODE = web.AppKey("node", EdgeNode)
POOL = web.AppKey("pool", InstancePool)
CONFIG = web.AppKey("config", EdgeConfig)
SIGNALING = web.AppKey("signaling", SignalingServer)
LOOP_LAG = web.AppKey("loop_lag", LoopLagMonitor)


def static_root() -> Path:
    return Path(str(importlib.resources.files("cloudphone.static"))) / "h5"


def register_guest_kinds(pool: InstancePool, config: EdgeConfig) -> None:
    """Every guest kind this edge can host."""
    pool.register_kind("simulated", create_simulated_phone)
    register_qemu(pool)
    register_android(pool)


def instance_specs(config: EdgeConfig) -> list[tuple[str, GuestSpec]]:
    """The phones to create at start: `instances` from the config file, else `phones` of
    the default kind named phone-1..N."""
    if config.instances:
        out = []
        for i, entry in enumerate(config.instances, 1):
            entry = dict(entry)
            guest_id = str(entry.pop("id", f"phone-{i}"))
            size = str(entry.pop("size", config.size))
            w, h = (int(v) for v in size.split("x"))
            kind = str(entry.pop("kind", config.guest))
            fps = int(entry.pop("fps", config.fps))
            options = {"stamp": config.stamp, **_kind_defaults(config, kind), **entry}
            out.append((guest_id, GuestSpec(kind, w, h, fps, options)))
        return out
    options = {"stamp": config.stamp, **_kind_defaults(config, config.guest)}
    spec = GuestSpec(config.guest, config.width, config.height, config.fps, options)
    return [(f"phone-{i}", spec) for i in range(1, config.phones + 1)]


def keep_sharing_in(app: web.Application, node: EdgeNode, plane: ControlPlane) -> None:
    """Keep the node's invites and audit log in the control plane's store (its policies are
    there once `setup_control` got the node's policy book). On cleanup, before the store
    closes, the sessions end and every audit entry recorded so far is written."""
    node.invites.store = plane.invite_store
    node.audit.sink = plane.audit_store

    async def flush(_: web.Application) -> None:
        await node.close_sessions("edge shutting down")
        await node.audit.flush()
        node.audit.sink = None  # later entries: ring and file only; the store is closing

    app.on_cleanup.insert(0, flush)  # before the control plane closes its store


def _kind_defaults(config: EdgeConfig, kind: str) -> dict[str, Any]:
    """Edge-wide options of one guest kind, which an `[[instances]]` entry may override."""
    if kind == "qemu" and config.qemu_binary:
        return {"binary": config.qemu_binary}
    return {}


def create_app(config: EdgeConfig, *, authorizer: Authorizer | None = None) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[CONFIG] = config
    pool = InstancePool()
    register_guest_kinds(pool, config)
    app[POOL] = pool
    try:
        policies = PolicyBook(policy_from(config.policy))
    except PolicyError as exc:
        raise ConfigError(f"policy: {exc}") from None
    invites = InviteBook()
    node = EdgeNode(
        pool,
        EncoderSettings(
            fps=config.fps,
            bitrate=config.bitrate,
            min_bitrate=config.min_bitrate,
            max_bitrate=config.max_bitrate,
            keyframe_interval_s=config.keyframe_interval,
        ),
        policies=policies,
        invites=invites,
        audit=AuditLog(config.audit_log or None),
    )
    app[NODE] = node
    if authorizer is None:
        if config.admin_token:
            fallback = DevelopmentAuthorizer() if config.dev_mode else None
            authorizer = AdminTokenAuthorizer(config.admin_token, fallback)
        else:
            authorizer = DevelopmentAuthorizer()
    ice = config.ice()
    signaling = SignalingServer(
        node,
        InviteAuthorizer(invites, authorizer, node.audit),
        ice.for_session,
        config.announced(),
        config.playout_delay(),
        config.ice_relay_only,
    )
    app[SIGNALING] = signaling
    loop_lag = LoopLagMonitor()
    app[LOOP_LAG] = loop_lag

    async def startup(app: web.Application) -> None:
        configure_host_addresses(config.host_addresses())
        loop_lag.start()
        await node.start()
        for guest_id, spec in instance_specs(config):
            await pool.create(guest_id, spec)

    async def shutdown(app: web.Application) -> None:
        await signaling.close_all()

    async def cleanup(app: web.Application) -> None:
        await node.close()
        await pool.close()
        await loop_lag.stop()

    app.on_startup.append(startup)
    app.on_shutdown.append(shutdown)
    app.on_cleanup.append(cleanup)

    root = static_root()

    async def index(request: web.Request) -> web.StreamResponse:
        first = next(iter(pool), None)
        if config.dev_mode and first is not None:
            raise web.HTTPFound(f"/phone/{first.guest_id}")
        return web.FileResponse(root / "index.html")

    async def player(request: web.Request) -> web.StreamResponse:
        if request.match_info["instance"] not in pool:
            raise web.HTTPNotFound(text="no such phone")
        return web.FileResponse(root / "player.html", headers={"Cache-Control": "no-store"})

    async def instances(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "instances": [
                    {
                        "id": g.guest_id,
                        "kind": g.kind,
                        "state": str(g.state),
                        "screen": g.screen.as_dict(),
                        "capabilities": g.capabilities.as_dict(),
                        "viewers": len(node.sessions_of(g.guest_id)),
                    }
                    for g in pool
                ]
            }
        )

    async def frame_log(request: web.Request) -> web.Response:
        """Render times of stamped frames (benchmarks on this machine only; needs --stamp)."""
        instance = request.match_info["instance"]
        if instance not in pool or not config.stamp:
            raise web.HTTPNotFound(text="no stamped phone of that name")
        frames = [dict(entry) for entry in getattr(pool.get(instance), "frame_log", ())]
        pipeline = node.pipelines.get(instance)
        if pipeline is not None:
            for entry in frames:
                entry.update(pipeline.trace.get(int(entry["frameId"]), {}))
        return web.json_response({"frames": frames})

    async def health(request: web.Request) -> web.Response:
        if request.query.get("reset") == "1":
            loop_lag.reset()
        return web.json_response(
            {
                "ok": True,
                "instances": len(pool),
                "sessions": len(node.sessions),
                "loopLag": loop_lag.summary(),
                "pipelines": {i: p.stats() for i, p in node.pipelines.items()},
            }
        )

    app.router.add_get("/", index)
    app.router.add_get("/ws", signaling.handle)
    app.router.add_get("/phone/{instance}", player)
    app.router.add_get("/edge/instances", instances)
    app.router.add_get("/edge/instances/{instance}/frame-log", frame_log)
    app.router.add_get("/healthz", health)
    app.router.add_get("/metrics", metrics_handler(node, loop_lag))
    app.router.add_static("/h5/", root, append_version=True)
    check: TokenCheck | None = None
    if config.control_db:
        from cloudphone.edge.control import setup_control
        from cloudphone.edge.control.config import load_control_config

        control = load_control_config(
            config.control_config or None,
            db_path=config.control_db,
            admin_token=config.admin_token or None,
        )
        plane = setup_control(
            app, pool, config=control, disconnect=node.disconnect_instance, policies=policies
        )
        # Its phones need its tokens; phones from this config keep the edge's own policy.
        # Invite links are checked first, whoever issued the phone.
        plane.authorizer.fallback = authorizer
        signaling.authorizer = InviteAuthorizer(invites, plane.authorizer, node.audit)
        keep_sharing_in(app, node, plane)
        check = token_check(config.admin_token, plane.auth.check)
        if config.demo:
            from cloudphone.edge.control.demo import seed_demo

            async def demo(app: web.Application) -> None:
                host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
                for line in await seed_demo(plane, f"http://{host}:{config.port}"):
                    print(line, flush=True)

            app.on_startup.append(demo)
    elif config.admin_token or not config.dev_mode:
        check = token_check(config.admin_token)
    else:
        log.warning("development mode: /edge/admin (policies, invites, audit) is open")
    app.router.add_routes(admin_routes(node, check))
    return app
