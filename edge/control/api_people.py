"""Admin REST for organisations, users and assignment (`/orgs`, `/users`, `/phones/{id}/assign`)."""

from __future__ import annotations

from aiohttp import web
from cloudphone.edge.control.errors import bad_request
from cloudphone.edge.control.httputil import PLANE_KEY, int_path, int_query, json_body
from cloudphone.edge.control.passwords import password_problem

routes = web.RouteTableDef()


@routes.get("/orgs")
async def get_orgs(request: web.Request) -> web.Response:
    return web.json_response({"orgs": await request.app[PLANE_KEY].directory.orgs()})


@routes.post("/orgs")
async def post_orgs(request: web.Request) -> web.Response:
    org = await request.app[PLANE_KEY].directory.create_org(await json_body(request))
    return web.json_response(org, status=201)


@routes.patch("/orgs/{id}")
async def patch_org(request: web.Request) -> web.Response:
    directory = request.app[PLANE_KEY].directory
    body = await json_body(request)
    return web.json_response(await directory.update_org(int_path(request), body))


@routes.delete("/orgs/{id}")
async def delete_org(request: web.Request) -> web.Response:
    await request.app[PLANE_KEY].directory.delete_org(int_path(request))
    return web.json_response({"deleted": True})


@routes.get("/users")
async def get_users(request: web.Request) -> web.Response:
    org_id = int_query(request, "org_id", None, 1, 2**62)
    return web.json_response({"users": await request.app[PLANE_KEY].directory.users(org_id)})


@routes.post("/users")
async def post_users(request: web.Request) -> web.Response:
    user = await request.app[PLANE_KEY].directory.create_user(await json_body(request))
    return web.json_response(user, status=201)


@routes.get("/users/{id}")
async def get_user(request: web.Request) -> web.Response:
    return web.json_response(await request.app[PLANE_KEY].directory.user(int_path(request)))


@routes.patch("/users/{id}")
async def patch_user(request: web.Request) -> web.Response:
    directory = request.app[PLANE_KEY].directory
    return web.json_response(
        await directory.update_user(int_path(request), await json_body(request))
    )


@routes.delete("/users/{id}")
async def delete_user(request: web.Request) -> web.Response:
    await request.app[PLANE_KEY].directory.delete_user(int_path(request))
    return web.json_response({"deleted": True})


@routes.post("/users/{id}/password")
async def post_user_password(request: web.Request) -> web.Response:
    """An administrator sets a new password; the user's sessions end."""
    plane = request.app[PLANE_KEY]
    user_id = int_path(request)
    body = await json_body(request)
    problem = password_problem(body.get("password"))
    if problem:
        raise bad_request("invalid_password", problem)
    await plane.directory.user(user_id)
    await plane.logins.set_password(user_id, str(body["password"]))
    return web.json_response({"changed": True})


@routes.delete("/users/{id}/devices")
async def delete_user_devices(request: web.Request) -> web.Response:
    """Forget every browser the user trusted: their next login asks for a code again."""
    plane = request.app[PLANE_KEY]
    user_id = int_path(request)
    await plane.directory.user(user_id)
    return web.json_response({"revoked": await plane.logins.revoke_devices(user_id)})


@routes.post("/phones/{id}/assign")
async def post_assign(request: web.Request) -> web.Response:
    body = await json_body(request)
    directory = request.app[PLANE_KEY].directory
    return web.json_response(await directory.assign(request.match_info["id"], body.get("user_id")))


@routes.delete("/phones/{id}/assign")
async def delete_assign(request: web.Request) -> web.Response:
    directory = request.app[PLANE_KEY].directory
    return web.json_response(await directory.unassign(request.match_info["id"]))
