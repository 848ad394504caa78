"""Tools around a run: the step-time benchmark (perf), the GPU self-check (gpu_check) and
the host fingerprint (fingerprint). Each is a command with the run's discipline."""
