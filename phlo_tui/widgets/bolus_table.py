"""Each bolus of the window with what glucose did after it: before, after, the change, the low point, hypos."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Label

from engine.api.pages import BolusOutcome, ChartsSnapshot, DailyDose, automatic_share, daily_dose
from phlo_tui.widgets.glucose import MMOL_PER_MG, glucose_text

COLUMNS = ("bolus at", "U", "carbs", "before", "after", "change", "lowest", "low min", "hypo")
"""Short headers, so that all nine fit at 80 columns; the summary line above says what they hold."""


def _amount(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def signed_glucose(mg_dl: float | None, units: str) -> str:
    """A change of glucose with its sign: +32 mg/dL, -1.8 mmol/L."""
    if mg_dl is None:
        return "–"
    return f"{mg_dl * MMOL_PER_MG:+.1f}" if units == "mmol/L" else f"{mg_dl:+.0f}"


def bolus_row(bolus: BolusOutcome, units: str) -> tuple[str, ...]:
    """One table row, glucose in `units`; the change is after − before: a rise is +, a drop is −."""
    change = signed_glucose(None if bolus.reduction is None else -bolus.reduction, units)
    return (
        bolus.at.strftime("%m-%d %H:%M"),
        _amount(bolus.insulin_units),
        _amount(bolus.carbs_g),
        glucose_text(bolus.glucose_before, units),
        glucose_text(bolus.glucose_after, units),
        change,
        glucose_text(bolus.min_after, units),
        "" if bolus.minutes_to_min is None else f"{bolus.minutes_to_min:.0f}",
        "yes" if bolus.hypo_within_4h else "",
    )


def dose_line(dose: DailyDose | None) -> str:
    """The mean total daily dose and its parts, as a line of the summary; empty without basal."""
    if dose is None:
        return ""
    return (
        f"per day: bolus {dose.bolus_units:.1f} U + basal {dose.basal_units:.1f} U"
        f" = {dose.total_units:.1f} U total ({dose.basal_share:.0%} basal, {dose.days} d)\n"
    )


class BolusTable(Vertical):
    """The boluses newest first; a line of totals above, or 'no treatments yet'."""

    def compose(self) -> ComposeResult:
        yield Label("", id="bolus-summary")
        yield DataTable(id="bolus-rows", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*COLUMNS)

    def show(self, snapshot: ChartsSnapshot, units: str) -> None:
        table = self.query_one(DataTable)
        table.clear()
        summary = self.query_one("#bolus-summary", Label)
        boluses = snapshot.boluses
        if not boluses:
            summary.update("no treatments yet: each bolus and what glucose did after it appears here")
            return
        hypos = sum(1 for b in boluses if b.hypo_within_4h)
        changes = [-b.reduction for b in boluses if b.reduction is not None]
        mean = sum(changes) / len(changes) if changes else None
        if mean is None:
            moved = "no glucose after them yet"
        else:
            size = glucose_text(abs(mean), units)
            moved = f"glucose {'rose' if mean > 0 else 'dropped'} {size} {units} on average"
        share = automatic_share(snapshot.treatments)
        # Only a closed loop's site has automatic insulin: the others keep their two lines.
        loop = (
            "" if share is None else f"{share[1]:.0%} of the {share[0]:g} U automatic (SMBs, loop boluses)\n"
        )
        # Only a site with a profile (or temp basals) has a known basal, and so a total daily dose.
        dose = daily_dose(snapshot.treatments)
        summary.styles.height = 2 + (share is not None) + (dose is not None)
        summary.update(
            f"{len(boluses)} boluses · {moved} · {hypos} followed by a hypo in 4 h\n{loop}{dose_line(dose)}"
            "after = mean of hours 2–3 · change = after − before · low min = mins to lowest"
        )
        for i, bolus in enumerate(boluses):
            table.add_row(*bolus_row(bolus, units), key=str(i))
