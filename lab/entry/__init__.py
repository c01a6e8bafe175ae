"""Every `python -m` target of the engine: the processes that workers, Slurm and torchrun start.

They sit above everything they run (the queue, the launch layer, the progress views), so nothing
below imports them: a process is started by module name, never by import.
"""
