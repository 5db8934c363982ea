"""/v1/documents: upload, list, read, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, UploadFile, status
from fastapi.responses import JSONResponse

from api.deps import get_service, get_tenant, rate_limited
from api.schemas import (
    ChunkPlan,
    DeleteResponse,
    DocumentList,
    DocumentOut,
    DocumentStatus,
    ErrorResponse,
    FileEstimate,
    UploadEstimate,
    UploadResponse,
)
from indexing.indexer import Estimate, IngestOutcome, Upload
from rag.errors import InvalidRequest, NotFound, PayloadTooLarge, RagError
from rag.service import Service

router = APIRouter(prefix="/v1/documents", tags=["documents"])

_ERRORS = {code: {"model": ErrorResponse} for code in (404, 413, 415, 422, 429, 503)}


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


def _estimate(estimate: Estimate) -> FileEstimate:
    return FileEstimate(
        name=estimate.name,
        status=estimate.status,
        document_id=estimate.document.id if estimate.document else None,
        chunks=[
            ChunkPlan(index=c.index, start=c.start, end=c.end, token_count=c.token_count, heading=c.heading, page=c.page)
            for c in estimate.chunks
        ],
        tokens=sum(c.token_count for c in estimate.chunks),
        embedding_tokens=estimate.embedding_tokens,
        error=estimate.error.message if estimate.error else None,
    )


def _dry_run(estimates: list[Estimate], tokens_per_second: float | None) -> JSONResponse:
    files = [_estimate(e) for e in estimates]
    new = [f for f in files if f.status == "new"]
    embedding_tokens = sum(f.embedding_tokens for f in new)
    body = UploadEstimate(
        documents=files,
        chunks=sum(len(f.chunks) for f in new),
        tokens=sum(f.tokens for f in new),
        embedding_tokens=embedding_tokens,
        embedding_seconds=round(embedding_tokens / tokens_per_second, 2) if tokens_per_second else None,
        embedding_cost_usd=0.0,
    )
    return JSONResponse(status_code=status.HTTP_200_OK, content=body.model_dump())


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadResponse,
    responses={**_ERRORS, 200: {"model": UploadEstimate, "description": "with dry_run: what an upload would do"}},
    dependencies=[Depends(rate_limited("upload"))],
)
def upload_documents(
    files: Annotated[list[UploadFile], File(description="one or more documents: PDF, HTML, DOCX, Markdown, text")],
    service: Annotated[Service, Depends(get_service)],
    tenant: Annotated[str, Depends(get_tenant)],
    dry_run: Annotated[
        bool, Query(description="parse and chunk only: report the chunks, tokens and embedding time, write nothing")
    ] = False,
) -> UploadResponse | JSONResponse:
    """Index each file; each gets its own status. If every file is rejected, the first rejection's 4xx.
    With ``dry_run``, 200 and what the upload would do (each file's chunks, the tokens to embed and how long
    that takes at this process's measured speed), nothing written."""
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
    if dry_run:
        planned = iter(service.indexer.estimate_many(uploads, tenant))
        estimates = [next(planned) if o is None else Estimate(o.name, "rejected", error=o.error) for o in outcomes]
        return _dry_run(estimates, service.indexer.embedding_tokens_per_second)
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
