"""Asset checks: every stage checks what it wrote, with a severity chosen on purpose.

Checks are declared on the asset and evaluated by it, over the days the run materialized, so an
ERROR check that fails blocks the stages after it in the same run. (Partitioned asset checks are
a preview feature in this Dagster release; the days a result covers are in its metadata.)

Each failing check says what failed, how much, and shows a few offending rows.
"""
