"""lispvm.scheduler: schedulers, the node of OS processes, the device process, tracing, the command."""
