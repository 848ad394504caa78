"""The continual loop: one method, one seed, stage after stage on the engine (scheduler),
its stage checkpoints, the class-incremental head bookkeeping, and the loggers' metrics."""
