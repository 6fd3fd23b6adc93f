"""Scored images -> one self-contained HTML page (thumbnails embedded, no script, nothing from the network).

Pure: takes rows (key, caption, predicted and optionally true score, a way to load the image, an error) and
returns the page as bytes; the tracking edge logs it. Its size is bounded whatever the number of rows: a
deterministic sample per score bucket, plus fixed counts of top, bottom and most-missed images.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

THUMBNAIL = 160  # px, long side
PER_BUCKET = 12  # images shown per score bucket
EXTREMES = 24  # top, bottom, biggest misses
# At most about 18 buckets x 12 + 3 x 24 + failures shown = 300 thumbnails of ~5-8 KB: a few MB at most.
MAX_FAILURES_SHOWN = 50
# No script, no request anywhere: images are data: URIs, styles inline.
POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@dataclass
class Row:
    key: str  # an image id, a path, a shard member
    caption: str  # shown under the thumbnail (escaped)
    score: float  # predicted, NaN when it failed
    load: Callable[[], Image.Image] | None  # the image, decoded as the project decodes it
    true: float | None = None
    error: str = ""
    percentile: float | None = None  # against the model's reference scores (scoring/reference.py), when known


def thumbnail(row: Row) -> str:
    """An <img> with the image embedded as a small JPEG, or a box with the reason it cannot be shown."""
    if row.error or row.load is None:
        return f'<div class="broken">{html.escape(row.error or "no image")}</div>'
    try:
        image = row.load().convert("RGB")
    except Exception as error:  # noqa: BLE001  a gallery shows why, it never stops on one image
        return f'<div class="broken">{html.escape(str(error) or type(error).__name__)}</div>'
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img src="data:image/jpeg;base64,{data}" alt="{html.escape(row.key, quote=True)}">'


def card(row: Row, extra: str = "", show_score: bool = True) -> str:
    scores = "" if not show_score else (
        f'<b class="pred">{row.score:.2f}</b>' if np.isfinite(row.score) else "<b>no score</b>")
    if row.percentile is not None and np.isfinite(row.percentile):
        scores += (' <span class="pct" title="percentile: where the score falls among the reference scores">'
                   f"p{row.percentile:.0f}</span>")
    if row.true is not None and np.isfinite(row.true):
        scores += f' <span class="true">true {row.true:.2f}</span>'
    return (f'<figure data-key="{html.escape(row.key, quote=True)}" data-score="{row.score:.6f}">{thumbnail(row)}'
            f"<figcaption>{scores}{extra}<br>{html.escape(row.caption)}</figcaption></figure>")


N_BUCKETS = 18


def bucket_edges(low: float, high: float) -> np.ndarray:
    """0.5 wide on AVA's 1-10 scale (18 buckets); the same count scaled to any other range."""
    return np.linspace(low, high, N_BUCKETS + 1)


def bucket_width(low: float, high: float) -> float:
    return round((high - low) / N_BUCKETS, 4)


def spread_sample(indices: np.ndarray, k: int) -> np.ndarray:
    """k indices evenly spaced over `indices` (already in score order): deterministic, covers the bucket."""
    if len(indices) <= k:
        return indices
    return indices[np.linspace(0, len(indices) - 1, k).round().astype(int)]


def page(title: str, rows: list[Row], score_range: tuple[float, float], summary: list[str],
         plots: dict[str, bytes] | None = None, sections: list[tuple[str, list[str]]] | None = None) -> bytes:
    """The whole page: summary, plots, score buckets, top and bottom, biggest misses (with true scores), extra
    sections given by the caller, and the images that could not be scored with their reasons."""
    scored = [r for r in rows if np.isfinite(r.score)]
    failed = [r for r in rows if not np.isfinite(r.score)]
    order = sorted(scored, key=lambda r: r.score)
    listed = "".join(f"<li>{html.escape(s)}</li>" for s in summary)
    parts = [f"<h1>{html.escape(title)}</h1>", f"<ul>{listed}</ul>"]
    for name, png in (plots or {}).items():
        parts.append(f'<img class="plot" alt="{html.escape(name, quote=True)}" '
                     f'src="data:image/png;base64,{base64.b64encode(png).decode()}">')
    edges = bucket_edges(*score_range)
    values = np.array([r.score for r in order])
    parts.append("<h2>By predicted score</h2>")
    for index in range(len(edges) - 1):
        low, high = edges[index], edges[index + 1]
        inside = np.flatnonzero((values >= low) & ((values < high) | (index == len(edges) - 2)))
        if not len(inside):
            continue
        shown = [order[i] for i in spread_sample(inside, PER_BUCKET)]
        parts.append(f'<section class="bucket" data-low="{low:.4f}"><h3>{low:.2f} - {high:.2f}: {len(inside)} '
                     f'image(s){", a sample of " + str(len(shown)) if len(shown) < len(inside) else ""}</h3>'
                     + "".join(card(r) for r in shown) + "</section>")
    parts.append(f"<h2>Top {min(EXTREMES, len(order))}</h2>" + "".join(card(r) for r in order[::-1][:EXTREMES]))
    parts.append(f"<h2>Bottom {min(EXTREMES, len(order))}</h2>" + "".join(card(r) for r in order[:EXTREMES]))
    labelled = [r for r in order if r.true is not None and np.isfinite(r.true)]
    if labelled:
        misses = sorted(labelled, key=lambda r: -abs(r.score - r.true))[:EXTREMES]
        parts.append("<h2>Biggest misses</h2>" + "".join(
            card(r, f' <span class="miss">off by {abs(r.score - r.true):.2f}</span>') for r in misses))
    for heading, cards in sections or []:
        parts.append(f"<h2>{html.escape(heading)}</h2>" + "".join(cards))
    if failed:
        parts.append(f"<h2>Not scored: {len(failed)}</h2>" + "".join(card(r) for r in failed[:MAX_FAILURES_SHOWN]))
    return _document(title, "\n".join(parts))


