"""The clinic report: the one-page AGP report of a period as PDF or PNG (`phlo-tui report`, the dashboard's `e`).

`period` resolves the days, `data` reads the figures (nothing heavy), `render` draws them with matplotlib
(imported only when a report is written), `export` writes the files.
"""
