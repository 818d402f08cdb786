"""All file and stream I/O: readers of scan formats, Parquet/metadata writers, scanner target lists.

Stages never touch files; the CLI calls these functions around them.
"""
