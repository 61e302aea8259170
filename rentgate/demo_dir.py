"""The demo's data folder: made by the demo, marked as the demo's, and the only
kind of folder the demo ever empties.

``rentgate demo --data-dir DIR`` used to empty DIR whatever it was: pointed at
a home folder or ``.``, it deleted the user's files. Now the demo uses a folder
that does not exist yet (and makes it), an empty one, or one that holds the
mark an earlier demo left (a file named ``.rentgate-demo``). Anything else is
refused with a message that says what to do, and nothing is touched."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rentgate.lang import tr

MARK = ".rentgate-demo"
_MARK_TEXT = ("This folder was made by `rentgate demo` for its database, logs and door plates.\n"
              "The next `rentgate demo --data-dir` on it empties it first. Delete this file to keep the\n"
              "folder: the demo then refuses to use it.\n"
              "此文件夹由 rentgate demo 创建；再次运行演示会先清空它。删除本文件可防止演示清空此文件夹。\n")


class DataDirRefused(Exception):
    """The folder is not the demo's to empty."""


def is_demo_dir(path: Path) -> bool:
    """True if ``path`` is a real folder (not a link to one) that an earlier
    demo marked as its own."""
    return path.is_dir() and not path.is_symlink() and (path / MARK).is_file() and not (path / MARK).is_symlink()


def prepare(path: Path) -> None:
    """Make ``path`` an empty folder marked as the demo's, or raise
    :class:`DataDirRefused` having changed nothing."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise DataDirRefused(tr(
            f"{path} 不是文件夹（或是指向别处的链接），演示不会使用它。请用 --data-dir 指定一个新的文件夹。",
            f"{path} is not a folder (or is a link to one elsewhere); the demo will not use it. "
            "Name a new folder with --data-dir."))
    if path.is_dir():
        if is_demo_dir(path):
            _empty(path)
        elif any(path.iterdir()):
            old = _looks_like_an_old_demo(path)
            raise DataDirRefused(tr(
                f"{path} 已存在，里面有文件，而且不是演示创建的文件夹。演示只会清空它自己创建的文件夹，"
                "不会删除您的文件。请用 --data-dir 指定一个新的或空的文件夹，例如 --data-dir var/demo2。"
                + ("（它看起来是旧版演示留下的：确认里面没有您要的文件后，可以自己删除它再运行。）" if old else ""),
                f"{path} exists, holds files and was not made by the demo. The demo only ever empties a folder it "
                "made itself and will not delete your files. Name a new or empty folder with --data-dir, "
                "for example --data-dir var/demo2."
                + (" (It looks like an older demo's folder: once you are sure nothing in it is yours, delete it "
                   "yourself and run again.)" if old else "")))
    else:
        path.mkdir(parents=True)
    (path / MARK).write_text(_MARK_TEXT, encoding="utf-8")


def _looks_like_an_old_demo(path: Path) -> bool:
    """What a demo before the mark left behind: only a hint in the message;
    the folder is refused all the same."""
    return (path / "rentgate.db").is_file() and (path / "logs").is_dir()


def _empty(path: Path) -> None:
    """Everything in a marked folder goes (the mark last, so that a failure
    halfway leaves a folder the next run may still empty). Links are removed,
    never followed."""
    for entry in sorted(path.iterdir(), key=lambda p: p.name == MARK):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            os.unlink(entry)
