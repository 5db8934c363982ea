"""/v1/documents: upload, list, read, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, UploadFile, status

from api.deps import get_service, get_tenant
from api.schemas import (
    DeleteResponse,
    DocumentList,
    DocumentOut,
    DocumentStatus,
    ErrorResponse,
    UploadResponse,
)
from indexing.indexer import IngestOutcome, Upload
from rag.errors import InvalidRequest, NotFound, PayloadTooLarge, RagError
from rag.service import Service

router = APIRouter(prefix="/v1/documents", tags=["documents"])

_ERRORS = {code: {"model": ErrorResponse} for code in (404, 413, 415, 422, 503)}


def _read_bounded(file: UploadFile, limit: int) -> bytes | RagError:
    """Read at most limit + 1 bytes so an oversized file is refused without holding all of it."""
    content = file.file.read(limit + 1)
    if len(content) > limit:
        return PayloadTooLarge(f"{file.filename}: larger than the limit of {limit} bytes")
    return content


def _status(outcome: IngestOutcome) -> DocumentStatus:
    return DocumentStatus(
        id=outcome.document.id if outcome.document else None,
        name=outcome.name,
        chunks=outcome.document.chunk_count if outcome.document else 0,
        status=outcome.status,
        error=outcome.error.message if outcome.error else None,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=UploadResponse, responses=_ERRORS)
def upload_documents(
    files: Annotated[list[UploadFile], File(description="one or more documents: PDF, HTML, DOCX, Markdown, text")],
    service: Annotated[Service, Depends(get_service)],
    tenant: Annotated[str, Depends(get_tenant)],
) -> UploadResponse:
    """Index each file; each gets its own status. If every file is rejected, the first rejection's 4xx."""
    limit = service.settings.max_files_per_request
    if len(files) > limit:
        raise InvalidRequest(f"{len(files)} files in one request; the limit is {limit}")
    outcomes: list[IngestOutcome | None] = []
    uploads: list[Upload] = []
    for file in files:
        name = file.filename or "unnamed"
        content = _read_bounded(file, service.settings.max_upload_bytes)
        if isinstance(content, RagError):
            outcomes.append(IngestOutcome(name, "rejected", error=content))
        else:
            outcomes.append(None)
            uploads.append(Upload(name, content, file.content_type))
    indexed = iter(service.indexer.add_many(uploads, tenant))
    results = [outcome or next(indexed) for outcome in outcomes]
    if all(r.status == "rejected" for r in results):
        raise next(r.error for r in results if r.error is not None)
    return UploadResponse(documents=[_status(r) for r in results])


@router.get("", response_model=DocumentList)
def list_documents(
    service: Annotated[Service, Depends(get_service)], tenant: Annotated[str, Depends(get_tenant)]
) -> DocumentList:
    return DocumentList(documents=[DocumentOut.of(r) for r in service.registry.list(tenant)])


@router.get("/{document_id}", response_model=DocumentOut, responses=_ERRORS)
def get_document(
    document_id: str,
    service: Annotated[Service, Depends(get_service)],
    tenant: Annotated[str, Depends(get_tenant)],
) -> DocumentOut:
    record = service.registry.get(tenant, document_id)
    if record is None:
        raise NotFound(f"no document {document_id}")
    return DocumentOut.of(record)


@router.delete("/{document_id}", response_model=DeleteResponse, responses=_ERRORS)
def delete_document(
    document_id: str,
    service: Annotated[Service, Depends(get_service)],
    tenant: Annotated[str, Depends(get_tenant)],
) -> DeleteResponse:
    if not service.indexer.delete(tenant, document_id):
        raise NotFound(f"no document {document_id}")
    return DeleteResponse(id=document_id)
