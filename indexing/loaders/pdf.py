"""PDF (pypdfium2): one section per page."""

from __future__ import annotations

import pypdfium2 as pdfium

from indexing.loaders.common import Assembler, wrap_errors
from rag.errors import UnprocessableDocument
from rag.types import ParsedDocument

# pdfium's load error codes (FPDF_ERR_*) the caller can act on.
_PDF_LOAD_ERRORS = {
    3: "not a valid PDF (corrupt or truncated: pdfium cannot read its structure)",
    4: "password-protected PDF (encrypted; remove the password and upload it again)",
    5: "encrypted PDF with an unsupported security handler",
}


def _open_pdf(filename: str, content: bytes) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(content)
    except pdfium.PdfiumError as exc:
        reason = _PDF_LOAD_ERRORS.get(getattr(exc, "err_code", None) or 0)
        if reason is None:
            raise
        raise UnprocessableDocument(f"{filename}: {reason}") from exc


@wrap_errors("PDF")
def load_pdf(filename: str, content: bytes) -> ParsedDocument:
    """One section per page; pages without a text layer contribute nothing."""
    pdf = _open_pdf(filename, content)
    try:
        assembler = Assembler()
        for index in range(len(pdf)):
            assembler.section(None, page=index + 1)
            assembler.block(_pdf_page_text(pdf, index))
        title = pdf.get_metadata_value("Title")
    finally:
        pdf.close()
    if assembler.empty:
        raise UnprocessableDocument(f"{filename}: no extractable text (scanned PDF?)")
    return assembler.document(filename, title)


def _pdf_page_text(pdf: pdfium.PdfDocument, index: int) -> str:
    page = pdf[index]
    try:
        textpage = page.get_textpage()
        try:
            return textpage.get_text_range()
        finally:
            textpage.close()
    finally:
        page.close()
