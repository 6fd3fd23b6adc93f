"""The `table` input format: parquet or arrow tables of image bytes, read with pyarrow one record batch at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from clip_aesthetics.errors import ScoringInputError
from clip_aesthetics.scoring.samples import RESERVED, InputReader, Sample

TABLE_SUFFIXES = (".parquet", ".pq", ".arrow")
BATCH_ROWS = 256  # table rows per record batch: bounded memory


def image_column_of(schema, path: str, asked: str = "") -> str:
    """The column of image bytes: the one named, else the first binary or {bytes, path} struct column."""
    import pyarrow as pa

    def is_bytes(kind) -> bool:
        return (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)
                or (pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0))

    if asked:
        if asked not in schema.names:
            raise ScoringInputError(f"{path}: no column {asked!r} (--image-column); the table's columns are "
                                    f"{', '.join(schema.names)}")
        kind = schema.field(asked).type
        if not is_bytes(kind):
            raise ScoringInputError(f"{path}: column {asked!r} holds {kind}, not image bytes; a table scored here must "
                                    "carry the images' bytes (binary, or a {bytes, path} struct). For file names or "
                                    "URLs, fetch the images first and score the files or folders")
        return asked
    for column in schema:
        if is_bytes(column.type):
            return column.name
    text = [c.name for c in schema if pa.types.is_string(c.type) or pa.types.is_large_string(c.type)]
    hint = (f"; its text columns ({', '.join(text[:5])}) cannot be scored as images: for file names or URLs, fetch the "
            "images first and score the files or folders") if text else ""
    raise ScoringInputError(f"{path}: no column of image bytes (binary, or a {{bytes, path}} struct) among "
                            f"{', '.join(schema.names)}{hint}")


def open_table(path: str, image_column: str = ""):
    """(schema, batches, image column) of a parquet or arrow file; ArrowException/OSError when it is damaged."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if str(path).lower().endswith(".arrow"):
        reader = pa.ipc.open_file(pa.memory_map(path))
        schema, batches = reader.schema, (reader.get_batch(i) for i in range(reader.num_record_batches))
    else:
        parquet = pq.ParquetFile(path)
        schema, batches = parquet.schema_arrow, parquet.iter_batches(batch_size=BATCH_ROWS)
    return schema, batches, image_column_of(schema, path, image_column)


def read_table(path: str, image_column: str = "", name: str | None = None) -> Iterator[Sample]:
    """The rows of a parquet (or arrow) table, one record batch at a time; `image_column`'s bytes are the image.

    A `key` column (img2dataset writes one) is the sample's key; otherwise `<file>#<row>`. Every row carries its
    1-based `row` number."""
    import pyarrow as pa

    name = name or Path(path).name
    try:
        schema, batches, column = open_table(path, image_column)
    except (pa.ArrowException, OSError) as error:
        yield Sample(name, error=f"unreadable or damaged table ({type(error).__name__}: {error})")
        return
    carried = [f.name for f in schema if f.name != column and not pa.types.is_binary(f.type)
               and not pa.types.is_large_binary(f.type) and not pa.types.is_nested(f.type)]
    has_key = "key" in carried
    row = 0
    try:
        for batch in batches:
            images = batch.column(column).to_pylist()
            others = {c: batch.column(c).to_pylist() for c in carried}
            for k, value in enumerate(images):
                row += 1
                own_key = others["key"][k] if has_key else None
                sample = Sample(f"{name}#{row}" if own_key is None else str(own_key),
                                carried={"row": row, **{(f"table_{c}" if c in RESERVED else c):
                                                        (None if others[c][k] is None else str(others[c][k]))
                                                        for c in carried if c != "key"}})
                if isinstance(value, dict):
                    value = value.get("bytes")
                if value is None:
                    sample.error = "no image in this row (null)"
                elif not value:
                    sample.error = "empty image data"
                else:
                    sample.image = bytes(value)
                yield sample
    except (pa.ArrowException, OSError) as error:
        yield Sample(f"{name}#end", error=f"table cut off or damaged after {row} row(s) "
                     f"({type(error).__name__}: {error})")


TABLES = InputReader(TABLE_SUFFIXES, lambda path, image_column="", keep_members=False, name=None:
                     read_table(path, image_column, name),
                     "parquet or arrow tables with a column of image bytes (binary, or a {bytes, path} struct)")
