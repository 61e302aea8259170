"""``rentgate plates render|revoke|list`` and ``rentgate keys plates``.

Exit codes: 0 done; 2 bad arguments, an unknown building/area/unit, a size
that cannot make a usable plate, no font or no key, a base URL phones
cannot reach (the message says which and what to do); 1 anything else (the
database refused, a file could not be written). What a person reads is in
the command's language (rentgate/lang.py: Chinese unless --lang en);
progress goes to stderr; ``--json`` prints one JSON object as the last line
of stdout, with the same keys in either language."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlalchemy as sa

    from server.plates.layout import PlateData, PlateSpec
    from server.settings import ServerSettings

from rentgate.lang import count, tr
from server.cli_support import DATABASE_URL_HELP
from server.cli_support import action as _action

FORMATS = ("pdf", "png", "svg")
PUBLIC_URL_ENV = "RENTGATE_PUBLIC_URL"
PDF_NAME = "plates.pdf"


class _Usage(Exception):
    """A problem the user can fix by changing the command (exit 2)."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("plates", help="door plates: render printable plates, revoke, list")
    sub = parser.add_subparsers(dest="plates_command", required=True, metavar="ACTION")

    render = _action(sub, "render", _render, "print plates: A4 PDF sheets, or a PNG/SVG per plate")
    which = render.add_mutually_exclusive_group(required=True)
    which.add_argument("--building", action="extend", nargs="+", metavar="CODE",
                       help="the units of these buildings (--building B1 B2, or repeated)")
    which.add_argument("--street", metavar="CODE", help="every unit of a street (街道) area")
    which.add_argument("--grid", metavar="CODE", help="every unit of a grid (网格) area")
    which.add_argument("--unit", action="extend", nargs="+", type=int, metavar="ID",
                       help="these units (--unit 17 18, or repeated)")
    render.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="folder to write into (created if need be)")
    render.add_argument("--format", default="pdf", help="pdf, png, svg or a list: pdf,png (default pdf)")
    render.add_argument("--size", default="150x90", help="plate WIDTHxHEIGHT in mm (default 150x90)")
    render.add_argument("--qr-mm", type=float, default=40.0, help="side of the code in mm, without its quiet zone "
                        "(default 40)")
    render.add_argument("--dpi", type=int, default=300, help="resolution of the PNGs (default 300)")
    render.add_argument("--base-url", metavar="URL",
                        help="the server's address as tenants' phones reach it, https://... ; codes hold "
                        "<URL>/p/<token> (default RENTGATE_PUBLIC_URL). A loopback or private address is refused "
                        "without --allow-private-url")
    render.add_argument("--allow-private-url", action="store_true",
                        help="print anyway when the base URL is a loopback or private address (a demo, a closed "
                        "network): phones outside that network cannot open these plates")
    render.add_argument("--reissue", action="store_true",
                        help="withdraw the units' current plates and issue new ones (lost or stolen plates)")
    render.add_argument("--font", metavar="PATH",
                        help="a CJK TrueType/OpenType font (default RENTGATE_PLATE_FONT, else the system's Simplified "
                        "Chinese font, else the one shipped with rentgate)")

    revoke = _action(sub, "revoke", _revoke, "withdraw a plate: every printed copy stops working")
    target = revoke.add_mutually_exclusive_group(required=True)
    target.add_argument("--unit", type=int, metavar="ID", help="the unit's current plate")
    target.add_argument("--plate", type=int, metavar="ID", help="this plate")
    revoke.add_argument("--reason", default="revoked", help="why, kept with the plate: at most 32 characters, "
                        "e.g. stolen, damaged")

    listing = _action(sub, "list", _list, "a unit's plates, current and withdrawn")
    listing.add_argument("--unit", required=True, type=int, metavar="ID", help="the unit's id")


def register_keys(keys_sub: Any) -> None:
    """``rentgate keys plates``, next to ``rentgate keys pii``."""
    keys = keys_sub.add_parser("plates", help="the plate-signing keyring: --rotate, --retire KID, --list")
    keys.add_argument("--file", help="keyring file (default RENTGATE_PLATE_KEY_FILE, or the one kept next to a "
                      "SQLite database)")
    keys.add_argument("--database-url", help=DATABASE_URL_HELP)
    keys.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    what = keys.add_mutually_exclusive_group(required=True)
    what.add_argument("--rotate", action="store_true", help="add a new key; new plates are signed with it, old ones "
                      "keep working")
    what.add_argument("--retire", metavar="KID", help="remove a key: plates signed with it stop working")
    what.add_argument("--list", action="store_true", help="the key ids (never the keys), newest last")
    keys.set_defaults(func=_keys)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"[:64]
    except (KeyError, OSError):
        return "cli"


