"""The data layer: what a row must be, how files are read, validated, ingested and stored.

- :mod:`features.data.contracts` — the tables' contracts (columns, types, keys, row rules);
- :mod:`features.data.readers` — CSV / Parquet / JSONL (gzip too) read in bounded chunks;
- :mod:`features.data.validation` — rows checked against a contract: typed rows out,
  bad rows with every reason; :mod:`features.data.typed_columns` — one raw column read
  as its contract type; :mod:`features.data.json_columns` — the JSON columns as
  canonical text; :mod:`features.data.record_validation` — the same answer for a few
  posted records, without pandas' fixed costs;
- :mod:`features.data.adapters` — public logs (Taobao, REES46, MovieLens, Hillstrom …)
  mapped into the contracts;
- :mod:`features.data.ingest` — read, map, validate, dedupe, quarantine, commit;
- :mod:`features.data.store` — the embedded event store (Parquet by date, DuckDB) and its
  manifest; :mod:`features.data.locks` — the one-writer locks;
- :mod:`features.data.online_log` — events posted to the service, durable before they are
  acknowledged, compacted into the store.
"""
