"""Packs the Kodi addons under clients/kodi into installable zips, and
optionally a Kodi addon repository (``repository.ipcbus`` plus
``addons.xml`` and its ``.md5``), laid out as Kodi expects.

    python3 clients/kodi/pack.py --out target/kodi
    python3 clients/kodi/pack.py --out target/dist/kodi \\
        --bin linux-x86_64=path/to/ipcbus --bin windows-x86_64=path/to/ipcbus.exe \\
        --repo target/dist/kodi-repo --repo-url https://example.org/kodi-repo/

``--bin PLATFORM=FILE`` puts FILE into service.ipcbus as
``bin/PLATFORM/ipcbus`` (``ipcbus.exe`` for Windows), with its exec bit set
in the zip (Kodi may still drop it; the service sets it again). The names
of the platforms are those of ``ipcbus_service.platforms``. Prints the path
of each zip it writes.
"""

import argparse
import hashlib
import os
import re
import sys
import time
import zipfile
from typing import Dict, List, Optional, Tuple
from xml.sax.saxutils import escape

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ID = "repository.ipcbus"
#: Read, write for all; executable files also run for all.
FILE_MODE = 0o100644
EXEC_MODE = 0o100755


def addon_version(addon_xml: str) -> str:
    match = re.search(r'<addon\b[^>]*\bversion="([^"]+)"', addon_xml)
    if match is None:
        raise SystemExit("no version in addon.xml:\n%s" % addon_xml)
    return match.group(1)


def write_entry(z: zipfile.ZipFile, arcname: str, data: bytes, mode: int = FILE_MODE,
                mtime: Optional[float] = None) -> None:
    """One file, with its mode and time (Python checks its bytecode cache
    by the source's time and size, so a time must never go backwards)."""
    stamp = time.localtime(mtime if mtime is not None else time.time())
    # A zip cannot hold a time before 1980.
    info = zipfile.ZipInfo(arcname, date_time=(max(stamp.tm_year, 1980),) + tuple(stamp[1:6]))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = mode << 16
    z.writestr(info, data)


def pack_addon(addon_id: str, out: str, extra: Dict[str, str]) -> Tuple[str, str]:
    """Zips clients/kodi/<addon_id> (following the link to the Python
    package) plus ``extra`` (name in the addon -> file, executable) into
    ``out/<id>-<version>.zip``. Returns (zip path, addon.xml text)."""
    src = os.path.join(HERE, addon_id)
    with open(os.path.join(src, "addon.xml"), encoding="utf-8") as f:
        addon_xml = f.read()
    dest = os.path.join(out, "%s-%s.zip" % (addon_id, addon_version(addon_xml)))
    files: List[Tuple[str, str]] = []
    for root, dirs, names in os.walk(src, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            if not name.endswith(".pyc"):
                path = os.path.join(root, name)
                files.append((os.path.join(addon_id, os.path.relpath(path, src)), path))
    with zipfile.ZipFile(dest, "w") as z:
        for arcname, path in files:
            with open(path, "rb") as f:
                write_entry(z, arcname, f.read(), mtime=os.stat(path).st_mtime)
        for name, path in sorted(extra.items()):
            with open(path, "rb") as f:
                write_entry(z, "%s/%s" % (addon_id, name), f.read(), EXEC_MODE, os.stat(path).st_mtime)
    return dest, addon_xml


def repository_addon(out: str, url: str, version: str) -> Tuple[str, str]:
    """The ``repository.ipcbus`` addon zip, pointing Kodi at ``url``."""
    url = url if url.endswith("/") else url + "/"
    addon_xml = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<addon id="{id}" name="ipcbus repository" version="{version}" provider-name="ipcbus">
  <extension point="xbmc.addon.repository" name="ipcbus repository">
    <dir>
      <info compressed="false">{url}addons.xml</info>
      <checksum>{url}addons.xml.md5</checksum>
      <datadir zip="true">{url}</datadir>
    </dir>
  </extension>
  <extension point="xbmc.addon.metadata">
    <summary lang="en_GB">Installs and updates ipcbus, the publish/subscribe bus for Kodi addons</summary>
    <description lang="en_GB">Adds the ipcbus addons: service.ipcbus (runs the bus with Kodi and publishes what is playing) and script.module.ipcbus (the client library for addons).</description>
    <platform>all</platform>
    <license>MIT OR Apache-2.0</license>
  </extension>
</addon>
""".format(id=REPO_ID, version=version, url=escape(url))
    dest = os.path.join(out, "%s-%s.zip" % (REPO_ID, version))
    with zipfile.ZipFile(dest, "w") as z:
        write_entry(z, "%s/addon.xml" % REPO_ID, addon_xml.encode("utf-8"))
    return dest, addon_xml


def write_repo(repo: str, zips: List[Tuple[str, str]]) -> None:
    """``repo/addons.xml`` (every addon.xml, in one <addons>), its ``.md5``,
    and each zip under ``repo/<id>/``, as a Kodi repository's datadir."""
    os.makedirs(repo, exist_ok=True)
    bodies = []
    for path, addon_xml in zips:
        body = re.sub(r"^<\?xml[^>]*\?>\s*", "", addon_xml.strip())
        bodies.append(body)
        addon_id = re.search(r'<addon\b[^>]*\bid="([^"]+)"', body).group(1)
        folder = os.path.join(repo, addon_id)
        os.makedirs(folder, exist_ok=True)
        with open(path, "rb") as src, open(os.path.join(folder, os.path.basename(path)), "wb") as dst:
            dst.write(src.read())
    text = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<addons>\n%s\n</addons>\n' % "\n".join(bodies)
    data = text.encode("utf-8")
    with open(os.path.join(repo, "addons.xml"), "wb") as f:
        f.write(data)
    with open(os.path.join(repo, "addons.xml.md5"), "w") as f:
        f.write(hashlib.md5(data).hexdigest())


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for the zips")
    parser.add_argument("--bin", action="append", default=[], metavar="PLATFORM=FILE",
                        help="a binary for service.ipcbus (repeatable)")
    parser.add_argument("--repo", help="also write a Kodi repository into this folder")
    parser.add_argument("--repo-url", default="https://example.invalid/ipcbus/kodi-repo/",
                        help="where the repository will be served from (ends in /)")
    args = parser.parse_args(argv)
    extra = {}
    for spec in args.bin:
        platform, sep, path = spec.partition("=")
        if not sep or not os.path.isfile(path):
            raise SystemExit("--bin %s: expected PLATFORM=FILE with an existing file" % spec)
        exe = "ipcbus.exe" if platform.startswith("windows") else "ipcbus"
        extra["bin/%s/%s" % (platform, exe)] = path
    os.makedirs(args.out, exist_ok=True)
    zips = []
    for addon_id in ("script.module.ipcbus", "service.ipcbus"):
        zips.append(pack_addon(addon_id, args.out, extra if addon_id == "service.ipcbus" else {}))
    if args.repo:
        zips.append(repository_addon(args.out, args.repo_url, addon_version(zips[-1][1])))
        write_repo(args.repo, zips)
    for path, _ in zips:
        print(path)


if __name__ == "__main__":
    main(sys.argv[1:])
