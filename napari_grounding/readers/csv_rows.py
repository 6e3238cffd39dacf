"""Rows of a CSV by ID, read directly from disk however large the file.

Small files are parsed whole. Large ones (CheXmask's run to gigabytes) are scanned once into
an index (ID -> byte offset and length of its row, sorted for binary search, memory-mapped) kept
next to the CSV or in the user cache and rebuilt when the CSV changes (size, time or sampled
content). A lookup then reads one row, and checks that the row read carries the ID asked for:
when it does not (the file was rewritten behind the index), the index is rebuilt once, and a
file that cannot be indexed (a stray quote) is searched by a streamed scan instead. Gzipped
CSVs work too: ``indexed_gzip`` seeks in them and its seek points are saved.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from platformdirs import user_cache_path

from ..model import GroundingError
from ..store import content_id

if TYPE_CHECKING:  # pandas is imported where used: start-up stays fast
    import pandas as pd

INDEX_THRESHOLD_BYTES = 32 * 2**20
_BLOCK = 8 * 2**20
_INDEX_VERSION = 2
# what reading a damaged or truncated CSV (plain or gzipped) raises (pandas' ParserError is a
# ValueError)
_READ_ERRORS = (OSError, EOFError, zlib.error, gzip.BadGzipFile, UnicodeDecodeError, ValueError)


@dataclass
class ReadStats:
    """What lookups cost: bytes read from the CSV and rows parsed."""

    bytes_read: int = 0
    rows_parsed: int = 0


def _open_binary(path: Path, index_file: Path | None = None):
    if path.name.endswith(".gz"):
        import indexed_gzip

        if index_file is not None and index_file.is_file():
            return indexed_gzip.IndexedGzipFile(str(path), index_file=str(index_file))
        return indexed_gzip.IndexedGzipFile(str(path))
    return open(path, "rb")


def _index_locations(path: Path, index_dir: Path | None) -> list[tuple[Path, str]]:
    """Where the index may live, preferred first: the folder asked for, else beside the CSV,
    else the user cache (named by the CSV's full path)."""
    if index_dir is not None:
        return [(index_dir, path.name)]
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
    return [(path.parent, path.name),
            (user_cache_path("napari-grounding") / "csv-index", f"{digest}-{path.name}")]


class CsvRows:
    """ID -> row (a dict of column -> text) for one CSV; ``id_columns`` are tried in order."""

    def __init__(self, path: str | os.PathLike, id_columns: tuple[str, ...],
                 index_dir: Path | None = None, threshold: int = INDEX_THRESHOLD_BYTES):
        self.path = Path(path)
        if not self.path.is_file():
            raise GroundingError(f"{self.path}: file not found")
        self.stats = ReadStats()
        self.header, self._header_bytes = self._read_header()
        found = [c for c in id_columns if c in self.header]
        if not found:
            raise GroundingError(f"{self.path}: no ID column (looked for {', '.join(id_columns)}; "
                                 f"columns are {', '.join(self.header)})")
        self.id_column = found[0]
        self.indexed = self.path.stat().st_size >= threshold
        self.note = ""  # how lookups work when the index could not be used, for the user
        self._index_dir = index_dir
        self._scan_ids: list[str] | None = None
        self._table: pd.DataFrame | None = None
        self._index: np.ndarray | None = None
        self._ordered: np.ndarray | None = None
        self._prefetched: dict[str, tuple[int, dict[str, str]]] = {}
        self._gz_index: Path | None = None
        if self.indexed:
            self._load_index(rebuild=False)

    def _load_index(self, rebuild: bool) -> None:
        self._ordered = None
        try:
            self._index, self._gz_index = self._load_or_build_index(self._index_dir, rebuild)
        except _Unindexable as err:
            self._index, self._gz_index = None, None
            self.note = f"{self.path}: rows found by scanning, not by index ({err})"

    def _read_header(self) -> tuple[list[str], int]:
        try:
            with _open_binary(self.path) as f:
                line = f.readline()
        except (OSError, EOFError, gzip.BadGzipFile) as err:
            raise GroundingError(f"{self.path}: cannot read ({err})") from None
        try:
            header = next(csv.reader([line.decode("utf-8-sig")]))
        except (UnicodeDecodeError, StopIteration):
            raise GroundingError(f"{self.path}: not a CSV file with a header row") from None
        return [h.strip() for h in header], len(line)

    # -- small files ------------------------------------------------------------------------
    def _frame(self) -> pd.DataFrame:
        import pandas as pd

        if self._table is None:
            try:
                table = pd.read_csv(self.path, dtype=str, keep_default_na=False)
            except _READ_ERRORS as err:
                raise GroundingError(f"{self.path}: cannot parse CSV ({err})") from None
            table.columns = [c.strip() for c in table.columns]
            table["__row__"] = np.arange(1, len(table) + 1)
            self.stats.rows_parsed += len(table)
            self._table = table.drop_duplicates(self.id_column).set_index(self.id_column,
                                                                          drop=False)
        return self._table

    # -- the index --------------------------------------------------------------------------
    def _signature(self) -> dict:
        stat = self.path.stat()
        return {"version": _INDEX_VERSION, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "content": content_id(self.path), "id_column": self.id_column}

    def _load_or_build_index(self, index_dir: Path | None,
                             rebuild: bool) -> tuple[np.ndarray, Path | None]:
        for folder, stem in _index_locations(self.path, index_dir):
            try:
                return self._load_or_build_at(folder, stem, rebuild)
            except OSError:  # read-only (EROFS, EACCES), full disk: try the next place
                continue
        # nowhere to keep it: an index for this session only
        self.note = f"{self.path}: its row index could not be saved (rebuilt each session)"
        return self._build_index(None), None

    def _load_or_build_at(self, folder: Path, stem: str,
                          rebuild: bool) -> tuple[np.ndarray, Path | None]:
        rows_file, meta_file = folder / f"{stem}.rows.npy", folder / f"{stem}.rows.json"
        gz = folder / f"{stem}.gzidx" if self.path.name.endswith(".gz") else None
        signature = self._signature()
        try:
            saved = json.loads(meta_file.read_text())
            if not rebuild and saved.get("unindexable") and saved["signature"] == signature:
                raise _Unindexable(saved["unindexable"])  # known from an earlier session
            if not rebuild and saved == signature:
                return np.load(rows_file, mmap_mode="r"), gz
        except (OSError, ValueError, KeyError, AttributeError):
            pass  # missing or stale: rebuild
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{stem}.rows.tmp-{os.getpid()}.npy"
        try:
            with contextlib.suppress(FileNotFoundError):
                meta_file.unlink()  # the old stamp must not outlive the rows it described
            try:
                index = self._build_index(gz)
            except _Unindexable as err:  # remembered, so later sessions go straight to scans
                meta_file.write_text(json.dumps({"signature": signature, "unindexable": str(err)}))
                raise
            np.save(tmp, index)
            os.replace(tmp, rows_file)
            tmp_meta = meta_file.with_name(f"{meta_file.name}.tmp-{os.getpid()}")
            tmp_meta.write_text(json.dumps(signature))
            os.replace(tmp_meta, meta_file)  # written last: marks it complete
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        return np.load(rows_file, mmap_mode="r"), gz

    def _build_index(self, gz_file: Path | None) -> np.ndarray:
        offsets, lengths = self._row_spans(gz_file)
        ids = self._ids_in_order()
        if len(ids) != len(offsets):  # a stray quote: rows and byte spans disagree
            raise _Unindexable(f"{len(ids)} IDs for {len(offsets)} rows")
        encoded = np.array([i.encode("utf-8") for i in ids])
        index = np.zeros(len(ids), dtype=[("id", encoded.dtype), ("offset", "<i8"),
                                          ("length", "<i8"), ("row", "<i8")])
        index["id"], index["offset"], index["length"] = encoded, offsets, lengths
        index["row"] = np.arange(1, len(ids) + 1)
        index = index[np.argsort(index["id"], kind="stable")]
        first = np.ones(len(index), dtype=bool)
        first[1:] = index["id"][1:] != index["id"][:-1]
        return index[first]

    def _row_spans(self, gz_file: Path | None) -> tuple[np.ndarray, np.ndarray]:
        """Byte spans of the data rows: newlines outside quotes end a row (one numpy pass)."""
        ends: list[np.ndarray] = []
        position, inside = self._header_bytes, False
        with reading(self.path), _open_binary(self.path) as f:
            f.seek(self._header_bytes)
            while block := f.read(_BLOCK):
                raw = np.frombuffer(block, dtype=np.uint8)
                quotes = np.cumsum(raw == ord('"')) + int(inside)
                newline = np.flatnonzero((raw == ord("\n")) & (quotes % 2 == 0))
                ends.append(newline + position)
                inside = bool(quotes[-1] % 2) if raw.size else inside
                position += raw.size
            if gz_file is not None:
                f.export_index(str(gz_file))
        stops = np.concatenate([*ends, [position]]) if ends else np.array([position])
        starts = np.concatenate([[self._header_bytes], stops[:-1] + 1])
        lengths = stops - starts
        keep = lengths > 1  # blank lines (also a bare "\r") are not rows, as for pandas
        return starts[keep], lengths[keep]

    def _ids_in_order(self) -> list[str]:
        import pandas as pd

        ids: list[str] = []
        with reading(self.path):
            reader = pd.read_csv(self.path, usecols=[self.id_column], dtype=str,
                                 keep_default_na=False, chunksize=200_000)
            for chunk in reader:
                ids.extend(chunk[self.id_column].tolist())
        return ids

    # -- lookups ----------------------------------------------------------------------------
    def ids(self) -> list[str]:
        """Every ID, in file order."""
        if not self.indexed:
            return self._frame()[self.id_column].tolist()
        if self._index is None:
            if self._scan_ids is None:
                self._scan_ids = self._ids_in_order()
            return list(self._scan_ids)
        return [i.decode("utf-8") for i in self._in_file_order()["id"]]

    def __len__(self) -> int:
        if not self.indexed:
            return len(self._frame())
        return len(self._index) if self._index is not None else len(self.ids())

    def rows_in(self, start: int, stop: int) -> list[tuple[str, int, dict[str, str]]]:
        """(ID, row number, row) of the IDs at positions ``start:stop`` of ``ids()``, read in
        one sequential pass over their bytes (a block of a whole-file job), not one lookup each.
        The rows are the ones ``row`` gives (the first of an ID's repeats)."""
        if not self.indexed:
            table = self._frame().iloc[start:stop]
            return [(r[self.id_column], int(r["__row__"]), {c: str(r[c]) for c in self.header})
                    for r in table.to_dict("records")]
        if self._index is None:  # not indexable: lookups by scan, as ``row`` does
            return [(i, *self.row(i)) for i in self.ids()[start:stop]]  # type: ignore[misc]
        entries = self._in_file_order()[start:stop]
        if not len(entries):
            return []
        first, last = entries[0], entries[-1]
        with reading(self.path), _open_binary(self.path, self._gz_index) as f:
            f.seek(int(first["offset"]))
            raw = f.read(int(last["offset"] + last["length"] - first["offset"]))
        self.stats.bytes_read += len(raw)
        try:
            parsed = [v for v in csv.reader(io.StringIO(raw.decode("utf-8"))) if v]
        except (UnicodeDecodeError, csv.Error):
            parsed = []
        wanted = {int(e["row"]) - int(first["row"]): e["id"].decode("utf-8") for e in entries}
        rows = [dict(zip(self.header, v, strict=False)) for k, v in enumerate(parsed) if k in wanted]
        if len(parsed) != int(last["row"] - first["row"]) + 1 or any(
                r.get(self.id_column) != wanted[k] for k, r in zip(sorted(wanted), rows, strict=True)):
            # the file changed behind the index: the careful per-row path (rebuilds it)
            return [(i, *self.row(i)) for i in wanted.values()]  # type: ignore[misc]
        self.stats.rows_parsed += len(parsed)
        return [(wanted[k], int(first["row"]) + k, r) for k, r in zip(sorted(wanted), rows, strict=True)]

    def _in_file_order(self) -> np.ndarray:
        if self._ordered is None:
            self._ordered = np.sort(self._index, order="row")
        return self._ordered

    def prefetch(self, row_ids: list[str]) -> None:
        """Read the rows of these IDs now, in file order with one open file, so that ``row``
        of each is answered from memory (a block of a job; replaces the previous block)."""
        self._prefetched = {}
        if not self.indexed or self._index is None:
            return
        keys = np.array([i.encode("utf-8") for i in row_ids])
        at = np.searchsorted(self._index["id"], keys) if keys.size else np.array([], int)
        at = at[(at < len(self._index))]
        entries = np.sort(self._index[at], order="offset")
        entries = entries[np.isin(entries["id"], keys)]
        with reading(self.path), _open_binary(self.path, self._gz_index) as f:
            for entry in entries:
                f.seek(int(entry["offset"]))
                raw = f.read(int(entry["length"]))
                self.stats.bytes_read += len(raw)
                try:
                    values = next(csv.reader(io.StringIO(raw.decode("utf-8"))), [])
                except (UnicodeDecodeError, csv.Error):
                    continue
                row = dict(zip(self.header, values, strict=False))
                key = entry["id"].decode("utf-8")
                if row.get(self.id_column) == key:  # else: left to ``row``'s careful path
                    self._prefetched[key] = (int(entry["row"]), row)

    def row(self, row_id: str) -> tuple[int, dict[str, str]] | None:
        """(data row number, column -> text) of one ID, or None when absent."""
        if row_id in self._prefetched:
            return self._prefetched[row_id]
        if not self.indexed:
            table = self._frame()
            if row_id not in table.index:
                return None
            record = table.loc[row_id]
            return int(record["__row__"]), {c: str(record[c]) for c in self.header}
        for attempt in range(2):
            if self._index is None:
                return self._scan_for(row_id)
            found = self._indexed_row(row_id)
            if found is not _WRONG_ROW:
                return found
            if attempt == 0:  # the file changed behind the index: rebuild it once
                self._load_index(rebuild=True)
        self.note = f"{self.path}: its row index does not match the file; rows found by scanning"
        self._index = None
        return self._scan_for(row_id)

    def _indexed_row(self, row_id: str) -> tuple[int, dict[str, str]] | None | object:
        key = row_id.encode("utf-8")
        ids = self._index["id"]
        at = int(np.searchsorted(ids, key))
        if at >= len(ids) or ids[at] != key:
            return None
        entry = self._index[at]
        with reading(self.path), _open_binary(self.path, self._gz_index) as f:
            f.seek(int(entry["offset"]))
            raw = f.read(int(entry["length"]))
        self.stats.bytes_read += len(raw)
        self.stats.rows_parsed += 1
        try:
            values = next(csv.reader(io.StringIO(raw.decode("utf-8"))), [])
        except (UnicodeDecodeError, csv.Error):
            return _WRONG_ROW
        row = dict(zip(self.header, values, strict=False))
        if row.get(self.id_column) != row_id:
            return _WRONG_ROW  # the bytes there are another row now
        return int(entry["row"]), row

    def _scan_for(self, row_id: str) -> tuple[int, dict[str, str]] | None:
        """The row of an ID by streaming the file through pandas (slow, always right)."""
        import pandas as pd

        seen = 0
        with reading(self.path):
            for chunk in pd.read_csv(self.path, dtype=str, keep_default_na=False,
                                     chunksize=20_000):
                chunk.columns = [c.strip() for c in chunk.columns]
                self.stats.rows_parsed += len(chunk)
                hits = np.flatnonzero(chunk[self.id_column].to_numpy() == row_id)
                if hits.size:
                    record = chunk.iloc[int(hits[0])]
                    return seen + int(hits[0]) + 1, {c: str(record[c]) for c in self.header}
                seen += len(chunk)
        return None


class _Unindexable(Exception):
    """The file's rows cannot be located by a quote-aware byte scan."""


_WRONG_ROW = object()


@contextlib.contextmanager
def reading(path: Path):
    """Reading errors of a damaged or truncated file as one line naming it."""
    try:
        yield
    except _READ_ERRORS as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise GroundingError(f"{path}: cannot read CSV (truncated or damaged? {reason})") from None
