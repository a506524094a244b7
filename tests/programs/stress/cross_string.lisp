; Issue 12: a 512 KB string (8192 numbered chunks of 63 characters, each followed by "|") sent
; from scheduler 1 to scheduler 0, whose sender is then idle; the receiver checks every chunk.
(def me (self))
(def chunk (i) (str "c" (+ 10000 i) "-abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123"))
(def chunks (list/map chunk (list/range 8192)))
(spawn-on 1 (fn () (send me (list 's (str (str/join "|" chunks) "|")))))
(def s (receive ((list 's v) v)))
(print (str/length s) (str/length (head chunks)) (== (str/split s "|") (append chunks (list ""))))
