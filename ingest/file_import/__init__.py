"""Migration import file (`billing load FILE`): master data, tariffs, reads and payments
from one JSON document, validated record by record, idempotent, in one transaction.

The format is documented in docs/import-format.md.
"""

from ingest.file_import.document import check_document, import_document, import_file
from ingest.file_import.report import ImportReport, Rejection, SectionCounts

__all__ = [
    "ImportReport",
    "Rejection",
    "SectionCounts",
    "check_document",
    "import_document",
    "import_file",
]
