"""Tools that keep the documentation in step with the results: `headline` copies the study's
generated difference tables into the README."""
