"""Launchers: how compiled jobs run — here (``local``) or on SLURM through submitit (``slurm``, ``o2_cpu``,
``o2_gpu``). Both plan a sweep the same way (``plan.plan_sweep``): compose each job's config, compile it, drop
duplicates (a session-level step swept over videos runs once per session), and leave out items that are done,
blocked or already running."""
