"""The report layer: tables (:mod:`.tables`), charts (:mod:`.charts`), the claims tested
(:mod:`.claims`), the methods section (:mod:`.methods`) and the book build (:mod:`.book`).
Reads results through the experiment layer; nothing below imports it."""
