"""The one surface the command line and the dashboard use: the `Engine` facade, its typed reads, and
`FastReader`, the light reader that answers the same reads without loading pyiceberg."""
