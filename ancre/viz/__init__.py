"""``ancre viz``: figures and a report of a run's learned topology, without torch.

Everything here reads run folders and topology snapshots with json, numpy and
matplotlib (Agg backend) alone, so a copied run folder can be inspected on a laptop.

Modules, one job each:

    run_data     run folder -> snapshots and metrics records
    statistics   per-block statistics of a connection matrix; the CSV
    curves       loss series and steps_to_reach (pure functions)
    canvas       Agg figures, shared colour scales, saving
    heatmap      the matrix as a heatmap; small multiples over training
    animation    the matrix over all snapshots as GIF or MP4
    wiring       blocks on a line, strongest connections as arcs
    statplots    per-block statistics against depth and over training
    losses       loss curves of one or several runs
    html         the self-contained report.html
    report       writes all of the above for one run
    commands     the ``ancre viz`` subcommand
"""
