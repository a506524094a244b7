; The builtins that are written in Lisp. Each of them calls back into Lisp code, so it must run
; on the VM (preemptible at its reduction budget, frames as data, no Python recursion). Compiled
; into vm/prelude.lbc by `python -m lispvm.assembler.prelude`; a test checks that the two agree.
; Names starting with sys/ are internal helpers.

(def sys/map-loop (f xs acc)
  (if (empty? xs) (reverse acc) (sys/map-loop f (tail xs) (cons (f (head xs)) acc))))
(def list/map (f xs) (sys/map-loop f xs nil))

(def sys/filter-loop (pred xs acc)
  (if (empty? xs)
      (reverse acc)
      (sys/filter-loop pred (tail xs) (if (pred (head xs)) (cons (head xs) acc) acc))))
(def list/filter (pred xs) (sys/filter-loop pred xs nil))

(def list/reduce (f acc xs)
  (if (empty? xs) acc (list/reduce f (f acc (head xs)) (tail xs))))

(def apply (f & args) (apply f (sys/spread args)))

(def recv () (receive (m m)))

(def timer/sleep (ms) (receive (after (sys/sleep-ms ms) nil)))  ; the check names timer/sleep
