"""A stand-in Nightscout site for the demo and the tests (not a pipeline stage): the HTTP server, its
closed-loop uploaders, and the Clarity and LibreView files it writes."""
