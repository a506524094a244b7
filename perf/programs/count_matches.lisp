; bench_io: count the lines of a file that contain a pattern
; args: PATH PATTERN [lines-only | stream]
; prints: COUNT MS-TO-READ MS-TO-COUNT (timed inside the program: start-up not counted)
; By default the file is read whole with file/lines, then counted; with `stream` it is read a
; batch of lines at a time with file/open and file/read-lines (the next batch is read while
; this one is counted), and the whole time is in MS-TO-COUNT. The counting loop is the same.
(def path (head (sys/args)))
(def pattern (nth (sys/args) 1))
(def mode (if (> (length (sys/args)) 2) (nth (sys/args) 2) "count"))
(def count-matches (lines n)
  (loop ((ls lines) (n n))
    (if (nil? ls) n
        (recur (tail ls) (if (str/find (head ls) pattern) (+ n 1) n)))))
(def count-file (f)
  (loop ((n 0))
    (let ((lines (file/read-lines f)))
      (if (nil? lines) n (recur (count-matches lines n))))))
(def t0 (now-ms))
(def lines (if (== mode "stream") nil (file/lines path)))
(def t1 (now-ms))
(def n (cond ((== mode "lines-only") (length lines))
             ((== mode "stream") (count-file (file/open path)))
             (true (count-matches lines 0))))
(def t2 (now-ms))
(print n (- t1 t0) (- t2 t1))
