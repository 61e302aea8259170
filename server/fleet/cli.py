"""``rentgate fleet revoke|broker-setup`` (docs/mosquitto.md, docs/fleet.md):
revoke a gateway from the command line (the same steps as the API, audited
as ``cli:fleet``), and write a fleet broker's complete Mosquitto
configuration."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rentgate.lang import tr
from server.cli_support import DATABASE_URL_HELP, CommandRefused

if TYPE_CHECKING:
    import sqlalchemy as sa

    from server.fleet.broker_setup import BrokerSetup
    from server.fleet.revoke import Revoked
    from server.settings import ServerSettings

ACTOR = "cli:fleet"
# How long the revocation waits for the server's broker login, to clear the
# gateway's retained messages.
LINK_WAIT_S = 5.0
# How long the broker has to answer the deletion of the gateway's login.
BROKER_TIMEOUT_S = 10.0


def register(subparsers: Any) -> None:
    fleet = subparsers.add_parser("fleet", help="the fleet of gateways: revoke one, set up the broker",
                                  description="The fleet of gateways (docs/fleet.md): revoke a gateway for good, "
                                              "write a fleet broker's Mosquitto configuration (docs/mosquitto.md).")
    sub = fleet.add_subparsers(dest="fleet_command", required=True, metavar="ACTION")

    revoke = sub.add_parser("revoke", help="revoke a gateway for good (asks for --yes)",
                            description="Revoke a gateway for good: it is cut off the broker at once, gets no "
                                        "allowlist or configuration any more, and its id is never used again. "
                                        "Without --yes: say what would happen and exit 2. Exit 1 when the "
                                        "database recorded it but the broker did not confirm (run it again).")
    revoke.add_argument("gateway", metavar="GW", help="the gateway's id")
    revoke.add_argument("--yes", action="store_true", help="really revoke it")
    revoke.add_argument("--database-url", help=DATABASE_URL_HELP)
    revoke.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    revoke.set_defaults(func=_revoke)

    setup = sub.add_parser("broker-setup", help="write a fleet broker's Mosquitto configuration into a folder",
                           description="Write into DIR a complete Mosquitto 2 configuration for the fleet: "
                                       "mosquitto.conf, the dynamic security store (an admin, the server's and "
                                       "a monitoring login), the broker's TLS certificate for HOST and the "
                                       "gateway CA. Prints the generated passwords once and the RENTGATE_* "
                                       "settings for the server. Never overwrites a file.")
    setup.add_argument("--dir", required=True, type=Path, metavar="DIR", help="the folder to write into")
    setup.add_argument("--host", required=True, action="append", metavar="HOST",
                       help="the name or address gateways reach the broker by (repeat for more; the first is "
                            "the one in RENTGATE_GATEWAY_MQTT_URL)")
    setup.add_argument("--port", type=int, default=8883, help="the gateways' TLS port")
    setup.add_argument("--server-port", type=int, default=1883, help="the server's port on 127.0.0.1")
    setup.add_argument("--ca-dir", type=Path, metavar="DIR",
                       help="use this existing gateway CA (ca.pem, ca.key) instead of making one in DIR/gateway-ca")
    setup.add_argument("--plugin", metavar="FILE", help="the dynamic security plugin (default: found on this machine)")
    setup.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    setup.set_defaults(func=_broker_setup)


def _fail(command: str, message: str, code: int = 2) -> int:
    print(f"rentgate fleet {command}: {message}", file=sys.stderr)
    return code


# --------------------------------------------------------------------------- revoke


def _gateway_row(engine: sa.Engine, gateway_id: str) -> dict[str, Any]:
    import sqlalchemy as sa

    from server.db.models import buildings, gateways

    g, b = gateways.c, buildings.c
    with engine.connect() as conn:
        row = conn.execute(sa.select(g.id, g.revoked_at, g.enrolled_at, g.last_seen, b.name)
                           .select_from(gateways.outerjoin(buildings, b.id == g.building_id))
                           .where(g.id == gateway_id)).first()
    if row is None:
        raise CommandRefused(tr(f"没有网关“{gateway_id}”：请核对名称", f"there is no gateway \"{gateway_id}\": "
                                                                        "check the name"))
    return dict(row._mapping)


def _revoke(args: argparse.Namespace) -> int:
    from rentgate import wire
    from server.cli_support import engine_at_head, settings_or_refuse

    gw = args.gateway
    if not wire.is_gateway_id(gw):
        return _fail("revoke", tr(f"“{gw}”不是网关编号", f"\"{gw}\" is not a gateway id"))
    try:
        settings = settings_or_refuse(args.database_url)
        engine = engine_at_head(args.database_url)
    except CommandRefused as exc:
        return _fail("revoke", str(exc))
    try:
        row = _gateway_row(engine, gw)
        if not args.yes:
            print(_plan(settings, row))
            return 2
        return _revoke_now(args, settings, engine, gw)
    except CommandRefused as exc:
        return _fail("revoke", str(exc))
    finally:
        engine.dispose()


def _plan(settings: ServerSettings, row: dict[str, Any]) -> str:
    building = row["name"] or tr("不在任何楼栋", "in no building")
    lines = [tr(f"将吊销网关 {row['id']}（{building}）：", f"this would revoke gateway {row['id']} ({building}):")]
    if row["revoked_at"] is not None:
        lines.append(tr(f"  它已在 {row['revoked_at']:%Y-%m-%d %H:%M} 被吊销；再运行一次只会重新删除代理上的登录",
                        f"  it was revoked at {row['revoked_at']:%Y-%m-%d %H:%M} already; running again only "
                        "deletes its broker login again"))
    if settings.broker_admin_url:
        lines.append(tr("  - 在 MQTT 代理上删除它的登录：它立即断开，之后也连不上",
                        "  - delete its login at the MQTT broker: it is cut off at once and cannot come back"))
    else:
        lines.append(tr("  - 没有设置 RENTGATE_BROKER_ADMIN_URL：代理上没有它自己的登录可删",
                        "  - RENTGATE_BROKER_ADMIN_URL is not set: it has no broker login of its own to delete"))
    lines += [tr("  - 不再向它发送门禁名单和配置，清除代理上保留的名单和配置",
                 "  - stop its allowlist and configuration, and clear the retained ones at the broker"),
              tr("  - 它的编号以后不会再用；此操作记入审计日志", "  - its id is never used again; the audit log records it"),
              tr("确认无误请加 --yes 再运行一次。", "Run again with --yes to do it.")]
    return "\n".join(lines)


def _revoke_now(args: argparse.Namespace, settings: ServerSettings, engine: sa.Engine, gw: str) -> int:
    from server.fleet.errors import BrokerError

    try:
        revoked = asyncio.run(_revoke_async(settings, engine, gw))
    except BrokerError as exc:
        return _fail("revoke", tr(f"网关 {gw} 已在数据库中吊销（不再有名单，事件被拒绝），但 MQTT 代理没有确认删除它的登录："
                                  f"{exc.reason}。请检查代理后再运行一次",
                                  f"gateway {gw} is revoked in the database (no allowlists, its events refused), "
                                  f"but the MQTT broker did not confirm deleting its login: {exc.reason}. Check the "
                                  "broker and run this again"), code=1)
    doc = {"gateway": gw, "revoked_at": revoked.revoked_at.isoformat(), "first": revoked.first,
           "broker_enforced": bool(settings.broker_admin_url)}
    if args.json:
        print(json.dumps(doc, ensure_ascii=False))
    elif revoked.first:
        print(tr(f"网关 {gw} 已吊销。", f"gateway {gw} is revoked."))
    else:
        print(tr(f"网关 {gw} 早在 {revoked.revoked_at:%Y-%m-%d %H:%M} 已吊销；已再次删除代理上的登录。",
                 f"gateway {gw} was revoked at {revoked.revoked_at:%Y-%m-%d %H:%M} already; its broker login "
                 "was deleted again."))
    return 0


async def _revoke_async(settings: ServerSettings, engine: sa.Engine, gw: str) -> Revoked:
    from rentgate.mqtt import LinkSettings, MqttLink
    from server.fleet.broker import DynsecProvisioner, NoBroker, Provisioner
    from server.fleet.revoke import revoke

    provisioner: Provisioner
    dynsec = (DynsecProvisioner(settings.broker_admin_url, timeout_s=BROKER_TIMEOUT_S)
              if settings.broker_admin_url else None)
    provisioner = dynsec if dynsec is not None else NoBroker()
    # The server's own login clears the retained messages (a running
    # server's sessions use mqtt_client_id and its suffixes, not this one).
    link = MqttLink(LinkSettings(url=settings.mqtt_url, client_id=settings.mqtt_client_id[:56] + "-revoke"))
    link_task = asyncio.create_task(link.run())
    if dynsec is not None:
        await dynsec.start(check_defaults=False)
    try:
        await asyncio.to_thread(link.wait_connected, LINK_WAIT_S)
        return await revoke(engine, provisioner, link, gw, actor_user_id=None, actor=ACTOR)
    finally:
        link_task.cancel()
        try:
            await link_task  # its stop() waits for the broker's PUBACKs
        except asyncio.CancelledError:
            pass
        if dynsec is not None:
            await dynsec.close()


# --------------------------------------------------------------------------- broker-setup


def _broker_setup(args: argparse.Namespace) -> int:
    from server.fleet.broker_setup import TargetsExist, write_broker_setup
    from server.fleet.errors import CaError

    for port in (args.port, args.server_port):
        if not 1 <= port <= 65535:
            return _fail("broker-setup", tr(f"端口 {port} 不存在（1 到 65535）", f"there is no port {port} (1 to 65535)"))
    try:
        done = write_broker_setup(args.dir, args.host, gateway_port=args.port, server_port=args.server_port,
                                  ca_dir=args.ca_dir, plugin=args.plugin)
    except TargetsExist as exc:
        names = "、".join(str(p) for p in exc.paths)
        return _fail("broker-setup", tr(f"不会覆盖已有的文件：{names}；请换一个空文件夹",
                                        f"will not overwrite what is there: {', '.join(map(str, exc.paths))}; "
                                        "use an empty folder"))
    except CaError as exc:
        return _fail("broker-setup", tr(f"网关 CA 不能用：{exc}", f"the gateway CA cannot be used: {exc}"))
    except OSError as exc:
        return _fail("broker-setup", tr(f"写不进 {args.dir}：{exc.strerror}", f"cannot write into {args.dir}: "
                                                                            f"{exc.strerror}"))
    if args.json:
        print(json.dumps({"dir": str(done.folder), "files": [str(p) for p in done.files],
                          "passwords": done.passwords, "settings": done.settings, "ca_dir": str(done.ca_dir),
                          "ca_created": done.ca_created}, ensure_ascii=False))
        return 0
    print(_setup_text(done))
    return 0


def _setup_text(done: BrokerSetup) -> str:
    folder = done.folder
    lines = [tr(f"已写入 {folder}：", f"written into {folder}:")]
    lines += [f"  {p}" for p in done.files]
    lines += ["", tr("密码只显示这一次，请妥善保存：", "passwords, shown this once; keep them safe:")]
    lines += [f"  {name}: {password}" for name, password in done.passwords.items()]
    lines += ["", tr("在服务器上设置：", "set on the server:")]
    lines += [f"  {name}={value}" for name, value in done.settings.items()]
    lines.append("")
    if done.ca_created:
        lines.append(tr(f"{done.ca_dir} 是网关 CA（含私钥）：把它放到服务器上（RENTGATE_GATEWAY_CA_DIR），"
                        "代理只需要 ca.pem。",
                        f"{done.ca_dir} is the gateway CA (with its private key): move it to the server "
                        "(RENTGATE_GATEWAY_CA_DIR); the broker needs only ca.pem."))
    lines.append(tr(f"然后：chown -R mosquitto: {folder}（不含 gateway-ca），mosquitto -c {folder}/mosquitto.conf，"
                    "再运行 rentgate server check-config。",
                    f"then: chown -R mosquitto: {folder} (not gateway-ca), mosquitto -c {folder}/mosquitto.conf, "
                    "and rentgate server check-config."))
    return "\n".join(lines)
