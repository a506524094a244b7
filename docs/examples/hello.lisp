; hello.lisp: a first program. Run it with `lispvm run docs/examples/hello.lisp`.
(def greet (who) (str "hello, " who))
(print (greet "world"))

; processes: a worker per element, results collected in order
(def square-worker (parent x) (send parent (list (self) (* x x))))
(def me (self))
(def pids (list/map (fn (x) (spawn square-worker me x)) (list/range 1 6)))
(print (list/map (fn (p) (receive ((list q v) :when (== q p) v))) pids))
