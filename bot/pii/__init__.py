"""Personal-data detection: spoken-form normalisation and recognisers for the redactor."""
