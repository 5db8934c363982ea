"""Server mode's one PostgreSQL database: the connection pool every store shares and the versioned schema
(yoyo migrations under ``migrations/``, applied by ``rag db upgrade``)."""