def _guarded(name: str, body: Callable[[], int]) -> int:
    """Run a command, turning the errors a user can act on into exit 2 and
    the rest into exit 1, each with one line on stderr."""
    from sqlalchemy.exc import IntegrityError, SQLAlchemyError

    from server.cli_support import CommandRefused
    from server.errors import ServerError

    try:
        return body()
    except (_Usage, ServerError, CommandRefused) as exc:
        _say(f"rentgate {name}: {exc}")
        return 2
    except IntegrityError as exc:
        _say(f"rentgate {name}: " + tr(f"数据库拒绝了这次修改，没有任何改动（是否有另一个命令在处理同一批门牌？稍后再试）：{exc.orig}",
                                      f"the database refused the change (another command working on the same "
                                      f"plates? try again); nothing was changed: {exc.orig}"))
        return 1
    except SQLAlchemyError as exc:
        _say(f"rentgate {name}: " + tr(f"数据库出错，没有任何改动：{exc}", f"database error, nothing was changed: {exc}"))
        return 1
    except OSError as exc:
        _say(f"rentgate {name}: " + tr(f"{exc}（请检查路径、权限和磁盘空间）",
                                      f"{exc} (check the path, its permissions and the free disk space)"))
        return 1


def _settings(args: argparse.Namespace) -> ServerSettings:
    from server.settings import load_settings

    return load_settings(database_url=args.database_url)


def _ready(args: argparse.Namespace, settings: ServerSettings) -> None:
    """CommandRefused unless the database is at the current schema: the check
    the other database commands make, which creates nothing (no database
    file, no folder) and names the command that prepares the database."""
    from server.cli_support import check_database

    check_database(settings.database_url, args.database_url)


def _engine(args: argparse.Namespace, settings: ServerSettings) -> sa.Engine:
    """An engine on a database that is ready (_ready)."""
    from server.db.engine import create_engine

    _ready(args, settings)
    return create_engine(settings.database_url)


def _formats(text: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(f.strip().lower() for f in text.split(",") if f.strip()))
    if not chosen or any(f not in FORMATS for f in chosen):
        raise _Usage(tr(f"--format {text}：请从 {', '.join(FORMATS)} 中选择（用逗号分隔）",
                        f"--format {text!r}: choose from {', '.join(FORMATS)} (comma-separated)"))
    return chosen


def _base_url(args: argparse.Namespace, settings: ServerSettings) -> str:
    """The base URL the codes will hold: refused (exit 2) when phones on the
    internet cannot reach it, unless --allow-private-url; then, and for
    plain http or an IP address, a warning on stderr."""
    from server.plates.public_url import PROBLEMS, REASONS, BadPublicUrl, check_public_url

    given = args.base_url or os.environ.get(PUBLIC_URL_ENV) or None
    # Neither given: the settings' default, the server's own loopback address.
    raw = given or settings.public_url
    todo = tr(f"请用 --base-url https://… 指定住户手机能访问的服务器地址（或设置 {PUBLIC_URL_ENV}）",
              f"pass --base-url https://… with the server's address as tenants' phones reach it (or set "
              f"{PUBLIC_URL_ENV})")
    try:
        checked = check_public_url(raw)
    except BadPublicUrl as exc:
        zh, en = PROBLEMS[exc.problem]
        raise _Usage(tr(f"门牌地址 {exc.url} {zh}：{todo}", f"base URL {exc.url!r} {en}: {todo}")) from None
    if checked.not_public is not None:
        zh, en = REASONS[checked.not_public]
        if not args.allow_private_url:
            unset = tr(f"没有指定 --base-url，也没有设置 {PUBLIC_URL_ENV}，", f"no --base-url and no {PUBLIC_URL_ENV}: ") \
                if given is None else ""
            raise _Usage(tr(f"{unset}门牌二维码将指向 {checked.url}/p/…，这是{zh}，住户的手机打不开。{todo}；"
                            "如果门牌确实只在这个内部网络使用（演示、封闭园区），加 --allow-private-url",
                            f"{unset}the plates' codes would point at {checked.url}/p/…, {en}, so tenants' phones "
                            f"cannot open them. {todo[0].upper()}{todo[1:]}; if the plates are only for that network "
                            "(a demo, a closed campus), add --allow-private-url"))
        _say(tr(f"警告：门牌指向 {checked.url}（{zh}），这个网络以外的手机打不开这些门牌",
                f"warning: the plates point at {checked.url} ({en}): phones outside that network cannot open them"))
    elif checked.insecure:
        _say(tr(f"警告：门牌指向 {checked.url}，是未加密的 http：手机能打开，但内容可被篡改或窃听；门牌要挂好几年，"
                "建议用 https://，以后改用 https 时保留从 http 的跳转",
                f"warning: the plates point at {checked.url}, plain unencrypted http: phones open it, but it can be "
                "read or altered on the way; plates hang for years, so prefer https://, and when the server moves "
                "to https keep a redirect from http"))
    if checked.ip_literal and checked.not_public is None:
        _say(tr(f"注意：门牌指向 IP 地址 {checked.host}；服务器换了地址，这些门牌就全部失效，建议用域名",
                f"note: the plates point at the IP address {checked.host}; if the server's address changes, every "
                "plate stops working: prefer a domain name"))
    return checked.url


