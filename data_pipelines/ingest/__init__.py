"""Crawled face-text ingestion: readers -> face pipeline -> dedup -> ArrayRecord shards + report."""
