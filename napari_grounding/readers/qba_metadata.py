"""MIMIC-Ext-CXR-QBA's metadata tables, read for one study at a time.

``metadata/`` ships every table twice, ``<table>.parquet`` and ``<table>.csv.gz``: the parquet
is read when present (never both), through pyarrow with the study as a row-group filter, so
opening one study of the 42-million-row question table reads only the row groups that can hold
it. The key columns (``patient_id, study_id, question_id, answer_id, image_id``) may be plain
columns or the frame's index; field names may carry prefixes (``question.quality.rating``,
``answer_img.quality.localization_quality``). Raw quality codes are decoded through the root's
``quality_mappings.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..model import GroundingError

if TYPE_CHECKING:  # pandas and pyarrow are imported where used: start-up stays fast
    import pandas as pd
    import pyarrow as pa
    import pyarrow.dataset as ds

TABLES = ("study_metadata", "question_metadata", "answer_metadata", "image_metadata",
          "question_image_metadata", "answer_image_metadata")
KEYS = ("patient_id", "study_id", "question_id", "answer_id", "image_id")
CSV_CHUNK_ROWS = 500_000


def column(frame: pd.DataFrame, *wanted: str) -> str | None:
    """The first column named ``w`` or ending in ``.w`` (prefixed field names), in ``wanted`` order."""
    for name in wanted:
        for col in frame.columns:
            if col == name or str(col).endswith("." + name):
                return str(col)
    return None


def plain(value: object) -> str:
    """A cell as text: ``4.0`` -> ``4``, missing -> ``""``."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def study_key(value: object) -> str:
    """``s50414267``, ``50414267`` and ``50414267.0`` all name the same study."""
    return plain(value).strip().lstrip("s")


@dataclass
class TableFile:
    """One metadata table: the ``.parquet`` when shipped, else the ``.csv.gz`` (or ``.csv``)."""

    path: Path
    row_groups_read: int = 0  # for tests and benchmarks: what the last lookup touched
    row_groups_total: int = 0

    @classmethod
    def find(cls, folder: Path, name: str) -> TableFile | None:
        for suffix in (".parquet", ".csv.gz", ".csv"):
            path = folder / f"{name}{suffix}"
            if path.is_file():
                return cls(path)
        return None

    def rows_of(self, study: str) -> pd.DataFrame:
        """The study's rows, keys as plain columns."""
        return self._frame(lambda: self._parquet(study) if self.path.suffix == ".parquet"
                           else self._csv(study))

    def all_rows(self) -> pd.DataFrame:
        """Every row (for the one-row-per-study table), keys as plain columns."""
        import pandas as pd

        return self._frame(lambda: pd.read_parquet(self.path) if self.path.suffix == ".parquet"
                           else pd.read_csv(self.path, dtype=str, keep_default_na=False))

    def _frame(self, read: Any) -> pd.DataFrame:
        """``read()``'s frame with its index keys as columns; a read error in one line."""
        import pyarrow as pa

        try:
            frame = read()
        except (OSError, ValueError, pa.ArrowException) as err:  # pandas' ParserError: ValueError
            raise GroundingError(f"{self.path}: cannot read ({str(err).splitlines()[0]})") from None
        if any(name is not None for name in frame.index.names):
            frame = frame.reset_index()
        return frame

    def _parquet(self, study: str) -> pd.DataFrame:
        import pyarrow as pa
        import pyarrow.dataset as ds

        dataset = ds.dataset(self.path, format="parquet")
        if "study_id" not in dataset.schema.names:
            raise GroundingError(f"{self.path}: no study_id column or index")
        wanted = _study_filter(dataset.schema.field("study_id").type, study)
        tables, self.row_groups_read, self.row_groups_total = [], 0, 0
        for fragment in dataset.get_fragments():
            self.row_groups_total += fragment.metadata.num_row_groups
            # row groups whose min/max statistics cannot hold the study are never read
            for group in fragment.split_by_row_group(filter=wanted):
                self.row_groups_read += 1
                tables.append(group.to_table(filter=wanted))
        table = pa.concat_tables(tables) if tables else dataset.schema.empty_table()
        return table.to_pandas()

    def _csv(self, study: str) -> pd.DataFrame:
        # csv.gz cannot skip: stream it in chunks, keeping only the study's rows
        import pandas as pd

        key, kept = study_key(study), []
        with pd.read_csv(self.path, dtype=str, keep_default_na=False,
                         chunksize=CSV_CHUNK_ROWS) as chunks:
            for chunk in chunks:
                if "study_id" not in chunk.columns:
                    raise GroundingError(f"{self.path}: no study_id column")
                kept.append(chunk[chunk["study_id"].map(study_key) == key])
        return pd.concat(kept) if kept else pd.DataFrame()