def _document(title: str, body: str) -> bytes:
    style = ("body{font-family:sans-serif;margin:1em}figure{display:inline-block;width:170px;margin:4px;"
             "vertical-align:top;font-size:12px;overflow-wrap:anywhere}figure img{max-width:160px;max-height:160px}"
             ".broken{width:160px;height:90px;background:#eee;color:#a00;font-size:11px;overflow:hidden}"
             ".plot{max-width:45%;margin:4px}.true{color:#555}.miss{color:#a00}")
    return (f'<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" '
            f'content="{POLICY}"><title>{html.escape(title)}</title><style>{style}</style></head>'
            f"<body>{body}</body></html>").encode()


def disagreement(children: dict[str, dict[str, float]]) -> list[tuple[str, float]]:
    """Images scored by every child, most disputed first: the spread (standard deviation) of their percentile
    ranks across children, so that children on different scales compare."""
    common = sorted(set.intersection(*(set(scores) for scores in children.values()))) if children else []
    if len(children) < 2 or not common:
        return []
    ranks = []
    for scores in children.values():
        values = np.array([scores[key] for key in common])
        ranks.append(values.argsort().argsort() / max(1, len(common) - 1))
    spread = np.std(np.array(ranks), axis=0)
    return sorted(zip(common, spread.tolist()), key=lambda pair: -pair[1])


def compare_page(title: str, images: dict[str, Row], children: dict[str, dict[str, float]], n: int = 48) -> bytes:
    """The same test images as ranked by each child of a sweep: those they disagree on most, each with every
    child's score."""
    ranked = disagreement(children)
    disputed = ranked[:n]
    cards = []
    for key, spread in disputed:
        row = images[key]
        lines = "".join(f'<br><span class="child" data-child="{html.escape(name, quote=True)}">'
                        f"{html.escape(name)}: {scores[key]:.2f}</span>" for name, scores in children.items())
        cards.append(card(row, f" rank spread {spread:.2f}{lines}", show_score=False))
    summary = [f"{len(children)} children: {', '.join(children)}",
               f"{len(ranked)} test images scored by all of them; the {len(disputed)} they rank most "
               "differently are shown, each with every child's score (rank spread: standard deviation of the "
               "image's percentile rank across children)"]
    body = (f"<h1>{html.escape(title)}</h1><ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in summary) + "</ul>"
            + "".join(cards))
    return _document(title, body)


def rows_of(labelled, ids, scores, true=None) -> list[Row]:
    """Rows of a dataset's images (a Labelled: its names and sources) with their scores, loaded on demand."""
    from clip_aesthetics.images.decode import load_source

    names = labelled.frame.set_index("image_id")["image"]
    label = (lambda i: str(names.get(int(i), i))) if labelled.names_images else (lambda i: f"image {i}")
    return [Row(str(i), label(i), float(s), (lambda p=labelled.sources[int(i)]: load_source(p)),
                               None if true is None else float(t))
            for i, s, t in zip(ids, scores, true if true is not None else [None] * len(ids), strict=True)]


def disagreement_page(title: str, labelled, predictions: dict) -> bytes | None:
    """The compare page of several models' predictions on the same labelled images (name -> a frame of image_id,
    score_true, score_pred); None with fewer than two."""
    if len(predictions) < 2:
        return None
    scores, truth = {}, {}
    for name, frame in predictions.items():
        scores[name] = dict(zip(frame["image_id"].astype(str), frame["score_pred"], strict=True))
        truth.update(zip(frame["image_id"].astype(str), frame["score_true"], strict=True))
    rows = {row.key: row for row in rows_of(labelled, [int(k) for k in truth], [float("nan")] * len(truth),
                                            list(truth.values()))}
    return compare_page(title, rows, scores)
