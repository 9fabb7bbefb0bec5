"""A contact sheet: the user's recent items on top, recommendations below.

People judge recommendations by looking at them. This draws one PNG with
Pillow: a row of the user's latest clicks (with their attention weights) and
rows of the recommended items (with scores and the modality gate weights), using
each item's picture where the catalogue has one and its title otherwise.

Example:

    results = recommender.recommend("u0001", k=8)
    write_contact_sheet(recommender, "u0001", results, "recs.png")
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mmrec.export.layout import VersionFiles

TILE = 120
CAPTION = 46
PER_ROW = 8


def _item_pictures(version_path: Path) -> np.ndarray | None:
    arrays = VersionFiles(version_path).item_features_dir / "arrays.npz"
    with np.load(arrays, allow_pickle=False) as stored:
        return stored["images"] if "images" in stored else None


def _tile(picture: np.ndarray | None, has_picture: bool, title: str,
          caption: str) -> Image.Image:
    tile = Image.new("RGB", (TILE, TILE + CAPTION), "white")
    draw = ImageDraw.Draw(tile)
    font = ImageFont.load_default()
    if picture is not None and has_picture:
        mode = "L" if picture.shape[-1] == 1 else "RGB"
        image = Image.fromarray(picture.squeeze(-1) if mode == "L" else picture, mode)
        tile.paste(image.convert("RGB").resize((TILE - 8, TILE - 8), Image.NEAREST), (4, 4))
    else:
        draw.rectangle([4, 4, TILE - 4, TILE - 4], outline="#999999")
        for line_number, line in enumerate(textwrap.wrap(title, 18)[:6]):
            draw.text((8, 10 + 14 * line_number), line, fill="black", font=font)
    for line_number, line in enumerate(textwrap.wrap(caption, 20)[:3]):
        draw.text((4, TILE + 2 + 14 * line_number), line, fill="black", font=font)
    return tile


def write_contact_sheet(recommender, user_id: str, results, path: str | Path) -> Path:
    """Draws the sheet for ``results`` of ``recommender.recommend(user_id)``."""
    state = recommender._version
    pictures = _item_pictures(state.path)
    with np.load(VersionFiles(state.path).item_features_dir / "arrays.npz") as stored:
        has_picture = stored["image_mask"] if "image_mask" in stored else None
    because = results[0].explanation.because if results else ()

    def tile_for(item_id: str, caption: str) -> Image.Image:
        index = state.item_index.get(item_id)
        picture = pictures[index] if pictures is not None and index is not None else None
        present = bool(has_picture[index]) if has_picture is not None and index is not None \
            else False
        return _tile(picture, present, recommender._title(state, item_id), caption)

    history_tiles = [tile_for(item, f"clicked, attention {weight:.0%}")
                     for item, _, weight in because]
    rec_tiles = [tile_for(r.item_id, f"#{n} {r.score:.3f} gate text {r.explanation.text_gate:.0%}"
                          f" / image {r.explanation.image_gate:.0%}")
                 for n, r in enumerate(results, 1)]
    rows = [history_tiles] if history_tiles else []
    rows += [rec_tiles[i:i + PER_ROW] for i in range(0, len(rec_tiles), PER_ROW)]
    header = 24
    sheet = Image.new("RGB", (PER_ROW * TILE, header + max(len(rows), 1) * (TILE + CAPTION)),
                      "#eeeeee")
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 6), f"user {user_id} - model version {state.number} - top: recent clicks, "
              "then recommendations", fill="black", font=ImageFont.load_default())
    for row_number, row in enumerate(rows):
        for column, tile in enumerate(row):
            sheet.paste(tile, (column * TILE, header + row_number * (TILE + CAPTION)))
    path = Path(path)
    sheet.save(path)
    return path
