"""Records in: the Nightscout source and its declared endpoints, CSV exports of other systems,
Extended JSON, validation, and the raw tables they land in."""
