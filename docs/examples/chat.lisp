; A chat server: one process per connection, and a room process that passes each line on.
;
;   lispvm run --allow-net=127.0.0.1 docs/examples/chat.lisp [PORT]     (PORT 0: any free port)
;   then, in other terminals:  nc 127.0.0.1 PORT   and type  /nick NAME, lines, /quit
;
; The acceptor hands each accepted socket to a new client process (tcp/owner), which reads its
; lines (tcp/recv-line) and tells the room; the room sends every line to the other members.
; A client that disconnects (its connection ended or reset), or is killed, is announced to the
; others: the room monitors each member, and the socket is closed with its process. tests/test_tcp.py runs this with two clients.

(def port (if (empty? (sys/args)) 7000 (parse-int (head (sys/args)))))

; The room: members is a map pid -> (socket nick).
(def broadcast (fn (members from text)
  (list/map (fn (entry)
              (let ((pid (head entry)) (sock (head (nth entry 1))))
                (unless (== pid from)
                  (try (tcp/send sock text) (catch e nil)))))  ; (a member that just left)
            (map/to-list members))))

(def room (fn (members)
  (receive
    ((list 'join pid sock nick)
     (monitor pid)  ; (its DOWN announces a client that crashed or was killed)
     (broadcast members pid (str "* " nick " joined\n"))
     (room (map/put members pid (list sock nick))))
    ((list 'say pid text)
     (let ((nick (nth (map/get members pid) 1)))
       (broadcast members pid (str nick ": " text "\n")))
     (room members))
    ((list 'leave pid) (room (leave members pid)))
    ((list 'DOWN _ pid _) (room (leave members pid))))))

(def leave (fn (members pid)
  (let ((entry (map/get members pid)))
    (when entry (broadcast members pid (str "* " (nth entry 1) " left\n"))))
  (map/remove members pid)))

; The next line, or nil at the end of the connection and when it was reset (econnreset).
(def next-line (fn (sock)
  (try (tcp/recv-line sock) (catch e nil))))

; A client: first /nick NAME, then lines until /quit or the end of the connection.
(def chat (fn (r sock)
  (let ((line (next-line sock)))
    (cond
      ((nil? line) (send r (list 'leave (self))))
      ((== line "/quit") (tcp/send sock "* bye\n") (send r (list 'leave (self))) (tcp/close sock))
      (true (send r (list 'say (self) line)) (chat r sock))))))

(def login (fn (r sock)
  (let ((line (next-line sock)))
    (cond
      ((nil? line) nil)
      ((str/starts-with? line "/nick ")
       (let ((nick (str/trim (str/sub line 6 (str/length line)))))
         (tcp/send sock (str "* you are " nick "\n"))
         (send r (list 'join (self) sock nick))
         (chat r sock)))
      (true (tcp/send sock "* say /nick NAME first\n") (login r sock))))))

(def client (fn (r)
  (receive ((list 'socket sock) (login r sock)))))

(def acceptor (fn (listener r)
  (let ((sock (tcp/accept listener))
        (pid (spawn client r)))
    (tcp/owner sock pid)
    (send pid (list 'socket sock))
    (acceptor listener r))))

(def listener (tcp/listen port "127.0.0.1"))
(print "chat: listening on port" (tcp/port listener))
(acceptor listener (spawn room {}))
