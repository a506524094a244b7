; The builtins that are written in Lisp. Each of them calls back into Lisp code, so it must run
; on the VM (preemptible at its reduction budget, frames as data, no Python recursion). Compiled
; into vm/prelude.lbc by `python -m lispvm.assembler.prelude`; a test checks that the two agree.
; Names starting with sys/ are internal helpers.

(def sys/map-loop (f xs acc)
  (if (empty? xs) (reverse acc) (sys/map-loop f (tail xs) (cons (f (head xs)) acc))))
; a builtin that only computes a value (sys/native-fn?) is applied in one Python loop instead
(def list/map (f xs)
  (cond ((sys/native-fn? f) (sys/map-native f xs))
        ((fn? f) (sys/map-loop f xs nil))
        (true (sys/expected "list/map" "a function" f))))

(def sys/filter-loop (pred xs acc)
  (if (empty? xs)
      (reverse acc)
      (sys/filter-loop pred (tail xs) (if (pred (head xs)) (cons (head xs) acc) acc))))
(def list/filter (pred xs)
  (cond ((sys/native-fn? pred) (sys/filter-native pred xs))
        ((fn? pred) (sys/filter-loop pred xs nil))
        (true (sys/expected "list/filter" "a function" pred))))

(def sys/reduce-loop (f acc xs)
  (if (empty? xs) acc (sys/reduce-loop f (f acc (head xs)) (tail xs))))
(def list/reduce (f acc xs)
  (cond ((sys/native-fn? f) (sys/reduce-native f acc xs))
        ((fn? f) (sys/reduce-loop f acc xs))
        (true (sys/expected "list/reduce" "a function" f))))

(def apply (f & args) (apply f (sys/spread args)))

(def recv () (receive (m m)))

(def timer/sleep (ms) (receive (after (sys/sleep-ms ms) nil)))  ; the check names timer/sleep

; --- sorting by a key and updating a map (LANGUAGE.md section 9; the rest is in vm/builtins.py) --
(def list/sort-by (f xs)
  (cond ((not (fn? f)) (sys/expected "list/sort-by" "a function" f))
        ((not (list? xs)) (sys/expected "list/sort-by" "a list" xs))
        (true (sys/sort-keyed (list/map (fn (x) (cons (f x) x)) xs)))))

(def map/update (m k f default)
  (cond ((not (map? m)) (sys/expected "map/update" "a map" m))
        ((not (fn? f)) (sys/expected "map/update" "a function" f))
        (true (map/put m k (f (map/get m k default))))))