def _study_filter(kind: pa.DataType, study: str) -> ds.Expression:
    import pyarrow as pa
    import pyarrow.compute as pc

    key = study_key(study)
    if pa.types.is_integer(kind):
        return pc.field("study_id") == pa.scalar(int(key), kind) if key.isdigit() else \
            pc.field("study_id") == pa.scalar(-1, kind)
    if pa.types.is_floating(kind):
        return pc.field("study_id") == float(key) if key.isdigit() else pc.field("study_id") == -1.0
    # equality (not isin) so that row-group statistics prune
    return (pc.field("study_id") == f"s{key}") | (pc.field("study_id") == key)


class QualityMappings:
    """``quality_mappings.csv``: raw code -> name, per field where the file names the field.

    Accepted forms: ``field, code, name`` (a field column first, the name last) or
    ``code, name``. A code no row maps is shown as it is.
    """

    def __init__(self, path: Path | None):
        self.path = path
        self.by_field: dict[tuple[str, str], str] = {}
        self.any_field: dict[str, str] = {}
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        import pandas as pd

        try:
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (OSError, ValueError) as err:  # pandas' ParserError is a ValueError
            raise GroundingError(f"{path}: cannot read ({str(err).splitlines()[0]})") from None
        columns = list(table.columns)
        if len(columns) < 2:
            return
        if len(columns) == 2:
            self.any_field = dict(zip(table[columns[0]].str.strip(), table[columns[1]], strict=True))
            return
        field_col, code_col, name_col = columns[0], columns[1], columns[-1]
        names: dict[str, set[str]] = {}
        for fld, code, name in zip(table[field_col], table[code_col], table[name_col], strict=True):
            self.by_field[(fld.strip().lower(), code.strip())] = name
            names.setdefault(code.strip(), set()).add(name)
        # a code every field maps alike decodes even under a field name the file does not use
        self.any_field = {code: next(iter(n)) for code, n in names.items() if len(n) == 1}

    def decode(self, column_name: str, value: object) -> str:
        code = plain(value).strip()
        if not code or not any(w in column_name.lower() for w in ("quality", "rating")):
            return code  # only quality fields are coded (num_answers 1 is not a grade)
        parts = column_name.lower().split(".")
        for start in range(len(parts)):  # question.quality.rating, quality.rating, rating
            found = self.by_field.get((".".join(parts[start:]), code))
            if found is not None:
                return found
        return self.any_field.get(code, code)


def find_mappings(root: Path) -> Path | None:
    """``quality_mappings.csv`` at the dataset root, also when ``root`` is ``exports/<subset>``."""
    for folder in (root, root.parent, root.parent.parent):
        path = folder / "quality_mappings.csv"
        if path.is_file():
            return path
    return None


@dataclass
class StudyMetadata:
    """What the metadata tables say about one study, decoded, keyed by the dataset's ids."""

    study: dict[str, str] = field(default_factory=dict)  # case tags: split, study quality
    questions: dict[str, dict[str, str]] = field(default_factory=dict)
    answers: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    images: dict[str, dict[str, str]] = field(default_factory=dict)
    question_images: dict[str, dict[str, str]] = field(default_factory=dict)  # qid -> image -> grade
    answer_images: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)


