"""Renode's file fetcher: `@https://...` paths (a platform's SVD) are downloaded, through a cache.

Modelled on infra `src/Emulator/Main/Utilities/CachingFileFetcher.cs` and `Monitor.cs` (path tokens):
- the cache lives in Renode's user directory (`$XDG_CONFIG_HOME/renode`, else `~/.config/renode`);
  a URL found there is served without touching the network;
- `RENODE_CI_MODE=YES` (Emulator.InCIMode) bypasses the cache entirely: every use downloads again;
- a download is tried 5 times; each failure is logged, and the monitor writes
  `Failed to download <url>, see log for details.` as an error.

The stand-in's "internet" is the folder `root/internet/<host>/<path>` (files the real server has);
`STANDIN_OFFLINE=1` models an exporter without network access, like ours. The cache uses its own
file names beside Renode's (`standin_*`), so running the stand-in never touches a real Renode cache.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from urllib.parse import urlparse

ATTEMPTS = 5


class DownloadFailed(Exception):
    """The monitor's error line for a URL that could not be fetched."""


def user_directory():
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "renode")


def in_ci_mode():
    return os.environ.get("RENODE_CI_MODE") == "YES"


class FileFetcher:
    def __init__(self, root, log):
        self.internet = os.path.join(root, "internet")
        self.log = log  # log(level, text)

    def fetch(self, url):
        """A local file with the URL's content (decompressed for .gz), or DownloadFailed."""
        if not in_ci_mode():
            cached = self._from_cache(url)
            if cached is not None:
                return cached
        data = self._download(url)
        if not in_ci_mode():
            self._store(url, data)
        return self._temporary(url, data)

    def _download(self, url):
        parsed = urlparse(url)
        source = os.path.join(self.internet, parsed.netloc, parsed.path.lstrip("/"))
        for attempt in range(1, ATTEMPTS + 1):
            self.log("INFO", "Downloading %s." % url)
            if os.environ.get("STANDIN_OFFLINE") == "1":
                reason = "server name resolution error"
            elif not os.path.isfile(source):
                reason = "file was not found on a server"
            else:
                with open(source, "rb") as f:
                    data = f.read()
                self.log("INFO", "Download done.")
                return data
            self.log(
                "ERROR", "Failed to download from %s, reason: %s (attempt %d/%d)" % (url, reason, attempt, ATTEMPTS)
            )
        self.log("ERROR", "Download failed %d times, aborting." % ATTEMPTS)
        raise DownloadFailed("Failed to download %s, see log for details." % url)

    # -- the cache: an index of URL -> file, guarded like Renode's by one process at a time ------
    def _paths(self):
        folder = user_directory()
        return os.path.join(folder, "standin_binaries_index.json"), os.path.join(folder, "standin_cached_binaries")

    def _from_cache(self, url):
        index_path, folder = self._paths()
        try:
            with open(index_path) as f:
                name = json.load(f).get(url)
        except (OSError, ValueError):
            return None
        if name is None or not os.path.isfile(os.path.join(folder, name)):
            return None
        with open(os.path.join(folder, name), "rb") as f:
            return self._temporary(url, f.read())

    def _store(self, url, data):
        index_path, folder = self._paths()
        os.makedirs(folder, exist_ok=True)
        try:
            with open(index_path) as f:
                index = json.load(f)
        except (OSError, ValueError):
            index = {}
        name = index.get(url) or "bin%d" % len(index)
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
        index[url] = name
        tmp = index_path + ".%d" % os.getpid()
        with open(tmp, "w") as f:
            json.dump(index, f)
        os.replace(tmp, index_path)

    @staticmethod
    def _temporary(url, data):
        if url.endswith(".gz"):
            data = gzip.decompress(data)
        fd, path = tempfile.mkstemp(prefix="renode-fetched-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return path
