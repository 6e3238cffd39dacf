"""The Case: what any dataset reader hands to the rest of the tool.

A Case knows no dataset. It holds lazily loaded images with their geometry, a tree of text
items, annotations tied to one image each, and the links from text items to annotations.
Everything downstream (layers, panel, describe, QC) works on Cases only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass, field
from typing import Any

import numpy as np


class GroundingError(Exception):
    """Bad input, described in one line a user can act on."""


GROUND_TRUTH = "ground truth"  # the set name of a dataset's own annotations unless it says more


@dataclass(frozen=True)
class Orientation:
    """How a source array's axes map onto the display axes.

    ``source_axes[j]`` is the source axis shown along display axis ``j``; ``flips[j]`` says
    whether it runs backwards on screen. Works on numpy and dask arrays alike (views only).
    """

    source_axes: tuple[int, ...]
    flips: tuple[bool, ...]
    source_shape: tuple[int, ...]

    @classmethod
    def identity(cls, shape: tuple[int, ...]) -> Orientation:
        return cls(tuple(range(len(shape))), (False,) * len(shape), tuple(shape))

    @property
    def display_shape(self) -> tuple[int, ...]:
        return tuple(self.source_shape[a] for a in self.source_axes)

    def to_display(self, array: Any) -> Any:
        """Reorder the trailing axes of ``array`` (source order) into display order."""
        lead = array.ndim - len(self.source_axes)
        flipped = [slice(None)] * array.ndim
        for axis, flip in zip(self.source_axes, self.flips, strict=True):
            if flip:
                flipped[lead + axis] = slice(None, None, -1)
        order = list(range(lead)) + [lead + a for a in self.source_axes]
        return array[tuple(flipped)].transpose(order)

    def to_source(self, array: Any) -> Any:
        """The inverse of ``to_display``: display order back to the source's axes."""
        lead = array.ndim - len(self.source_axes)
        back = [lead + self.source_axes.index(a) for a in range(len(self.source_axes))]
        unordered = array.transpose(list(range(lead)) + back)
        flipped = [slice(None)] * array.ndim
        for axis, flip in zip(self.source_axes, self.flips, strict=True):
            if flip:
                flipped[lead + axis] = slice(None, None, -1)
        return unordered[tuple(flipped)]

    def index_to_display(self, source_index: Any) -> np.ndarray:
        """A (fractional) source voxel index as a display index."""
        src = np.asarray(source_index, dtype=float)
        out = src[list(self.source_axes)].copy()
        for j, (axis, flip) in enumerate(zip(self.source_axes, self.flips, strict=True)):
            if flip:
                out[j] = self.source_shape[axis] - 1 - out[j]
        return out

    def index_to_source(self, display_index: Any) -> np.ndarray:
        """A display index back in the source's own axis order."""
        disp = np.asarray(display_index, dtype=float)
        out = np.empty_like(disp)
        for j, (axis, flip) in enumerate(zip(self.source_axes, self.flips, strict=True)):
            out[axis] = self.source_shape[axis] - 1 - disp[j] if flip else disp[j]
        return out


@dataclass
class ReadCounter:
    """Chunks and bytes a lazy array has read from disk (for tests and benchmarks)."""

    chunks: int = 0
    bytes: int = 0

    def add(self, nbytes: int, chunks: int = 1) -> None:
        self.chunks += chunks
        self.bytes += int(nbytes)


class Deferred:
    """An array built when first read, its shape and dtype known before: building a dask
    graph imports dask.array (0.3-0.7 s), which a command that only lists a case never needs."""

    def __init__(self, build: Callable[[], Any], shape: tuple[int, ...], dtype: Any):
        self._build: Callable[[], Any] | None = build
        self.shape, self.dtype = tuple(int(n) for n in shape), np.dtype(dtype)
        self.built: Any = None
        self._lock = threading.Lock()  # a panel's worker and the UI may read it at once

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __call__(self) -> Any:
        with self._lock:
            if self._build is not None:
                self.built, self._build = self._build(), None
        return self.built

    def then(self, step: Callable[[Any], Any], shape: tuple[int, ...]) -> Deferred:
        """``step`` of this array (a view: a channel, a reordering), deferred as well."""
        return Deferred(lambda: step(self()), shape, self.dtype)


class BuiltOnRead:
    """A dataclass field that may be given a ``Deferred``: the first read builds its value."""

    def __init__(self, default: Any = MISSING):
        self.default = default

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = "_" + name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:  # the dataclass asks for the field's default
            if self.default is MISSING:
                raise AttributeError(self.key)
            return self.default
        value = obj.__dict__[self.key]
        return value() if isinstance(value, Deferred) else value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.key] = value


def stored(obj: Any, name: str = "data") -> Any:
    """A ``BuiltOnRead`` field's value as given: its ``Deferred`` while it is not built."""
    return obj.__dict__["_" + name]


