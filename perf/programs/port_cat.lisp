; perf/bench_port.py: N lines through `cat` (a port) and back as (port p (line text)) messages.
; lispvm run --allow-run=cat perf/programs/port_cat.lisp N [messages]  -> prints N and the
; milliseconds taken (from port/open to cat's exit message): a sender process writes the lines
; 100 at a time (the text made beforehand), the main process counts the line messages.
; With `messages`, no port: a process sends the main process the same N messages itself
; (what the Lisp side costs without the pipes).
(def n (parse-int (head (sys/args))))
(def batch 100)
(def chunk (fn (from) (str/join "" (list/map (fn (i) (str i "\n")) (list/range from (min n (+ from batch)))))))
(def chunks (list/map chunk (list/range 0 n batch)))  ; the text is made before the clock starts
(def count (fn (k)
  (receive
    ((list 'port _ (list 'line _)) (count (+ k 1)))
    ((list 'port _ (list 'exit 0)) k))))
(def floor (> (length (sys/args)) 1))
(def lines (if floor (list/map (fn (i) (str i)) (list/range n)) nil))
(def t0 (now-ms))
(if floor
    (let ((me (self)))
      (spawn (fn ()
        (list/map (fn (line) (send me (list 'port me (list 'line line)))) lines)
        (send me (list 'port me (list 'exit 0))))))
    (let ((cat (port/open "cat" nil)))
      (spawn (fn ()
        (list/map (fn (text) (port/send cat text)) chunks)
        (port/close cat)))))
(print (count 0))
(print (- (now-ms) t0))
