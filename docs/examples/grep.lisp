; A filter over standard input: print the lines that contain a pattern, then how many there
; were, to standard output and (with --allow-write) to a report file.
;
;   some-command | lispvm run docs/examples/grep.lisp ERROR
;   lispvm run --allow-write=/tmp docs/examples/grep.lisp ERROR /tmp/report.txt < app.log
;
; io/read-line waits for the next line (the scheduler runs other processes meanwhile) and
; gives nil at the end of the input. tests/test_io.py runs this.

(def pattern (head (sys/args)))

(def scan (n)
  (let ((line (io/read-line)))
    (cond ((nil? line) n)
          ((str/find line pattern) (print line) (scan (+ n 1)))
          (true (scan n)))))

(def n (scan 0))
(print n "matching")
(when (== (length (sys/args)) 2)
  (file/write (nth (sys/args) 1) (str n " lines matched " pattern "\n")))
