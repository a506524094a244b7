; Issue 12: a process on scheduler 1 prints 10,000 lines of 100 characters; every line must reach
; the output before the main process, told by a monitor that the printer ended, prints the last.
(def pad "........................................................................................")
(def printer (i n) (if (< i n) (do (print (str "line " (+ 100000 i) " " pad)) (printer (+ i 1) n)) 'ok))
(def p (spawn-on 1 printer 0 10000))
(def r (monitor p))
(print (receive ((list 'DOWN ref _ why) :when (== ref r) (list 'printer-ended why))))