@dataclass
class Image:
    """One lazily read picture of a case (a CT volume, a CXR view) and its geometry.

    ``data`` is in display order; ``affine`` maps the *source* voxel index to world
    millimetres (RAS+ for NIfTI), so annotations kept in source order need no resampling.
    """

    id: str
    data: Any = BuiltOnRead()  # dask array (or a Deferred one), display order
    orientation: Orientation
    affine: np.ndarray
    kind: str  # "ct" or "xray"
    contrast_limits: tuple[float, float]
    # napari world coordinates of display voxel 0: millimetres along the display axes, so two
    # files of one scan in different orientations land on the same world coordinates
    origin: tuple[float, ...] = ()
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    reads: ReadCounter | None = None
    # coarser copies of ``data`` for large images (level 0 is ``data`` itself), or empty
    pyramid: list[Any] = field(default_factory=list)
    # ``slabs(start, stop)``: the source array's indices start:stop along ``slabs.axis``, read in
    # one call (the cache writer reads forward with it; ``data``'s display flip reads backward)
    slabs: Any = None
    # the cache's arrays in display order, level 0 first, when read from it: the viewer slices
    # these directly (a dask graph per slice costs 3-5x the read)
    display_levels: list[Any] = field(default_factory=list)

    @property
    def label(self) -> str:
        """How a view switcher names this image (its view position when known)."""
        view = self.meta.get("view")
        return str(view) if view else self.id

    @property
    def dtype(self) -> np.dtype:
        """The pixels' dtype, known without building ``data``."""
        return np.dtype(stored(self).dtype)

    @property
    def source_spacing(self) -> tuple[float, ...]:
        """Millimetres per voxel along each source axis."""
        n = len(self.orientation.source_shape)
        return tuple(float(s) for s in np.linalg.norm(self.affine[:n, :n], axis=0))

    @property
    def spacing(self) -> tuple[float, ...]:
        """Millimetres per voxel along each display axis (napari's ``scale``)."""
        src = self.source_spacing
        return tuple(src[a] for a in self.orientation.source_axes)

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.source_spacing))

    def source_to_world(self, source_index: Any) -> np.ndarray:
        """Source voxel index to the file's world millimetres (RAS+ for NIfTI)."""
        n = len(self.orientation.source_shape)
        idx = np.asarray(source_index, dtype=float)
        return self.affine[:n, :n] @ idx + self.affine[:n, n]

    def source_to_display_mm(self, source_index: Any) -> np.ndarray:
        """Source voxel index to napari world coordinates (display axes, millimetres)."""
        disp = self.orientation.index_to_display(source_index)
        return np.asarray(self.origin) + disp * np.asarray(self.spacing)


@dataclass(kw_only=True)
class Annotation:
    """Something drawn on one image: a mask, a contour or a box."""

    id: str
    kind: str
    image: str
    set: str = GROUND_TRUTH
    # the id this annotation shares with its counterparts in other sets ("mask/0" for a
    # prediction "mask/0@model"); empty: its own id
    base: str = ""

    @property
    def ref(self) -> str:
        """The id shared across annotation sets."""
        return self.base or self.id


@dataclass(kw_only=True)
class MaskAnnotation(Annotation):
    """A label mask in the image's *source* voxel order; each nonzero value is an instance."""

    # dask array (or a Deferred one), integer labels, same shape as the image's source array
    data: Any = BuiltOnRead(default=None)
    kind: str = "mask"
    reads: ReadCounter | None = None  # shared by masks read from one file
    source: str = ""  # the file it is read from, when it has one
    stats: Any = None  # its MaskStats when the reader knows them without a pass over the pixels
    slabs: Any = None  # as ``Image.slabs``, over ``data``: channels of one file share a read
    display_data: Any = None  # as ``Image.display_levels``: the cache's array, display order

    def pixels(self) -> Any:
        """The mask as scores read it: the dask array, or numpy where the reader can decode
        it whole without dask (a CSV row's runs)."""
        return self.data


@dataclass(kw_only=True)
class ContourAnnotation(Annotation):
    """A polygon on an image: (N, 2) vertices in the image's (row, column) order."""

    points: Any = None
    closed: bool = True
    kind: str = "contour"


@dataclass(kw_only=True)
class BoxAnnotation(Annotation):
    """A box on an image, in that image's pixel coordinates (x1, y1, x2, y2).

    ``xyxy`` is what is drawn (clipped to the image when its size is known); ``given`` is what
    the dataset said.
    """

    xyxy: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    given: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    clipped: bool = False
    fallback: bool = False
    label: str = ""
    positiveness: str = ""
    kind: str = "box"

    @property
    def corners(self) -> list[tuple[float, float]]:
        """Top-left and bottom-right as (row, column)."""
        x1, y1, x2, y2 = self.xyxy
        return [(y1, x1), (y2, x2)]


