; bench_io: count the lines of a file that contain a pattern, reading the file with file/lines
; args: PATH PATTERN [lines-only]
; prints: COUNT MS-TO-READ MS-TO-COUNT (timed inside the program: start-up not counted)
(def path (head (sys/args)))
(def pattern (nth (sys/args) 1))
(def count-matches (lines)
  (loop ((ls lines) (n 0))
    (if (nil? ls) n
        (recur (tail ls) (if (str/find (head ls) pattern) (+ n 1) n)))))
(def t0 (now-ms))
(def lines (file/lines path))
(def t1 (now-ms))
(def n (if (== (length (sys/args)) 3) (length lines) (count-matches lines)))
(def t2 (now-ms))
(print n (- t1 t0) (- t2 t1))
