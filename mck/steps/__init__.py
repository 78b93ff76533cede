"""Step adapters: the thin shell between the config compiler and the pure numeric cores.

A step is two files: ``conf/step/NAME.yaml`` (the schema below) and ``mck/steps/NAME.py`` with a function
``run(...)`` (``wrap_params.func_path`` names it, default ``mck.steps.NAME.run``).

The runner calls ``run`` with ``func_args`` and ``func_kwargs`` bound **by name**, plus any of these that ``run``
declares as parameters:

``output_path``  str, absolute: where the primary output (``output_info.output_name``) must be written. Write it
                 atomically (``mck.io.atomic_path`` / ``save_npy`` / ``save_h5``): its existence means *done*.
``item``         str: the work item's name (video ``SESSION.CAMERA``, session, calibration or project name),
                 for error messages.
``log``          ``logging.Logger`` for progress messages (goes to the job's log file).

``run`` returns ``None`` or a dict of JSON-serialisable metrics (frames/s, RMS, device, …) that the runner stores
in the job record. Bad input raises ``mck.errors.InputError(what, item=..., path=..., fix=...)``; a failure that is
not the user's input raises ``mck.errors.StepError``. Long steps checkpoint next to ``output_path`` (e.g.
``output_path + '.checkpoint.npz'``) and resume from it; ``mck.runtime.stop_requested()`` turns true when SLURM
signals an imminent time limit, so a step can write its checkpoint and return early by raising
``mck.runtime.Preempted``.
"""
