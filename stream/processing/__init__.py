"""The worker's processing: the pipeline that hands each record to the handler of its kind,
the tables, and the cross-partition protocols of `identity/` and `erasure/`."""
