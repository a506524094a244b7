; A log pipeline with ports: `cat` reads the log, a counter process tallies the WARN and ERROR
; lines per service, and `sort` puts the report in order.
;
;   lispvm run --allow-run=cat,sort docs/examples/log_pipeline.lisp app.log
;
; Log lines look like "2026-12-07T10:00:00 ERROR db request 42". Each stage is a process: the
; reader owns the `cat` port and passes lines on as messages; the counter keeps a map; the last
; stage writes the counts to `sort`'s standard input, closes it, and prints what comes back.
; tests/test_ports.py runs this on a generated log.

(def path (head (sys/args)))

(def reader (fn (counter)
  (let ((src (port/open "cat" (list path))))
    (let ((pump (fn (pump)
                  (receive
                    ((list 'port p (list 'line text)) :when (== p src)
                     (send counter (list 'line text))
                     (pump pump))
                    ((list 'port p (list 'exit status)) :when (== p src)
                     (send counter (list 'end status)))))))
      (pump pump)))))

(def counter (fn (counts n report)
  (receive
    ((list 'line text)
     (let ((fields (str/split text " ")))
       (if (and (>= (length fields) 3) (not (== (nth fields 1) "INFO")))
           (let ((key (str (nth fields 2) " " (nth fields 1))))
             (counter (map/put counts key (+ 1 (or (map/get counts key) 0))) (+ n 1) report))
           (counter counts (+ n 1) report))))
    ((list 'end status)
     (send report (list 'counts counts n status))))))

(def me (self))
(spawn reader (spawn counter {} 0 me))

(receive
  ((list 'counts counts n status)
   (when (!= status 0) (error (str "cat exited with status " status)))
   (print "lines read:" n)
   (let ((sorter (port/open "sort" nil)))
     (list/map (fn (kv) (port/send sorter (str (head kv) " " (nth kv 1) "\n"))) (map/to-list counts))
     (port/close sorter)
     (let ((show (fn (show)
                   (receive
                     ((list 'port p (list 'line text)) :when (== p sorter) (print text) (show show))
                     ((list 'port p (list 'exit 0)) :when (== p sorter) nil)))))
       (show show)))))