@dataclass
class TextItem:
    """A finding, report section, sentence, question or answer, with its links."""

    id: str
    text: str
    title: str = ""  # a short heading shown instead of the text (report sections)
    tags: dict[str, str] = field(default_factory=dict)
    annotations: list[str] = field(default_factory=list)
    children: list[TextItem] = field(default_factory=list)


@dataclass
class Case:
    """One study or scan of any dataset, as the rest of the tool sees it."""

    dataset: str
    id: str
    images: dict[str, Image] = field(default_factory=dict)
    items: list[TextItem] = field(default_factory=list)
    annotations: dict[str, Annotation] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    # the first part of every key, when several readers reach the same cases (a CT-RATE scan
    # opened from a ReXGroundingCT root or from its CT-RATE root): empty means ``dataset``
    key_space: str = ""
    # annotation sets added after reading (a second annotator, predictions), in order
    added_sets: list[str] = field(default_factory=list)
    # set name -> the items an added set speaks for (an item in scope without annotations of
    # that set: the set found nothing there)
    set_scopes: dict[str, list[str]] = field(default_factory=dict)
    # derived numbers (mask statistics, ...) computed once per opening
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def key(self) -> str:
        """Stable across openings and folders: review verdicts and predictions join on it."""
        return f"{self.key_space or self.dataset}/{self.id}"

    def item_key(self, item: TextItem) -> str:
        return f"{self.key}/{item.id}"

    def annotation_key(self, annotation_id: str) -> str:
        return f"{self.key}/{annotation_id}"

    def walk(self) -> Iterator[TextItem]:
        """Every text item, depth first, in reading order."""
        stack = list(reversed(self.items))
        while stack:
            item = stack.pop()
            yield item
            stack.extend(reversed(item.children))

    def item(self, item_id: str) -> TextItem:
        for item in self.walk():
            if item.id == item_id:
                return item
        known = ", ".join(i.id for i in self.walk())
        raise GroundingError(f"case {self.id} has no item {item_id!r} (items: {known})")

    def annotations_of(self, item: TextItem) -> list[Annotation]:
        return [self.annotations[a] for a in item.annotations if a in self.annotations]

    def items_linked_to(self, annotation_id: str) -> list[TextItem]:
        return [i for i in self.walk() if annotation_id in i.annotations]

    # -- annotation sets ---------------------------------------------------------------------
    def sets(self) -> list[str]:
        """Names of the annotation sets: the dataset's own first, then those added."""
        own = dict.fromkeys(a.set for a in self.annotations.values() if a.set not in self.added_sets)
        return [*own, *self.added_sets]

    @property
    def reference_set(self) -> str:
        """The set others are compared with: the dataset's own annotations."""
        return next((s for s in self.sets() if s not in self.added_sets), GROUND_TRUTH)

    def annotation_in(self, set_name: str, ref: str) -> Annotation | None:
        """The annotation of ``set_name`` whose shared id (``Annotation.ref``) is ``ref``."""
        return next((a for a in self.annotations.values() if a.set == set_name and a.ref == ref),
                    None)

    def counterpart(self, annotation_id: str, other_set: str) -> Annotation | None:
        """The annotation of ``other_set`` standing for the same thing as ``annotation_id``."""
        return self.annotation_in(other_set, self.annotations[annotation_id].ref)

    def annotations_in(self, item: TextItem, set_name: str) -> list[Annotation]:
        """The annotations of one set linked to ``item``."""
        return [a for a in self.annotations_of(item) if a.set == set_name]

    def add_set(self, name: str, annotations: list[Annotation],
                links: dict[str, list[str]] | None = None, scope: list[str] | None = None) -> None:
        """Add a named annotation set: each annotation is linked to the items named in
        ``links`` (item id -> annotation ids), or else to the items linking its ``base``;
        ``scope`` names the items the set speaks for (default: those it links)."""
        if name in self.sets():
            raise GroundingError(f"case {self.id} already has an annotation set named {name!r}")
        clash = [a.id for a in annotations if a.id in self.annotations]
        if clash:
            raise GroundingError(f"case {self.id}: annotation ids {clash[:3]} already taken")
        self.added_sets.append(name)
        self.annotations.update({a.id: a for a in annotations})
        if links is None:
            links = {}
            for a in annotations:
                for item in self.items_linked_to(a.base):
                    links.setdefault(item.id, []).append(a.id)
        for item in self.walk():
            item.annotations += [a for a in links.get(item.id, []) if a not in item.annotations]
        self.set_scopes[name] = list(scope if scope is not None else links)
        self.cache.pop("stats", None)  # statistics cover the new annotations too
