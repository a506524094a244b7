; bench_startup.py: the smallest useful program, one line of output.
(print "hello")
