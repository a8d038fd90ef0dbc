"""What each page shows, read from the engine facade into frozen snapshots; workers call the loaders,
renderers read the snapshots and do no I/O."""

from engine.api.pages.charts import ChartsSnapshot, DayMetrics, HourProfile, load_charts
from engine.api.pages.overview import BandShares, OverviewSnapshot, Reading, load_overview
from engine.api.pages.pipeline import (
    BranchesSnapshot,
    QualitySnapshot,
    QuarantinedRow,
    RunsSnapshot,
    load_branches,
    load_quality,
    load_runs,
    tail_run_log,
)
from engine.api.pages.status import PipelineStatus, existing_tables, load_status
from engine.api.pages.treatments import (
    BolusOutcome,
    DailyDose,
    DayTreatments,
    TreatmentMark,
    automatic_share,
    daily_dose,
)

__all__ = [
    "BandShares",
    "BolusOutcome",
    "BranchesSnapshot",
    "ChartsSnapshot",
    "DailyDose",
    "DayMetrics",
    "DayTreatments",
    "HourProfile",
    "OverviewSnapshot",
    "PipelineStatus",
    "QualitySnapshot",
    "QuarantinedRow",
    "Reading",
    "RunsSnapshot",
    "TreatmentMark",
    "automatic_share",
    "daily_dose",
    "existing_tables",
    "load_branches",
    "load_charts",
    "load_overview",
    "load_quality",
    "load_runs",
    "load_status",
    "tail_run_log",
]