; --- servers and supervisors (LANGUAGE.md section 12; docs/servers.md) -----------------------
; A call is (gen/call (caller monitor-ref) request); its reply is delivered only while the caller
; still monitors the server with that ref (kernel's "reply" signal), so a caller that gave up
; (timeout) demonitors and flushes, and no late reply can reach its mailbox afterwards.

(def sys/fail (kind text) (sys/raise (list 'error kind text)))
; a prelude builtin's argument of the wrong kind: "WHO: expected WHAT, got integer 5"
(def sys/expected (who what x) (sys/fail 'badarg (str who ": expected " what ", got " (sys/describe x))))

(def sys/server-pid (who server)
  (cond ((pid? server) server)
        ((symbol? server) (whereis server))
        (true (sys/fail 'badarg (str who ": expected a pid or a registered name, got " (repr server))))))

(def sys/check-fn (who what f)
  (if (fn? f) f (sys/fail 'badarg (str who ": " what " must be a function, got " (repr f)))))

(def gen/start (init handler & args)
  (sys/check-fn "gen/start" "init" init)
  (sys/check-fn "gen/start" "the handler" handler)
  (let ((pr (sys/spawn-link-monitor sys/gen-init (self) init handler args))
        (pid (head pr))
        (ref (head (tail pr))))
    (receive
      ((list 'gen/started p) :when (== p pid) (sys/demonitor-flush ref) pid)
      ((list 'DOWN r _ reason) :when (== r ref) (sys/init-failed "gen/start" reason)))))

(def sys/init-failed (who reason)
  (if (sys/tagged? reason 'error 3)
      (sys/raise reason)
      (sys/fail 'noproc (str who ": the server ended during its init with reason " (repr reason)))))

(def sys/gen-init (parent init handler args)
  (let ((state (apply init args)))
    (send parent (list 'gen/started (self)))
    (sys/gen-loop handler state)))

(def sys/gen-loop (handler state)
  (receive
    ((list 'gen/call from req) (sys/gen-next handler from (handler 'call req from state)))
    ((list 'gen/cast msg) (sys/gen-next handler nil (handler 'cast msg nil state)))
    (msg (sys/gen-next handler nil (handler 'info msg nil state)))))

(def sys/gen-next (handler from result)
  (cond ((sys/tagged? result 'reply 3)
         (if from (gen/reply from (nth result 1)) nil)
         (sys/gen-loop handler (nth result 2)))
        ((sys/tagged? result 'noreply 2) (sys/gen-loop handler (nth result 1)))
        ((sys/tagged? result 'stop 3) (exit (nth result 1)))
        ((sys/tagged? result 'stop 4)
         (if from (gen/reply from (nth result 2)) nil)
         (exit (nth result 1)))
        (true (sys/raise (list 'error 'badarg
                               (str "gen: the handler returned " (repr result)
                                    ", not (reply value state), (noreply state) or (stop reason state)"))
                         handler))))

(def gen/call (server request & opt)
  (let ((timeout (if (empty? opt) 5000 (head opt)))
        (pid (sys/server-pid "gen/call" server)))
    (cond ((> (length opt) 1)
           (sys/fail 'badarity (str "gen/call takes 2 to 3 arguments, got " (+ 2 (length opt)))))
          ((not (or (and (number? timeout) (>= timeout 0)) (== timeout 'infinity)))
           (sys/fail 'badarg (str "gen/call: the timeout must be a number of milliseconds >= 0 or infinity, got "
                                  (repr timeout))))
          ((nil? pid) (sys/fail 'noproc (str "gen/call: no process is registered as " server)))
          ((== pid (self)) (sys/fail 'badarg "gen/call: a server cannot call itself"))
          (true (sys/call pid request timeout)))))

(def sys/call (pid request timeout)
  (let ((ref (monitor pid)))
    (send pid (list 'gen/call (list (self) ref) request))
    (receive
      ((list r v) :when (== r ref) (sys/demonitor-flush ref) v)
      ((list 'DOWN r _ reason) :when (== r ref)
       (sys/fail 'noproc (if (== reason 'noproc)
                             (str "gen/call: the server " pid " is not alive")
                             (str "gen/call: the server " pid " ended with reason " (repr reason)
                                  " before replying"))))
      (after timeout
        (sys/demonitor-flush ref)
        (sys/fail 'timeout (str "gen/call: no reply from " pid " within " timeout " ms"))))))

(def gen/cast (server msg)
  (let ((pid (sys/server-pid "gen/cast" server)))
    (if pid (send pid (list 'gen/cast msg)) nil)
    true))

; A supervisor is a gen server that traps exits. Its state:
; (strategy intensity period children restart-times parent), each child (id start restart pid).

(def sup/start (strategy intensity period children)
  (sys/sup-check strategy intensity period children)
  (gen/start sys/sup-init sys/sup-handle strategy intensity period children (self)))

(def sup/children (sup)
  (let ((pid (sys/server-pid "sup/children" sup))
        (r (cond ((nil? pid) (sys/fail 'noproc (str "sup/children: no process is registered as " sup)))
                 ((== pid (self)) (sys/fail 'badarg "sup/children: a supervisor cannot ask itself"))
                 (true (sys/call pid 'sup/children 5000)))))
    ; a supervisor's answer is tagged: any other server's reply to the same request is refused
    (if (sys/tagged? r 'sup/children 2)
        (nth r 1)
        (sys/fail 'badarg (str "sup/children: " (repr sup) " is not a supervisor")))))

(def sys/sup-check (strategy intensity period children)
  (cond ((not (or (== strategy 'one-for-one) (== strategy 'one-for-all)))
         (sys/fail 'badarg (str "sup/start: the strategy must be one-for-one or one-for-all, got " (repr strategy))))
        ((not (and (int? intensity) (>= intensity 0)))
         (sys/fail 'badarg (str "sup/start: the intensity must be an integer >= 0, got " (repr intensity))))
        ((not (and (number? period) (> period 0)))
         (sys/fail 'badarg (str "sup/start: the period must be a number of milliseconds > 0, got " (repr period))))
        ((not (list? children))
         (sys/fail 'badarg (str "sup/start: the children must be a list, got " (repr children))))
        (true (sys/sup-check-children children nil))))

(def sys/sup-check-children (children ids)
  (if (empty? children)
      true
      (let ((c (head children)))
        (cond ((not (and (list? c) (== (length c) 3)))
               (sys/fail 'badarg (str "sup/start: a child must be (list id start restart), got " (repr c))))
              ((not (fn? (nth c 1)))
               (sys/fail 'badarg (str "sup/start: the start of child " (repr (head c)) " must be a function, got "
                                      (repr (nth c 1)))))
              ((not (list/contains? (nth c 2) '(permanent transient temporary)))
               (sys/fail 'badarg (str "sup/start: the restart of child " (repr (head c))
                                      " must be permanent, transient or temporary, got " (repr (nth c 2)))))
              ((list/contains? (head c) ids)
               (sys/fail 'badarg (str "sup/start: two children have the id " (repr (head c)))))
              (true (sys/sup-check-children (tail children) (cons (head c) ids)))))))

(def sys/sup-init (strategy intensity period specs parent)
  (trap-exit true)
  (list strategy intensity period (sys/sup-start-all (list/map (fn (c) (append c (list nil))) specs) nil)
        nil parent))

; Start each child in order; if one fails, stop those started and raise its error.
(def sys/sup-start-all (todo done)
  (if (empty? todo)
      (reverse done)
      (let ((c (head todo))
            (r (sys/sup-start-child c)))
        (if (== (head r) 'ok)
            (sys/sup-start-all (tail todo) (cons (sys/child-pid c (nth r 1)) done))
            (do (sys/sup-stop-all done)
                (sys/raise (nth r 1) (nth c 1)))))))  ; reported at the start function

(def sys/child-pid (c pid) (list (nth c 0) (nth c 1) (nth c 2) pid))

; (ok pid) or (error reason); a start function must return a pid.
(def sys/sup-start-child (c)
  (try
    (let ((pid ((nth c 1))))
      (if (pid? pid)
          (list 'ok pid)
          (list 'error (list 'error 'badarg (str "sup: the start function of child " (repr (head c))
                                                  " returned " (repr pid) ", not a pid")))))
    (catch e (list 'error e))))

; Stop children (a list, last started first): shutdown, and kill after 5 seconds.
(def sys/sup-stop-all (children)
  (list/map (fn (c) (if (nth c 3) (sys/sup-stop (nth c 3)) nil)) children)
  nil)

(def sys/sup-stop (pid)
  (let ((ref (monitor pid)))
    (exit pid 'shutdown)
    (receive
      ((list 'DOWN r _ _) :when (== r ref) nil)
      (after 5000
        (exit pid 'kill)
        (receive ((list 'DOWN r _ _) :when (== r ref) nil))))
    (receive ((list 'EXIT p _) :when (== p pid) nil) (after 0 nil))))

(def sys/sup-handle (kind msg from st)
  (cond ((and (== kind 'call) (== msg 'sup/children))
         (list 'reply (list 'sup/children (list/map (fn (c) (list (nth c 0) (nth c 3))) (nth st 3))) st))
        ((and (== kind 'info) (sys/tagged? msg 'EXIT 3))
         (sys/sup-exit st (nth msg 1) (nth msg 2)))
        (true (list 'noreply st))))

(def sys/sup-exit (st pid reason)
  (let ((children (nth st 3))
        (child (sys/sup-find children pid)))
    (cond ((== pid (nth st 5))
           (sys/sup-stop-all (reverse children))
           (list 'stop reason st))
          ((nil? child) (list 'noreply st))
          (true (sys/sup-restart (sys/sup-put st (sys/child-pid child nil)) child reason)))))

(def sys/sup-find (children pid)
  (cond ((empty? children) nil)
        ((== (nth (head children) 3) pid) (head children))
        (true (sys/sup-find (tail children) pid))))

; st with the child of the same id replaced by c
(def sys/sup-put (st c)
  (list (nth st 0) (nth st 1) (nth st 2)
        (list/map (fn (x) (if (== (head x) (head c)) c x)) (nth st 3))
        (nth st 4) (nth st 5)))

(def sys/sup-with (st children times)
  (list (nth st 0) (nth st 1) (nth st 2) children times (nth st 5)))

(def sys/sup-restart? (child reason)
  (let ((how (nth child 2)))
    (or (== how 'permanent)
        (and (== how 'transient) (not (== reason 'normal)) (not (== reason 'shutdown))))))

; A child ended with reason: one-for-one starts it again; one-for-all stops the others that
; run (last started first) and starts them all again, in order, except the temporary ones: those
; are never restarted (as in Erlang), so they stay stopped, nil in sup/children.
(def sys/sup-restart (st child reason)
  (cond ((not (sys/sup-restart? child reason)) (list 'noreply st))
        ((== (nth st 0) 'one-for-one) (sys/sup-count st (list (head child))))
        (true (let ((stop (list/filter (fn (c) (or (nth c 3) (== (head c) (head child)))) (nth st 3)))
                    (ids (list/map head (list/filter (fn (c) (!= (nth c 2) 'temporary)) stop))))
                (sys/sup-count (sys/sup-stop-ids st (list/map head stop)) ids)))))

; One restart more: past intensity restarts within period ms, stop every child and end the
; supervisor with 'shutdown; else start the children of ids (a failed start counts again).
(def sys/sup-count (st ids)
  (let ((now (now-ms))
        (times (cons now (list/filter (fn (t) (> t (- now (nth st 2)))) (nth st 4))))
        (st2 (sys/sup-with st (nth st 3) times)))
    (if (> (length times) (nth st 1))
        (do (sys/sup-stop-all (reverse (nth st 3)))
            (list 'stop 'shutdown (sys/sup-with st2 (list/map (fn (c) (sys/child-pid c nil)) (nth st 3)) times)))
        (sys/sup-start-ids st2 ids ids))))

(def sys/sup-start-ids (st todo ids)
  (if (empty? todo)
      (list 'noreply st)
      (let ((c (sys/sup-by-id (nth st 3) (head todo)))
            (r (sys/sup-start-child c)))
        (if (== (head r) 'ok)
            (sys/sup-start-ids (sys/sup-put st (sys/child-pid c (nth r 1))) (tail todo) ids)
            (sys/sup-count (sys/sup-stop-ids st ids) ids)))))

(def sys/sup-by-id (children id)
  (if (== (head (head children)) id) (head children) (sys/sup-by-id (tail children) id)))

; Stop the running children of ids (last started first); st with their pids nil.
(def sys/sup-stop-ids (st ids)
  (let ((children (nth st 3)))
    (sys/sup-stop-all (reverse (list/filter (fn (c) (and (nth c 3) (list/contains? (head c) ids))) children)))
    (sys/sup-with st (list/map (fn (c) (if (list/contains? (head c) ids) (sys/child-pid c nil) c)) children)
                  (nth st 4))))