class QBAMetadata:
    """The metadata folder of a QBA root (or export), read one study at a time."""

    def __init__(self, folder: Path, mappings: QualityMappings):
        self.folder = folder
        self.mappings = mappings
        self.tables = {name: TableFile.find(folder, name) for name in TABLES}

    def __bool__(self) -> bool:
        return any(self.tables.values())

    @property
    def form(self) -> str:
        """Which files are read, for the case's ``metadata`` tag."""
        kinds = sorted({"".join(t.path.suffixes[-2:]) if t.path.name.endswith(".csv.gz")
                        else t.path.suffix for t in self.tables.values() if t is not None})
        note = " (streamed whole for each study: the .parquet is much faster)" \
            if ".parquet" not in kinds and kinds else ""
        return " + ".join(kinds) + note

    def _rows(self, name: str, study: str) -> pd.DataFrame:
        import pandas as pd

        table = self.tables.get(name)
        return table.rows_of(study) if table is not None else pd.DataFrame()

    def for_study(self, study: str) -> StudyMetadata:
        out = StudyMetadata()
        study_rows = self._records(self._rows("study_metadata", study), ("study_id",))
        for fields in study_rows.values():
            out.study = {tag: fields[name] for tag, name in (("split", "split"), (
                "study_quality", "quality.rating"), ("study_quality", "quality")) if fields.get(name)}
        out.questions = self._records(self._rows("question_metadata", study), ("question_id",))
        out.answers = self._records(self._rows("answer_metadata", study), ("question_id", "answer_id"))
        out.images = self._records(self._rows("image_metadata", study), ("image_id",))
        for qid_image, grade in self._localization(self._rows("question_image_metadata", study),
                                                   ("question_id",)).items():
            out.question_images.setdefault(qid_image[0], {})[qid_image[1]] = grade
        for key, grade in self._localization(self._rows("answer_image_metadata", study),
                                             ("question_id", "answer_id")).items():
            out.answer_images.setdefault(key[:2], {})[key[2]] = grade
        return out

    def study_grades(self) -> dict[str, str]:
        """Study key (as ``study_key`` gives it) -> the study's overall grade, decoded, for
        every study the study table lists; empty without one."""
        import pandas as pd

        table = self.tables.get("study_metadata")
        frame = table.all_rows() if table is not None else pd.DataFrame()
        grade = column(frame, "quality.rating", "rating", "quality") if not frame.empty else None
        if grade is None or "study_id" not in frame.columns:
            return {}
        return {study_key(study): self.mappings.decode(grade, value)
                for study, value in zip(frame["study_id"], frame[grade], strict=True) if plain(value)}

    def _records(self, frame: pd.DataFrame, keys: tuple[str, ...]) -> dict:
        """Rows as {key: {field: decoded text}}; field names lose their table prefix."""
        if frame.empty or any(k not in frame.columns for k in keys):
            return {}
        fields = [c for c in frame.columns if c not in KEYS]
        out = {}
        for record in frame.to_dict("records"):
            key = tuple(plain(record[k]) for k in keys)
            out[key[0] if len(key) == 1 else key] = {
                _short(c): self.mappings.decode(c, record[c]) for c in fields}
        return out

    def _localization(self, frame: pd.DataFrame, keys: tuple[str, ...]) -> dict:
        col = column(frame, "localization_quality") if not frame.empty else None
        if col is None or any(k not in frame.columns for k in (*keys, "image_id")):
            return {}
        return {(*(plain(r[k]) for k in keys), plain(r["image_id"])): self.mappings.decode(col, r[col])
                for r in frame.to_dict("records")}


def _short(name: str) -> str:
    """``question.quality.rating`` -> ``quality.rating``: the field without its table prefix."""
    head, _, rest = str(name).partition(".")
    return rest if rest and head in ("question", "answer", "image", "study", "question_img",
                                     "answer_img", "img") else str(name)
