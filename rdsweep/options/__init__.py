"""Every option of every config group. Each module here lists its options in `OPTIONS`
(rdsweep.option.Option) beside their implementation; rdsweep.registry collects them all, so a new
option is a new module here (or a new entry in one) plus its test."""