def _selection(args: argparse.Namespace) -> Any:
    from server.plates.collect import Selection

    return Selection(buildings=tuple(args.building or ()), street=args.street, grid=args.grid,
                     units=tuple(args.unit or ()))


def _spec(args: argparse.Namespace) -> PlateSpec:
    from server.plates.layout import PlateSpec, parse_size

    width, height = parse_size(args.size)
    return PlateSpec(width_mm=width, height_mm=height, qr_mm=args.qr_mm)


def _check_size(spec: PlateSpec, formats: Sequence[str], base_url: str, key_id_len: int) -> None:
    """Refuse a size before any plate is issued: the code's module count
    follows from the URL's length, which is the same for every token of a
    key id of this length."""
    from server.plates.layout import plate_frame, sheet_for
    from server.plates.render_qr import modules_for
    from server.plates.service import plate_url

    plate_frame(spec, modules_for(plate_url(base_url, "k" * key_id_len + "." + "A" * 39)))
    if "pdf" in formats:
        sheet_for(spec)


def _render(args: argparse.Namespace) -> int:
    return _guarded("plates render", lambda: _do_render(args))


def _do_render(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from server.db.engine import create_engine
    from server.plates import collect
    from server.plates.fonts import find_font
    from server.plates.keys import load_keyring
    from server.plates.render import check_glyphs
    from server.rules import load_rules
    from server.web.transactions import write_transaction

    started = time.perf_counter()
    formats = _formats(args.format)
    if not 72 <= args.dpi <= 1200:
        raise _Usage(tr(f"--dpi {args.dpi}：请用 72 到 1200", f"--dpi {args.dpi}: use 72 to 1200"))
    spec = _spec(args)
    settings = _settings(args)
    base_url = _base_url(args, settings)
    # Before the keyring: next to a SQLite database it is generated on first
    # use, and a refused command must leave nothing behind.
    _ready(args, settings)
    rules = load_rules(settings.rules_file)
    font = find_font(args.font)
    keyring = load_keyring(settings.plate_key_file, settings.database_url)
    _check_size(spec, formats, base_url, max(len(k) for k in keyring.keys))
    selection = _selection(args)
    engine = create_engine(settings.database_url)
    try:
        with write_transaction(engine) as conn:
            rows = collect.select_units(conn, selection)
            _say(tr(f"{selection.describe()}：{count(len(rows), '个单元', 'unit')}",
                    f"{count(len(rows), '个单元', 'unit')} in {selection.describe()}"))
            # Before any plate is issued: a character the font lacks
            # stops the whole run with nothing written.
            check_glyphs([_text_only(r) for r in rows], font)
            before = collect.active_plate_count(conn, [r.unit_id for r in rows])
            plates = collect.issue_plates(conn, datetime.now(UTC), keyring, rows, public_url=base_url,
                                          valid_days=rules.plate_valid_days, actor=_actor(), reissue=args.reissue)
            issued = len(rows) if args.reissue else len(rows) - before
    finally:
        engine.dispose()
    _say(tr(f"新发 {count(issued, '块门牌', 'plate')}，重印 {count(len(plates) - issued, '块', 'plate')}（二维码不变）",
            f"{count(issued, '块门牌', 'plate')} issued, {len(plates) - issued:,} reprinted with their current code"))
    rendering = time.perf_counter()
    files, pages = _write(args.out, formats, plates, spec, args.dpi, font)
    finished = time.perf_counter()
    doc = {"files": [str(f) for f in files], "plates": len(plates), "issued": issued, "pages": pages,
           "formats": list(formats), "seconds": round(finished - started, 3),
           "plates_per_s": round(len(plates) / max(finished - rendering, 1e-9), 1)}
    if args.json:
        print(json.dumps(doc, ensure_ascii=False))
    else:
        sheets = tr(f"：{PDF_NAME} 共 {count(pages, '页 A4', 'A4 page')}",
                    f": {count(pages, '页 A4', 'A4 page')} in {PDF_NAME}") if pages else ""
        print(tr(f"{count(len(plates), '块门牌', 'plate')}（新发 {issued:,} 块）已写入 {args.out}{sheets}",
                 f"{count(len(plates), '块门牌', 'plate')} ({issued:,} new) written to {args.out}{sheets}"))
    return 0


def _text_only(row: Any) -> PlateData:
    from server.plates.layout import PlateData

    return PlateData(unit_id=row.unit_id, address=row.address, unit_label=row.number, grade=row.grade, url="")


def _write(out: Path, formats: Sequence[str], plates: Sequence[PlateData], spec: PlateSpec, dpi: int,
           font: Any) -> tuple[list[Path], int]:
    from server.plates.render import render_pdf, render_png, render_svg

    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    pages = 0
    if "pdf" in formats:
        _say(tr(f"正在生成 {count(len(plates), '块门牌', 'plate')}：{out / PDF_NAME}",
                f"rendering {count(len(plates), '块门牌', 'plate')} to {out / PDF_NAME}"))
        target = out / PDF_NAME
        partial = target.with_name(target.name + ".part")
        shown = [0]

        def progress(done: int, total: int) -> None:
            # About every tenth of the run, and at the end.
            if done == total or done - shown[0] >= total / 10:
                shown[0] = done
                _say(tr(f"  {done}/{total} 块", f"  {done}/{total} plates"))

        with partial.open("wb") as stream:
            pages = render_pdf(plates, spec, stream, font, progress=progress if len(plates) >= 100 else None)
        partial.replace(target)
        files.append(target)
    for fmt in formats:
        if fmt == "pdf":
            continue
        _say(tr(f"正在生成 {count(len(plates), '个', fmt.upper() + ' file')} {fmt.upper()} 文件",
                f"rendering {count(len(plates), '个', fmt.upper() + ' file')}"))
        for done, plate in enumerate(plates, start=1):
            path = out / f"unit-{plate.unit_id}.{fmt}"
            if fmt == "png":
                path.write_bytes(render_png(plate, spec, dpi, font))
            else:
                path.write_text(render_svg(plate, spec, font), encoding="utf-8")
            files.append(path)
            if done % 500 == 0:
                _say(f"  {done}/{len(plates)}")
    return files, pages


def _revoke(args: argparse.Namespace) -> int:
    return _guarded("plates revoke", lambda: _do_revoke(args))


def _do_revoke(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    import sqlalchemy as sa

    from server.db.models import plates
    from server.plates import service
    from server.web.transactions import write_transaction

    reason = args.reason.strip()
    if not reason or len(reason) > 32:
        raise _Usage(tr("--reason：请写 1 到 32 个字符的原因，如 stolen、damaged",
                        "--reason: 1 to 32 characters, e.g. stolen, damaged"))
    engine = _engine(args, _settings(args))
    try:
        with write_transaction(engine) as conn:
            now = datetime.now(UTC)
            if args.plate is not None:
                row = conn.execute(sa.select(plates.c.unit_id, plates.c.revoked_at)
                                   .where(plates.c.id == args.plate)).first()
                if row is None:
                    raise _Usage(tr(f"没有编号为 {args.plate} 的门牌：`rentgate plates list --unit ID` 列出单元的门牌",
                                    f"no plate {args.plate}: `rentgate plates list --unit ID` shows a unit's plates"))
                if row.revoked_at is not None:
                    raise _Usage(tr(f"门牌 {args.plate} 已于 {row.revoked_at:%Y-%m-%d} 撤销，无需再撤销",
                                    f"plate {args.plate} was already withdrawn on {row.revoked_at:%Y-%m-%d}"))
                service.revoke(conn, now, args.plate, actor=_actor(), reason=reason)
                revoked, unit_id = [args.plate], int(row.unit_id)
            else:
                revoked = service.revoke_units(conn, now, [args.unit], actor=_actor(), reason=reason)
                if not revoked:
                    raise _Usage(tr(f"单元 {args.unit} 没有在用的门牌，无需撤销",
                                    f"unit {args.unit} has no plate in use: nothing to withdraw"))
                unit_id = args.unit
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps({"revoked": revoked, "unit_id": unit_id, "reason": reason}))
    else:
        ids = ", ".join(str(p) for p in revoked)
        print(tr(f"单元 {unit_id} 的门牌 {ids} 已撤销；用 `rentgate plates render --unit {unit_id}` 打印新门牌",
                 f"plate {ids} of unit {unit_id} withdrawn; print a new one with "
                 f"`rentgate plates render --unit {unit_id}`"))
    return 0


def _list(args: argparse.Namespace) -> int:
    return _guarded("plates list", lambda: _do_list(args))


def _do_list(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    import sqlalchemy as sa

    from server.db.models import plates, units

    engine = _engine(args, _settings(args))
    try:
        with engine.connect() as conn:
            if conn.execute(sa.select(units.c.id).where(units.c.id == args.unit)).first() is None:
                raise _Usage(tr(f"没有编号为 {args.unit} 的单元", f"no unit {args.unit}"))
            rows = conn.execute(sa.select(plates).where(plates.c.unit_id == args.unit)
                                .order_by(plates.c.id)).mappings().all()
    finally:
        engine.dispose()
    now = datetime.now(UTC)
    listed = []
    for r in rows:
        if r["revoked_at"] is not None:
            state = "revoked"
        elif r["expires_at"] is not None and r["expires_at"].date() < now.date():
            state = "expired"
        else:
            state = "active"
        listed.append({"plate_id": r["id"], "state": state, "key_id": r["key_id"],
                       "issued_at": r["issued_at"].isoformat(),
                       "expires_at": r["expires_at"].isoformat() if r["expires_at"] else None,
                       "revoked_at": r["revoked_at"].isoformat() if r["revoked_at"] else None,
                       "revoked_reason": r["revoked_reason"], "revoked_by": r["revoked_by"]})
    if args.json:
        print(json.dumps({"unit_id": args.unit, "plates": listed}, ensure_ascii=False))
    elif not listed:
        print(tr(f"单元 {args.unit} 还没有门牌：`rentgate plates render --unit {args.unit}` 打印一块",
                 f"unit {args.unit} has no plates yet: `rentgate plates render --unit {args.unit}` prints one"))
    else:
        for p in listed:
            state = tr(*_STATES[p["state"]])
            extra = f" ({p['revoked_reason']}, {p['revoked_at'][:10]})" if p["state"] == "revoked" else ""
            until = tr(f"，有效期至 {p['expires_at'][:10]}", f", valid until {p['expires_at'][:10]}") \
                if p["expires_at"] else ""
            print(tr(f"门牌 {p['plate_id']}：{state}{extra}，密钥 {p['key_id']}，{p['issued_at'][:10]} 发放{until}",
                     f"plate {p['plate_id']}: {state}{extra}, key {p['key_id']}, issued {p['issued_at'][:10]}{until}"))
    return 0


# A plate's state for people; --json keeps the English word.
_STATES = {"active": ("在用", "active"), "revoked": ("已撤销", "revoked"), "expired": ("已过期", "expired")}


def _keys(args: argparse.Namespace) -> int:
    return _guarded("keys plates", lambda: _do_keys(args))


def _do_keys(args: argparse.Namespace) -> int:
    from server.plates import keys

    if args.file:
        path = Path(args.file)
    else:
        settings = _settings(args)
        path = Path(settings.plate_key_file) if settings.plate_key_file else \
            keys.default_keyring_path(settings.database_url)
    if args.rotate:
        path.parent.mkdir(parents=True, exist_ok=True)
        kid = keys.rotate(path)
        _say(tr(f"已在 {path} 添加密钥 {kid}：新门牌用它签名；请备份这个文件",
                f"added key {kid} to {path}: new plates are signed with it; back the file up"))
    elif args.retire:
        keys.retire(path, args.retire)
        _say(tr(f"已停用密钥 {args.retire}：用它签名的门牌扫不开了，请重印（`rentgate plates render` 会为它们发新门牌）",
                f"retired key {args.retire}: plates signed with it no longer scan; reprint them "
                "(`rentgate plates render` issues new plates for them)"))
    elif not path.exists():
        raise _Usage(tr(f"{path}：还没有门牌密钥文件（`rentgate keys plates --rotate` 生成一个）",
                        f"{path}: no plate keyring yet (`rentgate keys plates --rotate` makes one)"))
    keyring = keys.read_keyring(path)
    ids = list(keyring.keys)
    if args.json:
        print(json.dumps({"file": str(path), "key_ids": ids, "current": keyring.current_id}))
    elif args.list:
        for kid in ids:
            print(kid + (tr("  （签发新门牌）", "  (signs new plates)") if kid == keyring.current_id else ""))
    return 0
