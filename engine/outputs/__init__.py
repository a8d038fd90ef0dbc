"""What leaves the lake as a file a person keeps or hands on: backups and their restore, table and
Nightscout exports, the clinic's AGP report."""
