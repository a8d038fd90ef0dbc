-- The consensus figures of a set of readings, written once for the gold models and the reads
-- (docs/metrics.md says where each comes from).
-- gmi_pct(mean): Glucose Management Indicator, % (Bergenstal 2018), from the mean in mg/dL.
create or replace macro gmi_pct(mean_mg_dl) as 3.31::double + 0.02392::double * mean_mg_dl;
-- cv_pct(sd, mean): coefficient of variation, %: the sample SD over the mean.
create or replace macro cv_pct(sd_mg_dl, mean_mg_dl) as 100.0::double * sd_mg_dl / mean_mg_dl;
-- gri(...): Glycemia Risk Index (Klonoff 2022) from the % of readings in each band: very low x 3.0,
-- low x 2.4, very high x 1.6, high x 0.8, at most 100.
create or replace macro gri(very_low_pct, low_pct, high_pct, very_high_pct) as
    least(
        3.0::double * very_low_pct + 2.4::double * low_pct + 1.6::double * very_high_pct + 0.8::double * high_pct,
        100.0::double
    );
