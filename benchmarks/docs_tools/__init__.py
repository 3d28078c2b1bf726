"""Tools that keep the documentation in step with the results: `doc_tables` copies generated
result tables into the README and docs."""
