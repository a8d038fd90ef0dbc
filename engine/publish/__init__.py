"""Main's marts out to PostgreSQL: the publisher, its binary COPY encoder, the target, and the
private PostgreSQL cluster."""
